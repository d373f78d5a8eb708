package t5

import (
	"fmt"
	"maps"
	"slices"

	"github.com/btconvert/btconvert/arch"
)

// How a T5 token decoder resolves from an official YAML, as the official code builds it: the
// config of the base model the section names, with every key of the section on top (T5 parts get
// no fill-in).

// bases are the base models of the ablation configs' T5 token decoders: their public config.json
// facts, and the class defaults where config.json is silent.
var bases = map[string]HF{
	// num_decoder_layers is not in t5-small's config.json: T5Config sets it to num_layers when the
	// config is loaded, before a YAML's keys are set (so setting num_layers later leaves it).
	// No bos_token_id either.
	"t5-small": {Hidden: 512, HeadDim: 64, Intermediate: 2048, Layers: 6, DecoderLayers: 6, Heads: 8, Buckets: 32, MaxDistance: 128,
		LayerNormEps: 1e-6, FeedForward: "relu", Vocab: 32128, EOSID: 1, BOSID: -1, Tied: true},
}

// base is the HF config of a base model by its model_name_or_path.
func base(name string) (HF, bool) {
	c, ok := bases[name]
	if !ok {
		return HF{}, false
	}
	c.Origin = arch.BaseOrigins(name, keys)
	return c, true
}

// checkDecoding refuses the decodings the official T5 token decoder has but btconvert does not
// run, and those it does not have.
func checkDecoding(d arch.Decoding) error {
	switch d {
	case arch.Summation:
		return arch.NotYet("token_decoder.cls t5 with summation decoding")
	case arch.Prefix:
		return fmt.Errorf("token_decoder.cls t5 with prefix decoding: the official T5 token decoder decodes by cross_attention (or summation)")
	}
	return nil
}

// resolveSection resolves a YAML's t5 token decoder section.
func resolveSection(st arch.StackSpec, sec arch.Section, heads int) (arch.PartHF, error) {
	c, err := Resolve(st, sec, heads)
	if err != nil {
		return nil, err // not a nil *HF in the interface
	}
	return c, nil
}

// Resolve builds a T5 token decoder's HF config as the official code does. heads > 0 is a head
// count the caller gives: it must agree.
func Resolve(st arch.StackSpec, sec arch.Section, heads int) (*HF, error) {
	c, known := base(st.Base)
	if !known {
		return nil, arch.BaseNotKnown(sec, st.Base, slices.Sorted(maps.Keys(bases)))
	}
	if err := arch.ApplySettings(&c, st.Settings, sec); err != nil {
		return nil, err
	}
	if heads > 0 && heads != c.Heads {
		return nil, fmt.Errorf("%s: %s; {Heads} %d disagrees (the official code builds %d heads from this config)",
			sec.Stack, c.Explain(arch.KeyT5Heads), heads, c.Heads)
	}
	return &c, nil
}

// HF is the architecture part of an HF T5Config, with where each value came from.
type HF struct {
	Hidden, HeadDim, Intermediate, Layers, DecoderLayers, Heads, Buckets, MaxDistance, Vocab int
	LayerNormEps                                                                             float64
	FeedForward                                                                              string
	EOSID                                                                                    int
	BOSID                                                                                    int // -1: none (null)
	Tied                                                                                     bool
	Origin                                                                                   map[string]arch.Origin
}

var _ arch.PartHF = (*HF)(nil)

// aliases are T5Config's attribute_map: the generic names of its keys.
var aliases = map[string]string{arch.KeyHidden: arch.KeyDModel, arch.KeyHeads: arch.KeyT5Heads, arch.KeyLayers: arch.KeyT5Layers}

// keys are the T5Config keys that shape the model, in the order notes list them.
var keys = []string{arch.KeyT5Layers, arch.KeyDecoderLayers, arch.KeyDModel, arch.KeyT5Heads, arch.KeyDKV, arch.KeyDFF, arch.KeyVocab,
	arch.KeyBuckets, arch.KeyMaxDistance, arch.KeyT5Eps, arch.KeyFeedForward, arch.KeyTied, arch.KeyEOSID, arch.KeyBOSID}

// inert are T5Config keys that do not change inference here; those with a value that would are
// refused (Set).
var inert = map[string]bool{
	arch.KeyPadID: true, "decoder_start_token_id": true, "dropout_rate": true, "initializer_factor": true, "use_cache": true,
	"n_positions": true, "is_encoder_decoder": true, "classifier_dropout": true, "torch_dtype": true, "dtype": true,
	"_attn_implementation": true, "output_past": true, "is_decoder": true, "dense_act_fn": true, "is_gated_act": true,
}

func (c *HF) fields() arch.Fields {
	return arch.Fields{
		Ints: map[string]*int{arch.KeyDModel: &c.Hidden, arch.KeyDKV: &c.HeadDim, arch.KeyDFF: &c.Intermediate, arch.KeyT5Layers: &c.Layers,
			arch.KeyDecoderLayers: &c.DecoderLayers, arch.KeyT5Heads: &c.Heads, arch.KeyBuckets: &c.Buckets, arch.KeyMaxDistance: &c.MaxDistance,
			arch.KeyVocab: &c.Vocab},
		IDs:    map[string]*int{arch.KeyEOSID: &c.EOSID, arch.KeyBOSID: &c.BOSID},
		Floats: map[string]*float64{arch.KeyT5Eps: &c.LayerNormEps},
		Strs:   map[string]*string{arch.KeyFeedForward: &c.FeedForward},
		Bools:  map[string]*bool{arch.KeyTied: &c.Tied},
	}
}

// Set overrides one key as the token decoder's config section does, recording origin.
func (c *HF) Set(key string, v any, origin arch.Origin) error {
	if a, ok := aliases[key]; ok {
		key = a
	}
	if key == arch.KeyBOSID && v == nil { // null: none, as in t5-small
		c.BOSID, c.Origin[key] = -1, origin
		return nil
	}
	return arch.SetKey(c.fields(), c.Origin, "T5Config", key, v, origin, inert, func(key string, v any) error {
		// The activation T5Config derives from feed_forward_proj when it is loaded: setting it
		// later would change it, so only the values of t5-small's relu are accepted.
		if s, isStr := v.(string); key == "dense_act_fn" && (!isStr || s != "relu") {
			return fmt.Errorf("%s: %v is not supported (only relu)", key, v)
		}
		if b, _ := v.(bool); b && (key == "is_gated_act" || key == "is_decoder") {
			return fmt.Errorf("%s: true is not supported", key)
		}
		return nil
	})
}

// value is a key's value (null for an unset bos_token_id).
func (c *HF) value(key string) any {
	if key == arch.KeyBOSID && c.BOSID < 0 {
		return "null"
	}
	return c.fields().Value(key)
}

// Explain says where a key's value came from.
func (c *HF) Explain(key string) string { return arch.ExplainKey(c.value, c.Origin, key) }

// OriginOf is where a key's value came from.
func (c *HF) OriginOf(key string) arch.Origin { return c.Origin[key] }

// Summary lists the keys with their values, grouped by origin.
func (c *HF) Summary() string { return arch.Summarize(c.value, c.Origin, keys) }

// VocabSize is vocab_size.
func (c *HF) VocabSize() int { return c.Vocab }

// bos is the id every block's decoder input starts with, and where it came from: bos_token_id,
// or (none) eos_token_id, as the official token decoder sets it.
func (c *HF) bos() (int, arch.Origin) {
	if c.BOSID >= 0 {
		return c.BOSID, c.Origin[arch.KeyBOSID]
	}
	o := c.Origin[arch.KeyEOSID]
	return c.EOSID, arch.Origin{Kind: o.Kind, From: fmt.Sprintf("%s (bos_token_id is null: the official token decoder takes eos_token_id)", o.From)}
}

// Assemble makes the token decoder of cfg this stack, with its ids, and records its origins.
func (c *HF) Assemble(cfg *arch.Config, _ *arch.BlockParts, _ arch.Explained, prov arch.Provenance, origins map[string]string) error {
	t, err := c.decoder()
	if err != nil {
		return err
	}
	const comp = arch.TokenDecoder
	cfg.TokenDecoder.Own = &t
	arch.RecordHF(comp, c, keys, prov)
	bos, bosOrigin := c.bos()
	prov[comp+"."+arch.KeyBOSID] = fmt.Sprintf("%s.%s %d from %s", comp, arch.KeyBOSID, bos, bosOrigin.From)
	for name, k := range map[string]string{"hidden_size": arch.KeyDModel, "heads": arch.KeyT5Heads, "head_dim": arch.KeyDKV,
		"intermediate_size": arch.KeyDFF, "layers": arch.KeyDecoderLayers, arch.KeyBuckets: arch.KeyBuckets, arch.KeyMaxDistance: arch.KeyMaxDistance,
		"layer_norm_eps": arch.KeyT5Eps, "eos_token_id": arch.KeyEOSID} {
		origins[comp+"."+name] = string(c.Origin[k].Kind)
	}
	origins[comp+".bos_token_id"] = string(bosOrigin.Kind)
	cfg.BOSTokenID, cfg.EOSTokenID = t.BOSTokenID, t.EOSTokenID
	return nil
}

// decoder is our config of the resolved HF config.
func (c *HF) decoder() (Config, error) {
	bos, _ := c.bos()
	t := Config{Layers: c.DecoderLayers, Hidden: c.Hidden, Heads: c.Heads, HeadDim: c.HeadDim, Intermediate: c.Intermediate,
		Buckets: c.Buckets, MaxDistance: c.MaxDistance, LayerNormEps: c.LayerNormEps, Activation: c.FeedForward,
		BOSTokenID: bos, EOSTokenID: c.EOSID}
	switch {
	case c.FeedForward != "relu":
		return t, fmt.Errorf("token_decoder: %s is not supported (only relu)", c.Explain(arch.KeyFeedForward))
	case !c.Tied:
		return t, fmt.Errorf("token_decoder: %s is not supported (the official T5 token decoder's output head is its token embeddings)", c.Explain(arch.KeyTied))
	}
	return t, nil
}
