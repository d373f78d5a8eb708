package arch

import "fmt"

// The T5 token decoder of the ablation config cls_cross_attn (official class t5, decoding
// cross_attention): the decoder stack of an HF T5 model without its encoder. Its self-attention
// sees the block's tokens so far (with T5's relative position bias), its cross-attention the r
// expanded block vectors; RMS norms, ReLU feed-forward, no biases, and an output head tied to the
// token embeddings, applied after rescaling by d_model^-0.5.

// The T5Config keys.
const (
	KeyDModel        = "d_model"
	KeyDKV           = "d_kv"
	KeyDFF           = "d_ff"
	KeyT5Layers      = "num_layers"
	KeyDecoderLayers = "num_decoder_layers"
	KeyT5Heads       = "num_heads"
	KeyBuckets       = "relative_attention_num_buckets"
	KeyMaxDistance   = "relative_attention_max_distance"
	KeyT5Eps         = "layer_norm_epsilon"
	KeyFeedForward   = "feed_forward_proj"
	KeyTied          = "tie_word_embeddings"
)

// t5Aliases are T5Config's attribute_map: the generic names of its keys.
var t5Aliases = map[string]string{KeyHidden: KeyDModel, KeyHeads: KeyT5Heads, KeyLayers: KeyT5Layers}

// T5Config is a T5 token decoder, fully explicit.
type T5Config struct {
	Layers       int     `json:"num_layers"` // of the decoder stack (num_decoder_layers)
	Hidden       int     `json:"d_model"`
	Heads        int     `json:"num_heads"`
	HeadDim      int     `json:"d_kv"` // heads x d_kv need not be d_model
	Intermediate int     `json:"d_ff"`
	Buckets      int     `json:"relative_attention_num_buckets"`
	MaxDistance  int     `json:"relative_attention_max_distance"`
	LayerNormEps float64 `json:"layer_norm_epsilon"`
	Activation   string  `json:"activation"` // "relu" (feed_forward_proj relu, not gated), the only one supported
	// BOSTokenID starts every block's input; EOSTokenID ends a generation. The official token
	// decoder takes the EOS id for the BOS id when the config has none (t5-small has none: 1).
	BOSTokenID int `json:"bos_token_id"`
	EOSTokenID int `json:"eos_token_id"`
}

// Inner is the width of the attention's projections, heads x d_kv.
func (t *T5Config) Inner() int { return t.Heads * t.HeadDim }

// Check checks the stack within c: its sizes and its ids against c's vocabulary.
func (t *T5Config) Check(c *Config) error {
	V := c.VocabSize
	switch {
	case t.Layers < 1, t.Hidden < 1, t.Heads < 1, t.HeadDim < 1, t.Intermediate < 1:
		return fmt.Errorf("token_decoder: num_layers, d_model, num_heads, d_kv and d_ff must be positive")
	case t.Layers > MaxLayers || t.Hidden > MaxHidden || t.Heads > MaxHeads || t.HeadDim > MaxHidden || t.Inner() > MaxHidden ||
		t.Intermediate > MaxFFN || t.Buckets > MaxHidden || t.MaxDistance > MaxPositions:
		return fmt.Errorf("token_decoder: a size is out of range (num_layers at most %d, d_model, d_kv and num_heads x d_kv %d, num_heads %d, d_ff %d, buckets %d, max distance %d)",
			MaxLayers, MaxHidden, MaxHeads, MaxFFN, MaxHidden, MaxPositions)
	case t.Buckets < 2 || t.MaxDistance <= t.Buckets/2:
		// The bucket of a distance past num_buckets/2 divides by log(max_distance / (num_buckets/2)).
		return fmt.Errorf("token_decoder: relative_attention_num_buckets %d must be at least 2 and relative_attention_max_distance %d more than half of it",
			t.Buckets, t.MaxDistance)
	case t.Activation != "relu":
		return fmt.Errorf("token_decoder: activation %q is not supported (only relu)", t.Activation)
	case t.LayerNormEps <= 0:
		return fmt.Errorf("token_decoder: layer_norm_epsilon must be positive")
	case t.BOSTokenID < 0 || t.BOSTokenID >= V || t.EOSTokenID < 0 || t.EOSTokenID >= V:
		return fmt.Errorf("token_decoder: bos_token_id %d and eos_token_id %d must be ids of the vocabulary (0 to %d)", t.BOSTokenID, t.EOSTokenID, V-1)
	}
	return nil
}

// Agree checks that c's ids are the stack's.
func (t *T5Config) Agree(c *Config) error {
	if c.BOSTokenID != t.BOSTokenID || c.EOSTokenID != t.EOSTokenID {
		return fmt.Errorf("bos_token_id %d and eos_token_id %d disagree with the T5 token decoder's %d and %d", c.BOSTokenID, c.EOSTokenID, t.BOSTokenID, t.EOSTokenID)
	}
	return nil
}

func init() {
	RegisterTokenStack("t5", func() TokenStack { return new(T5Config) })
	RegisterTokenStackClass(ClassT5, &TokenStackClass{
		CheckDecoding: func(d Decoding) error {
			switch d {
			case Summation:
				return notYet("token_decoder.cls t5 with summation decoding")
			case Prefix:
				return fmt.Errorf("token_decoder.cls t5 with prefix decoding: the official T5 token decoder decodes by cross_attention (or summation)")
			}
			return nil
		},
		Resolve: func(st StackSpec, sec Section, heads int) (PartHF, error) {
			c, err := ResolveT5(st, sec, heads)
			if err != nil {
				return nil, err // not a nil *T5HF in the interface
			}
			return c, nil
		},
	})
}

// Key is the stack's key in our config.json.
func (t *T5Config) Key() string { return "t5" }

// Class is the official token decoder class.
func (t *T5Config) Class() string { return ClassT5 }

// Decoding is the one decoding a T5 token decoder runs: every layer attends to the r vectors.
func (t *T5Config) Decoding() Decoding { return CrossAttention }

// Width is d_model.
func (t *T5Config) Width() int { return t.Hidden }

// WidthKey is d_model's key.
func (t *T5Config) WidthKey() string { return KeyDModel }

// TableIsHead is true: the official T5 token decoder's output head is its token embeddings.
func (t *T5Config) TableIsHead() bool { return true }

// Describe is the stack in Config.Describe's line.
func (t *T5Config) Describe() string {
	return fmt.Sprintf("T5 %d layers d=%d (%d heads x %d, FFN %d)", t.Layers, t.Hidden, t.Heads, t.HeadDim, t.Intermediate)
}

// Shape is the stack's sizes for the summary.
func (t *T5Config) Shape() DecoderConfig {
	return DecoderConfig{Hidden: t.Hidden, Heads: t.Heads, HeadDim: t.HeadDim, Intermediate: t.Intermediate, Layers: t.Layers}
}

// Tensors are the stack's: its token table (also its output head), the relative position bias
// table, its layers and final norm.
func (t *T5Config) Tensors(cfg *Config) []TensorSpec {
	c := TokenDecoder + "."
	hid := []string{c + KeyDModel}
	sh := stackShape{comp: TokenDecoder, layers: t.Layers, size: map[dim]int{dimHidden: t.Hidden, dimFFN: t.Intermediate, dimInner: t.Inner()},
		key: map[dim][]string{dimHidden: hid, dimFFN: {c + KeyDFF}, dimInner: {c + KeyT5Heads, c + KeyDKV}}}
	out := []TensorSpec{
		newSpec(outside(TokenDecoder, PartEmbedIn, Weight), []int{cfg.VocabSize, t.Hidden}, [][]string{{KeyVocab}, hid}, ""),
		newSpec(outside(TokenDecoder, PartRelBias, Weight), []int{t.Buckets, t.Heads}, [][]string{{c + KeyBuckets}, {c + KeyT5Heads}}, ""),
	}
	out = append(out, layerSpecs(sh, t5Layer)...)
	return append(out, newSpec(outside(TokenDecoder, PartFinalNorm, Weight), []int{t.Hidden}, [][]string{hid}, ""))
}

// t5Bases are the base models of the ablation configs' T5 token decoders, as robertaBases.
var t5Bases = map[string]T5HF{
	// num_decoder_layers is not in t5-small's config.json: T5Config sets it to num_layers when the
	// config is loaded, before a YAML's keys are set (so setting num_layers later leaves it).
	// No bos_token_id either.
	"t5-small": {Hidden: 512, HeadDim: 64, Intermediate: 2048, Layers: 6, DecoderLayers: 6, Heads: 8, Buckets: 32, MaxDistance: 128,
		LayerNormEps: 1e-6, FeedForward: "relu", Vocab: 32128, EOSID: 1, BOSID: -1, Tied: true},
}

// baseT5 is the T5Config of a base model by its model_name_or_path.
func baseT5(name string) (T5HF, bool) {
	c, ok := t5Bases[name]
	if !ok {
		return T5HF{}, false
	}
	c.Origin = map[string]Origin{}
	for _, k := range t5Keys {
		c.Origin[k] = Origin{OriginBase, name}
	}
	return c, true
}

// ResolveT5 builds a T5 token decoder's HF config as the official code does: the base model's
// config with every setting on top (T5 parts get no fill-in). heads > 0 is a head count the caller
// gives: it must agree.
func ResolveT5(st StackSpec, sec Section, heads int) (*T5HF, error) {
	c, known := baseT5(st.Base)
	if !known {
		return nil, BaseNotKnown(sec, st.Base, names(t5Bases))
	}
	if err := ApplySettings(&c, st.Settings, sec); err != nil {
		return nil, err
	}
	if heads > 0 && heads != c.Heads {
		return nil, fmt.Errorf("%s: %s; {Heads} %d disagrees (the official code builds %d heads from this config)",
			sec.Stack, c.Explain(KeyT5Heads), heads, c.Heads)
	}
	return &c, nil
}

// T5HF is the architecture part of an HF T5Config, with where each value came from.
type T5HF struct {
	Hidden, HeadDim, Intermediate, Layers, DecoderLayers, Heads, Buckets, MaxDistance, Vocab int
	LayerNormEps                                                                             float64
	FeedForward                                                                              string
	EOSID                                                                                    int
	BOSID                                                                                    int // -1: none (null)
	Tied                                                                                     bool
	Origin                                                                                   map[string]Origin
}

// t5Keys are the T5Config keys that shape the model, in the order notes list them.
var t5Keys = []string{KeyT5Layers, KeyDecoderLayers, KeyDModel, KeyT5Heads, KeyDKV, KeyDFF, KeyVocab, KeyBuckets, KeyMaxDistance,
	KeyT5Eps, KeyFeedForward, KeyTied, KeyEOSID, KeyBOSID}

// t5Inert are T5Config keys that do not change inference here; those with a value that would are
// refused (Set).
var t5Inert = map[string]bool{
	KeyPadID: true, "decoder_start_token_id": true, "dropout_rate": true, "initializer_factor": true, "use_cache": true,
	"n_positions": true, "is_encoder_decoder": true, "classifier_dropout": true, "torch_dtype": true, "dtype": true,
	"_attn_implementation": true, "output_past": true, "is_decoder": true, "dense_act_fn": true, "is_gated_act": true,
}

func (c *T5HF) fields() Fields {
	return Fields{
		Ints: map[string]*int{KeyDModel: &c.Hidden, KeyDKV: &c.HeadDim, KeyDFF: &c.Intermediate, KeyT5Layers: &c.Layers,
			KeyDecoderLayers: &c.DecoderLayers, KeyT5Heads: &c.Heads, KeyBuckets: &c.Buckets, KeyMaxDistance: &c.MaxDistance, KeyVocab: &c.Vocab},
		IDs:    map[string]*int{KeyEOSID: &c.EOSID, KeyBOSID: &c.BOSID},
		Floats: map[string]*float64{KeyT5Eps: &c.LayerNormEps},
		Strs:   map[string]*string{KeyFeedForward: &c.FeedForward},
		Bools:  map[string]*bool{KeyTied: &c.Tied},
	}
}

// Set overrides one key as the token decoder's config section does, recording origin.
func (c *T5HF) Set(key string, v any, origin Origin) error {
	if a, ok := t5Aliases[key]; ok {
		key = a
	}
	if key == KeyBOSID && v == nil { // null: none, as in t5-small
		c.BOSID, c.Origin[key] = -1, origin
		return nil
	}
	ok, err := c.fields().Set(key, v)
	switch {
	case err != nil:
		return err
	case !ok && t5Inert[key]:
		// The activation T5Config derives from feed_forward_proj when it is loaded: setting it
		// later would change it, so only the values of t5-small's relu are accepted.
		if s, isStr := v.(string); key == "dense_act_fn" && (!isStr || s != "relu") {
			return fmt.Errorf("%s: %v is not supported (only relu)", key, v)
		}
		if b, _ := v.(bool); b && (key == "is_gated_act" || key == "is_decoder") {
			return fmt.Errorf("%s: true is not supported", key)
		}
		return nil
	case !ok:
		return fmt.Errorf("unknown key %q (not a T5Config setting)", key)
	}
	c.Origin[key] = origin
	return nil
}

// value is a key's value (null for an unset bos_token_id).
func (c *T5HF) value(key string) any {
	if key == KeyBOSID && c.BOSID < 0 {
		return "null"
	}
	return c.fields().Value(key)
}

// Explain says where a key's value came from.
func (c *T5HF) Explain(key string) string { return ExplainKey(c.value, c.Origin, key) }

func (c *T5HF) OriginOf(key string) Origin { return c.Origin[key] }

// Summary lists the keys with their values, grouped by origin.
func (c *T5HF) Summary() string { return Summarize(c.value, c.Origin, t5Keys) }

// bos is the id every block's decoder input starts with, and where it came from: bos_token_id,
// or (none) eos_token_id, as the official token decoder sets it.
func (c *T5HF) bos() (int, Origin) {
	if c.BOSID >= 0 {
		return c.BOSID, c.Origin[KeyBOSID]
	}
	o := c.Origin[KeyEOSID]
	return c.EOSID, Origin{o.Kind, fmt.Sprintf("%s (bos_token_id is null: the official token decoder takes eos_token_id)", o.From)}
}

func (c *T5HF) VocabSize() int { return c.Vocab }

// assemble makes the token decoder of cfg this stack, with its ids, and records its origins.
func (c *T5HF) Assemble(cfg *Config, _ *BlockParts, _ Explained, prov Provenance, origins map[string]string) error {
	t, err := c.decoder()
	if err != nil {
		return err
	}
	cfg.TokenDecoder.Own = &t
	RecordHF(TokenDecoder, c, t5Keys, prov)
	bos, bosOrigin := c.bos()
	prov[TokenDecoder+"."+KeyBOSID] = fmt.Sprintf("%s.%s %d from %s", TokenDecoder, KeyBOSID, bos, bosOrigin.From)
	for name, k := range map[string]string{"hidden_size": KeyDModel, "heads": KeyT5Heads, "head_dim": KeyDKV, "intermediate_size": KeyDFF,
		"layers": KeyDecoderLayers, KeyBuckets: KeyBuckets, KeyMaxDistance: KeyMaxDistance, "layer_norm_eps": KeyT5Eps, "eos_token_id": KeyEOSID} {
		origins[TokenDecoder+"."+name] = string(c.Origin[k].Kind)
	}
	origins[TokenDecoder+".bos_token_id"] = string(bosOrigin.Kind)
	cfg.BOSTokenID, cfg.EOSTokenID = t.BOSTokenID, t.EOSTokenID
	return nil
}

// decoder is our config of the resolved HF config.
func (c *T5HF) decoder() (T5Config, error) {
	bos, _ := c.bos()
	t := T5Config{Layers: c.DecoderLayers, Hidden: c.Hidden, Heads: c.Heads, HeadDim: c.HeadDim, Intermediate: c.Intermediate,
		Buckets: c.Buckets, MaxDistance: c.MaxDistance, LayerNormEps: c.LayerNormEps, Activation: c.FeedForward,
		BOSTokenID: bos, EOSTokenID: c.EOSID}
	switch {
	case c.FeedForward != "relu":
		return t, fmt.Errorf("token_decoder: %s is not supported (only relu)", c.Explain(KeyFeedForward))
	case !c.Tied:
		return t, fmt.Errorf("token_decoder: %s is not supported (the official T5 token decoder's output head is its token embeddings)", c.Explain(KeyTied))
	}
	return t, nil
}
