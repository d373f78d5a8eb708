package arch

import "fmt"

// The RoBERTa embedders of the ablation configs (official classes roberta and roberta_cls): an HF
// RobertaModel without its pooler, run over each block on its own, bidirectionally. roberta
// projects the outputs of the block's L tokens; roberta_cls puts n_cls_tokens CLS tokens (the
// config's bos_token_id) before the block and projects their outputs alone. The projection is
// the lookup embedder's: concatenation, then (projection_layer, what a null projection_method
// means for these classes) one Linear.

// The RobertaConfig keys beyond the shared ones (KeyLayers, KeyHidden, ...).
const (
	KeyTypeVocab    = "type_vocab_size"
	KeyPadID        = "pad_token_id"
	KeyBOSID        = "bos_token_id"
	KeyEOSID        = "eos_token_id"
	KeyPositionType = "position_embedding_type"
)

// RobertaConfig is the encoder of a RoBERTa embedder, fully explicit; its width is the
// embedder's Dim.
type RobertaConfig struct {
	Layers       int     `json:"num_layers"`
	Heads        int     `json:"num_heads"`
	HeadDim      int     `json:"head_dim"`
	Intermediate int     `json:"intermediate_size"`
	LayerNormEps float64 `json:"layer_norm_eps"`
	Activation   string  `json:"activation"` // "gelu" (exact erf form), the only one supported
	MaxPositions int     `json:"max_position_embeddings"`
	TypeVocab    int     `json:"type_vocab_size"` // rows of the token type table; every token has type 0
	// PadTokenID is the padding_idx of the position rule: a token equal to it gets position
	// PadTokenID and does not advance the count of the tokens after it.
	PadTokenID int `json:"pad_token_id"`
	// BOSTokenID is the id of the CLS tokens roberta_cls puts before each block.
	BOSTokenID int `json:"bos_token_id"`
	// CLSTokens is roberta_cls's number of CLS tokens, whose outputs alone make the block
	// embedding; 0 for roberta (the outputs of the block's tokens do).
	CLSTokens int `json:"n_cls_tokens,omitempty"`
}

// Class is the official embedder class: roberta or roberta_cls.
func (r *RobertaConfig) Class() string {
	if r.CLSTokens > 0 {
		return ClassRobertaCLS
	}
	return ClassRoberta
}

// Inputs is how many tokens the encoder reads per block of L tokens (CLS tokens included).
func (r *RobertaConfig) Inputs(L int) int { return r.CLSTokens + L }

// Outputs is how many of its output vectors make the block embedding.
func (r *RobertaConfig) Outputs(L int) int {
	if r.CLSTokens > 0 {
		return r.CLSTokens
	}
	return L
}

// Check checks the encoder of the embedder of c: its sizes over blocks of c's length, its ids
// against c's vocabulary and padding.
func (r *RobertaConfig) Check(c *Config) error {
	dim, L, V := c.Embedder.Dim, c.BlockLength, c.VocabSize
	switch {
	case r.Layers < 1, r.Heads < 1, r.HeadDim < 1, r.Intermediate < 1, r.MaxPositions < 1, r.TypeVocab < 1:
		return fmt.Errorf("embedder: layers, heads, head_dim, intermediate_size, max_position_embeddings and type_vocab_size must be positive")
	case r.Layers > MaxLayers || r.Heads > MaxHeads || r.HeadDim > MaxHidden || r.Intermediate > MaxFFN || r.MaxPositions > MaxPositions ||
		r.TypeVocab > MaxVocab || r.CLSTokens < 0 || r.CLSTokens > MaxBlockLength:
		return fmt.Errorf("embedder: a size is out of range (layers at most %d, heads %d, head_dim %d, intermediate_size %d, max_position_embeddings %d, n_cls_tokens %d)",
			MaxLayers, MaxHeads, MaxHidden, MaxFFN, MaxPositions, MaxBlockLength)
	case r.Heads*r.HeadDim != dim:
		return fmt.Errorf("embedder: num_heads %d x head_dim %d != dim %d", r.Heads, r.HeadDim, dim)
	case r.Activation != "gelu":
		return fmt.Errorf("embedder: activation %q is not supported (only exact gelu)", r.Activation)
	case r.LayerNormEps <= 0:
		return fmt.Errorf("embedder: layer_norm_eps must be positive")
	case r.PadTokenID < 0 || r.PadTokenID >= V || r.BOSTokenID < 0 || r.BOSTokenID >= V:
		return fmt.Errorf("embedder: pad_token_id %d and bos_token_id %d must be ids of the vocabulary (0 to %d)", r.PadTokenID, r.BOSTokenID, V-1)
	case r.PadTokenID+r.Inputs(L) >= r.MaxPositions:
		// Position ids run up to pad_token_id + the tokens read per block.
		return fmt.Errorf("embedder: max_position_embeddings %d is too few for position ids up to pad_token_id %d + %d tokens per block",
			r.MaxPositions, r.PadTokenID, r.Inputs(L))
	case c.PadTokenID != r.PadTokenID:
		// Prompts are padded as the official code pads them: with the embedder's pad id.
		return fmt.Errorf("pad_token_id %d disagrees with the RoBERTa embedder's %d", c.PadTokenID, r.PadTokenID)
	}
	return nil
}

func init() {
	RegisterEncoder("roberta", func() Encoder { return new(RobertaConfig) })
	c := &EncoderClass{Resolve: resolveRobertaSection}
	RegisterEncoderClass(ClassRoberta, c)
	RegisterEncoderClass(ClassRobertaCLS, c)
}

// resolveRobertaSection resolves a YAML's roberta or roberta_cls embedder section into p: its CLS
// tokens (roberta_cls: 1 unless stated) and its RobertaConfig.
func resolveRobertaSection(e EmbedderSpec, sec Section, p *BlockParts) error {
	p.CLSTokens, p.CLSOrigin = e.CLSTokens, sec.origin()
	switch {
	case e.Cls == ClassRoberta && e.CLSTokens != 0:
		return fmt.Errorf("embedder.n_cls_tokens is for the roberta_cls embedder, not roberta")
	case e.Cls == ClassRobertaCLS && e.CLSTokens == 0:
		p.CLSTokens, p.CLSOrigin = 1, Origin{OriginFillIn, "the official default of roberta_cls (n_cls_tokens 1)"}
	case e.CLSTokens < 0 || e.CLSTokens > MaxBlockLength:
		return fmt.Errorf("embedder.n_cls_tokens %d is out of range (1 to %d)", e.CLSTokens, MaxBlockLength)
	}
	r, err := ResolveRoberta(e.Base, e.Settings, sec)
	if err != nil {
		return err
	}
	p.Encoder = r
	return nil
}

// Key is the encoder's key in our config.json.
func (r *RobertaConfig) Key() string { return "roberta" }

// Table is the encoder's tensors (its tables and their LayerNorm, then its layers); its last
// layer's LayerNorm feeds the projection, which concatenates the block's tokens or its CLS tokens.
func (r *RobertaConfig) Table(c *Config) EmbedderTable {
	He := c.Embedder.Dim
	hid := []string{Embedder + "." + KeyHidden}
	sh := stackShape{comp: Embedder, layers: r.Layers, size: map[dim]int{dimHidden: He, dimFFN: r.Intermediate},
		key: map[dim][]string{dimHidden: hid, dimFFN: {Embedder + "." + KeyIntermediate}},
		input: func(layer int) ID {
			if layer == 0 {
				return outside(Embedder, PartEmbedNorm, Weight)
			}
			return ID{Embedder, PartMLPNorm, layer - 1, Weight}
		}}
	out := []TensorSpec{
		newSpec(outside(Embedder, PartEmbeddings, Weight), []int{c.VocabSize, He}, [][]string{{KeyVocab}, hid}, ""),
		newSpec(outside(Embedder, PartPositions, Weight), []int{r.MaxPositions, He}, [][]string{{Embedder + "." + KeyMaxPositions}, hid}, ""),
		newSpec(outside(Embedder, PartTokenTypes, Weight), []int{r.TypeVocab, He}, [][]string{{Embedder + "." + KeyTypeVocab}, hid}, ""),
	}
	out = append(out, norm(Embedder, PartEmbedNorm, He, hid)...)
	t := EmbedderTable{Specs: append(out, layerSpecs(sh, robertaLayer)...), ProjFedBy: feeder(ID{Embedder, PartMLPNorm, r.Layers - 1, Weight}),
		VectorsKey: "block_length"}
	if r.CLSTokens > 0 {
		t.VectorsKey = "embedder.n_cls_tokens"
	}
	return t
}

// Describe is the encoder in Config.Describe's line.
func (r *RobertaConfig) Describe(dim int) string {
	s := fmt.Sprintf("%s (%d layers D=%d (%d heads x %d, FFN %d)", r.Class(), r.Layers, dim, r.Heads, r.HeadDim, r.Intermediate)
	if r.CLSTokens > 0 {
		s += fmt.Sprintf(", %d CLS", r.CLSTokens)
	}
	return s + ")"
}

// Summarize adds the encoder's shape and CLS tokens to the embedder's summary.
func (r *RobertaConfig) Summarize(s *EmbedderSummary, stack func(*DecoderConfig) *StackSummary, dim int) {
	s.CLSTokens = r.CLSTokens
	s.Encoder = stack(&DecoderConfig{Hidden: dim, Heads: r.Heads, HeadDim: r.HeadDim, Intermediate: r.Intermediate, Layers: r.Layers})
}

// robertaBases are the base models of the ablation configs' RoBERTa embedders: their public
// config.json facts, and the class defaults where config.json is silent. A RoBERTa part must name
// one of them (the official code builds it from that model's config, which btconvert cannot read
// otherwise).
var robertaBases = map[string]RobertaHF{
	"roberta-base": {Layers: 12, Hidden: 768, Heads: 12, Intermediate: 3072, Vocab: 50265, MaxPositions: 514, TypeVocab: 1,
		LayerNormEps: 1e-5, Act: "gelu", PositionType: "absolute", PadID: 1, BOSID: 0},
}

// baseRoberta is the RobertaConfig of a base model by its model_name_or_path.
func baseRoberta(name string) (RobertaHF, bool) {
	c, ok := robertaBases[name]
	if !ok {
		return RobertaHF{}, false
	}
	c.Origin = map[string]Origin{}
	for _, k := range robertaKeys {
		c.Origin[k] = Origin{OriginBase, name}
	}
	return c, true
}

// ResolveRoberta builds a RoBERTa embedder's HF config as the official code does: the official
// fill-in (heads and FFN from the width), then the base model's config, then every setting on top.
func ResolveRoberta(base string, settings []Setting, sec Section) (*RobertaHF, error) {
	c, known := baseRoberta(base)
	if !known {
		return nil, knownBase(sec, base, names(robertaBases))
	}
	settings, err := fillIn(settings, sec)
	if err != nil {
		return nil, err
	}
	if err := applySettings(&c, settings, sec); err != nil {
		return nil, err
	}
	return &c, nil
}

// RobertaHF is the architecture part of an HF RobertaConfig, with where each value came from.
type RobertaHF struct {
	Layers, Hidden, Heads, Intermediate, Vocab, MaxPositions, TypeVocab int
	PadID, BOSID                                                        int
	LayerNormEps                                                        float64
	Act, PositionType                                                   string
	Origin                                                              map[string]Origin
}

// robertaKeys are the RobertaConfig keys that shape the model, in the order notes list them.
var robertaKeys = []string{KeyLayers, KeyHidden, KeyHeads, KeyIntermediate, KeyVocab, KeyMaxPositions, KeyTypeVocab,
	KeyLayerNormEps, KeyAct, KeyPositionType, KeyPadID, KeyBOSID}

// robertaInert are RobertaConfig keys that do not change inference; those with a value that
// would are refused (checkRobertaInert).
var robertaInert = map[string]bool{
	KeyEOSID: true, "hidden_dropout_prob": true, "attention_probs_dropout_prob": true, "initializer_range": true,
	"use_cache": true, "classifier_dropout": true, "torch_dtype": true, "dtype": true, "_attn_implementation": true,
	"tie_word_embeddings": true, "chunk_size_feed_forward": true, "is_decoder": true, "add_cross_attention": true,
}

func (c *RobertaHF) fields() fields {
	return fields{
		ints: map[string]*int{KeyLayers: &c.Layers, KeyHidden: &c.Hidden, KeyHeads: &c.Heads, KeyIntermediate: &c.Intermediate,
			KeyVocab: &c.Vocab, KeyMaxPositions: &c.MaxPositions, KeyTypeVocab: &c.TypeVocab},
		ids:    map[string]*int{KeyPadID: &c.PadID, KeyBOSID: &c.BOSID},
		floats: map[string]*float64{KeyLayerNormEps: &c.LayerNormEps},
		strs:   map[string]*string{KeyAct: &c.Act, KeyPositionType: &c.PositionType},
	}
}

// Set overrides one key as the embedder's config section does, recording origin.
func (c *RobertaHF) Set(key string, v any, origin Origin) error {
	ok, err := c.fields().set(key, v)
	switch {
	case err != nil:
		return err
	case !ok && robertaInert[key]:
		if b, _ := v.(bool); b && (key == "is_decoder" || key == "add_cross_attention") {
			return fmt.Errorf("%s: true is not supported (the embedder is a bidirectional encoder)", key)
		}
		return nil
	case !ok:
		return fmt.Errorf("unknown key %q (not a RobertaConfig setting)", key)
	}
	c.Origin[key] = origin
	return nil
}

// Explain says where a key's value came from.
func (c *RobertaHF) Explain(key string) string { return explainKey(c.fields().value, c.Origin, key) }

func (c *RobertaHF) origin(key string) Origin { return c.Origin[key] }

// Summary lists the keys with their values, grouped by origin.
func (c *RobertaHF) Summary() string { return summarize(c.fields().value, c.Origin, robertaKeys) }

func (c *RobertaHF) vocab() int { return c.Vocab }

// assemble makes the embedder of cfg this encoder (with p's CLS tokens) and records its origins.
func (c *RobertaHF) assemble(cfg *Config, p *BlockParts, tdVocab explained, prov Provenance, origins map[string]string) error {
	if c.Vocab != cfg.VocabSize {
		return fmt.Errorf("embedder: %s disagrees with the token decoder's %s", c.Explain(KeyVocab), tdVocab.Explain(KeyVocab))
	}
	enc, err := c.encoder(p.CLSTokens)
	if err != nil {
		return err
	}
	cfg.Embedder.Encoder, cfg.Embedder.Dim, p.EmbedderOrigin = &enc, c.Hidden, c.Origin[KeyHidden]
	cfg.PadTokenID = enc.PadTokenID
	recordHF(Embedder, c, robertaKeys, prov)
	for name, k := range map[string]string{"layers": KeyLayers, "heads": KeyHeads, "head_dim": KeyHeads, "intermediate_size": KeyIntermediate,
		"max_position_embeddings": KeyMaxPositions, "layer_norm_eps": KeyLayerNormEps, "pad_token_id": KeyPadID, "bos_token_id": KeyBOSID} {
		origins[Embedder+"."+name] = string(c.Origin[k].Kind)
	}
	if p.CLSTokens > 0 {
		prov["embedder.n_cls_tokens"] = fmt.Sprintf("embedder.n_cls_tokens %d from %s", p.CLSTokens, p.CLSOrigin.From)
		origins[Embedder+".n_cls_tokens"] = string(p.CLSOrigin.Kind)
	}
	return nil
}

// encoder is our config of the resolved HF config (cls CLS tokens: roberta_cls's count, 0 for
// roberta).
func (c *RobertaHF) encoder(cls int) (RobertaConfig, error) {
	r := RobertaConfig{Layers: c.Layers, Heads: c.Heads, Intermediate: c.Intermediate, LayerNormEps: c.LayerNormEps, Activation: c.Act,
		MaxPositions: c.MaxPositions, TypeVocab: c.TypeVocab, PadTokenID: c.PadID, BOSTokenID: c.BOSID, CLSTokens: cls}
	switch {
	case c.Hidden%c.Heads != 0:
		return r, fmt.Errorf("embedder: %s is not a multiple of %s", c.Explain(KeyHidden), c.Explain(KeyHeads))
	case c.Act != "gelu":
		return r, fmt.Errorf("embedder: %s is not supported (only gelu, the exact form)", c.Explain(KeyAct))
	case c.PositionType != "absolute":
		return r, fmt.Errorf("embedder: %s is not supported (only absolute)", c.Explain(KeyPositionType))
	}
	r.HeadDim = c.Hidden / c.Heads
	return r, nil
}
