// Package arch is the domain model: the Block Transformer and its decoder families as data (the
// typed config, the base models the official YAMLs name and how a config is resolved from them,
// the paper's presets, the registry of decoder families) and the one table of tensors (name, shape
// from the config, role, the norm that feeds it) that every reader, writer, the quantizer and the
// graphs go by. It reads no file format; the layouts in formats/ map files onto it.
package arch

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/quant/scheme"
)

// FormatName marks our model directory's config.json.
const FormatName = "btconvert"

// FormatVersion is the newest version of our folder this build reads and writes; it is bumped on
// any incompatible change of the directory layout. Version 2 added decoder families other than
// GPT-NeoX, key/value heads and stop ids; a folder that uses none of them is still written as 1.
const FormatVersion = 2

// Version is the format version a folder of config c needs: 2 where it uses what version 1 did
// not have, else 1, so that older builds keep reading the folders they can run and refuse the
// others by their version.
func (c *Config) Version() int {
	if len(c.StopTokenIDs) > 0 {
		return 2
	}
	for _, d := range c.Stacks() {
		if !d.IsNeoX() || d.KVHeads != 0 || len(d.Options) > 0 {
			return 2
		}
	}
	return 1
}

// Component names: the parts of a model (and the files of our directory).
const (
	Embedder     = "embedder"
	BlockDecoder = "block_decoder"
	TokenDecoder = "token_decoder"
	Decoder      = "decoder" // a vanilla model's only component
)

// DecoderConfig is one decoder stack, fully explicit: a GPT-NeoX one, or one of a registered
// family (Family; see StackFamily) with what that family adds in Options.
type DecoderConfig struct {
	Family string `json:"family,omitempty"` // "" : GPT-NeoX
	// KVHeads is the number of key/value heads when fewer than Heads (grouped-query attention;
	// 0: as many as Heads).
	KVHeads          int     `json:"num_kv_heads,omitempty"`
	Layers           int     `json:"num_layers"`
	Hidden           int     `json:"hidden_size"`
	Heads            int     `json:"num_heads"`
	HeadDim          int     `json:"head_dim"`
	Intermediate     int     `json:"intermediate_size"`
	RotaryDims       int     `json:"rotary_dims"` // leading dims of each head that get rotary
	RotaryBase       float64 `json:"rotary_base"`
	LayerNormEps     float64 `json:"layer_norm_eps"`
	ParallelResidual bool    `json:"parallel_residual"`
	Activation       string  `json:"activation"` // "gelu" (exact erf form), the only one supported
	// MaxPositions is the base config's max_position_embeddings: positions the stack was built for
	// (0: unknown).
	MaxPositions int `json:"max_position_embeddings,omitempty"`
	// Options are the family's own settings, which only the family reads.
	Options json.RawMessage `json:"options,omitempty"`
}

// Kind is a block or a vanilla model.
type Kind string

// The kinds of model.
const (
	Block   Kind = "block"
	Vanilla Kind = "vanilla"
)

// EmbedderType is how the block embedder turns a block's vectors into one vector.
type EmbedderType string

// The embedders' projections: concatenation of the block's vectors, or that followed by a Linear
// (the official Conv1d with kernel and stride the number of vectors).
const (
	Concat          EmbedderType = "concat"
	ProjectionLayer EmbedderType = "projection_layer"
)

// Decoding is how the token decoder is given the block context.
type Decoding string

// The decodings: r expanded vectors prefixed to the block's tokens, (MEGABYTE-style) one added
// to each input token, or (a T5 token decoder) all r attended to by every layer.
const (
	Prefix         Decoding = "prefix"
	Summation      Decoding = "summation"
	CrossAttention Decoding = "cross_attention"
)

// EmbedderConfig is the block embedder: the vectors of a block (the rows of a lookup table for its
// tokens, or an encoder's outputs) are concatenated, then (projection_layer) go through one Linear.
type EmbedderConfig struct {
	Type EmbedderType `json:"type"`
	Dim  int          `json:"dim"` // width of one vector: the table's, or the encoder's hidden size
	// Encoder is the network of an encoder class (RoBERTa's), stored in config.json under its
	// class's key (Encoder.Key); nil: the lookup embedder.
	Encoder Encoder `json:"-"`
}

// Encoder is an embedder class that runs a network over each block before the projection (the
// RoBERTa classes, package families/roberta). The rest of the code asks it, never its type.
type Encoder interface {
	Key() string       // its key in our config.json ("roberta")
	Class() string     // the official embedder class
	Outputs(L int) int // how many vectors of a block of L tokens make its embedding
	// Check checks it within the whole config c (sizes, ids, what the rest of c must agree with).
	Check(c *Config) error
	// Table is its tensors before the projection, the norm that feeds the projection and the key
	// of how many vectors it concatenates.
	Table(c *Config) EmbedderTable
	// Describe is its part of Config.Describe's line (dim: the embedder's width).
	Describe(dim int) string
	// Summarize fills its part of the architecture summary.
	Summarize(s *EmbedderSummary, stack func(*DecoderConfig) *StackSummary, dim int)
}

// Class is the official embedder class: lookup, or its encoder's.
func (e *EmbedderConfig) Class() string {
	if e.Encoder == nil {
		return ClassLookup
	}
	return e.Encoder.Class()
}

// Vectors is how many vectors of width Dim make up the embedding of a block of L tokens.
func (e *EmbedderConfig) Vectors(L int) int {
	if e.Encoder == nil {
		return L
	}
	return e.Encoder.Outputs(L)
}

// MarshalJSON writes the encoder under its key.
func (e EmbedderConfig) MarshalJSON() ([]byte, error) {
	type plain EmbedderConfig // without these methods
	return marshalWithPart(plain(e), e.Encoder, false)
}

// UnmarshalJSON reads the encoder of a registered class from its key.
func (e *EmbedderConfig) UnmarshalJSON(b []byte) error {
	type plain EmbedderConfig
	if err := json.Unmarshal(b, (*plain)(e)); err != nil {
		return err
	}
	v, present, err := unmarshalPart(b, Embedder, encoderKinds)
	switch {
	case v != nil:
		e.Encoder = v.(Encoder)
	case present:
		e.Encoder = nil
	}
	return err
}

// TokenDecoderConfig adds the block-context expansion to a decoder stack: one of a decoder family,
// or (Own set) the stack of a token decoder class of its own (T5's), and then the stack fields are
// unused.
type TokenDecoderConfig struct {
	DecoderConfig
	ExpansionRatio int      `json:"expansion_ratio"`
	Decoding       Decoding `json:"decoding"`
	// Own is the stack of a token decoder class that is not a decoder family's (T5's), stored in
	// config.json under its class's key (Own.Key).
	Own TokenStack `json:"-"`
}

// TokenStack is a token decoder class with a stack of its own (T5's, package families/t5). The
// rest of the code asks it, never its type.
type TokenStack interface {
	Key() string   // its key in our config.json ("t5")
	Class() string // the official token decoder class
	// Decoding is the one decoding it runs.
	Decoding() Decoding
	Width() int       // its hidden size (the width of each expanded vector)
	WidthKey() string // the config key of Width
	// Check checks its own sizes and ids within the whole config c; Agree, checked last, what
	// the rest of c must agree with.
	Check(c *Config) error
	Agree(c *Config) error
	// Tensors is its tensors (after the expansion layer).
	Tensors(c *Config) []TensorSpec
	// TableIsHead reports whether its token table is also its output head (then quantization leaves
	// it as stored: it is read whole at every step).
	TableIsHead() bool
	Describe() string // its part of Config.Describe's line
	// Shape is its sizes for the architecture summary.
	Shape() DecoderConfig
}

// Width is the token decoder's hidden size (the width of each expanded vector).
func (t *TokenDecoderConfig) Width() int {
	if t.Own != nil {
		return t.Own.Width()
	}
	return t.Hidden
}

// WidthKey is the config key of Width.
func (t *TokenDecoderConfig) WidthKey() string {
	if t.Own != nil {
		return t.Own.WidthKey()
	}
	return KeyHidden
}

// Class is the official token decoder class: gpt-neo-x (a stack of any decoder family), or its
// own stack's.
func (t *TokenDecoderConfig) Class() string {
	if t.Own != nil {
		return t.Own.Class()
	}
	return ClassNeoX
}

// MarshalJSON writes a token decoder with a stack of its own without the unused stack fields.
func (t TokenDecoderConfig) MarshalJSON() ([]byte, error) {
	type plain TokenDecoderConfig // without these methods
	if t.Own == nil {
		return json.Marshal(plain(t))
	}
	return marshalWithPart(struct {
		ExpansionRatio int      `json:"expansion_ratio"`
		Decoding       Decoding `json:"decoding"`
	}{t.ExpansionRatio, t.Decoding}, t.Own, true)
}

// UnmarshalJSON reads the stack of a registered token decoder class from its key.
func (t *TokenDecoderConfig) UnmarshalJSON(b []byte) error {
	type plain TokenDecoderConfig
	if err := json.Unmarshal(b, (*plain)(t)); err != nil {
		return err
	}
	v, present, err := unmarshalPart(b, TokenDecoder, tokenStackKinds)
	switch {
	case v != nil:
		t.Own = v.(TokenStack)
	case present:
		t.Own = nil
	}
	return err
}

// Config is our config.json: the complete architecture, nothing left to defaults.
type Config struct {
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
	Kind          Kind   `json:"kind"`
	VocabSize     int    `json:"vocab_size"`
	PadTokenID    int    `json:"pad_token_id"`
	BOSTokenID    int    `json:"bos_token_id"`
	// EOSTokenID ends a generation (absent in folders written before it existed: 0, the
	// end-of-text id of the GPT-NeoX tokenizer every model of those folders used).
	EOSTokenID int `json:"eos_token_id"`
	// StopTokenIDs are further ids that end a generation as EOSTokenID does (the other ids of an
	// HF config's eos_token_id list: a Llama 3 model's end of turn).
	StopTokenIDs []int               `json:"stop_token_ids,omitempty"`
	BlockLength  int                 `json:"block_length,omitempty"`
	Embedder     *EmbedderConfig     `json:"embedder,omitempty"`
	BlockDecoder *DecoderConfig      `json:"block_decoder,omitempty"`
	TokenDecoder *TokenDecoderConfig `json:"token_decoder,omitempty"`
	Decoder      *DecoderConfig      `json:"decoder,omitempty"`
	// Source keeps what the source's YAML said that does not change the computation but that an
	// export writes back (nil when the source had none).
	Source *SourceConfig `json:"source,omitempty"`
	// Quantization maps "component/tensor" to how it is stored, for every quantized tensor.
	Quantization map[string]scheme.Quantization `json:"quantization,omitempty"`
	// QuantizedWith records how the quantized tensors were made (nil when none are).
	QuantizedWith *QuantProvenance `json:"quantized_with,omitempty"`
	// Origins says what kind of source each architecture value came from (OriginKind), by
	// "component.key" (block_decoder.heads, token_decoder.intermediate_size, block_length, ...);
	// nil for configs written before it was recorded.
	Origins map[string]string `json:"origins,omitempty"`
}

// QuantProvenance says how a model was quantized.
type QuantProvenance struct {
	Type      scheme.Type `json:"type"` // the default type of the plan
	GroupSize int         `json:"group_size,omitempty"`
	Symmetric bool        `json:"symmetric"`
	// Method is rtn (round-to-nearest), search (scale search weighted by LayerNorm importance),
	// imatrix (search weighted by calibration importance) or gptq.
	Method            string `json:"method"`
	Calibration       string `json:"calibration,omitempty"` // the calibration text's file name
	CalibrationSHA256 string `json:"calibration_sha256,omitempty"`
	CalibrationTokens int    `json:"calibration_tokens,omitempty"`
	Tool              string `json:"tool"` // btconvert version
}

// SourceConfig is the provenance part of the config: the base models the YAML named, its training
// context length and precision.
type SourceConfig struct {
	BaseModels map[string]string `json:"base_models,omitempty"` // component -> model_name_or_path
	MaxLength  int               `json:"max_length,omitempty"`  // tokens (the YAML's max_length)
	Precision  string            `json:"precision,omitempty"`
}

// checkMaxLength bounds a YAML's max_length (the training context in tokens), the one rule for
// the YAML as read and for our config.json.
func checkMaxLength(n int) error {
	switch {
	case n < 0:
		return fmt.Errorf("max_length %d must not be negative", n)
	case n > MaxPositions*MaxBlockLength:
		return fmt.Errorf("max_length %d is out of range (0 to %d)", n, MaxPositions*MaxBlockLength)
	}
	return nil
}

// MaxTokens is the longest sequence (prompt plus generation) the model was built for: the YAML's
// max_length, else what the positions of its (block) decoder cover; 0 when unknown.
func (c *Config) MaxTokens() int {
	if c.Source != nil && c.Source.MaxLength > 0 {
		return c.Source.MaxLength
	}
	if c.IsBlock() {
		return c.BlockDecoder.MaxPositions * c.BlockLength
	}
	return c.Decoder.MaxPositions
}

// IsBlock reports whether this is a Block Transformer.
func (c *Config) IsBlock() bool { return c.Kind == Block }

// Components lists the model's components in file order.
func (c *Config) Components() []string {
	if c.IsBlock() {
		return []string{Embedder, BlockDecoder, TokenDecoder}
	}
	return []string{Decoder}
}

// Validate checks the config is complete and consistent.
func (c *Config) Validate() error {
	dec := func(name string, d *DecoderConfig) error {
		if d == nil {
			return fmt.Errorf("%s is missing", name)
		}
		switch {
		case d.Layers < 1, d.Hidden < 1, d.Heads < 1, d.Intermediate < 1, d.HeadDim < 1:
			return fmt.Errorf("%s: layers, hidden_size, num_heads, head_dim and intermediate_size must be positive", name)
		case d.Layers > MaxLayers || d.Hidden > MaxHidden || d.Heads > MaxHeads || d.HeadDim > MaxHidden || d.Intermediate > MaxFFN || d.MaxPositions > MaxPositions:
			return fmt.Errorf("%s: a size is out of range (layers at most %d, hidden_size and head_dim %d, num_heads %d, intermediate_size %d, max_position_embeddings %d)",
				name, MaxLayers, MaxHidden, MaxHeads, MaxFFN, MaxPositions)
		case d.Heads*d.HeadDim != d.Hidden:
			return fmt.Errorf("%s: num_heads %d x head_dim %d != hidden_size %d", name, d.Heads, d.HeadDim, d.Hidden)
		case d.RotaryDims < 0 || d.RotaryDims > d.HeadDim || d.RotaryDims%2 != 0:
			return fmt.Errorf("%s: rotary_dims %d must be even and at most head_dim %d", name, d.RotaryDims, d.HeadDim)
		case d.KVHeads < 0 || d.KVHeads > d.Heads || (d.KVHeads > 0 && d.Heads%d.KVHeads != 0):
			return fmt.Errorf("%s: num_kv_heads %d must divide num_heads %d", name, d.KVHeads, d.Heads)
		case d.LayerNormEps <= 0 || d.RotaryBase <= 0:
			return fmt.Errorf("%s: layer_norm_eps and rotary_base must be positive", name)
		case d.MaxPositions < 0:
			return fmt.Errorf("%s: max_position_embeddings must not be negative", name)
		}
		f := Family(d.FamilyOf())
		if f == nil {
			if k, ok := knownStacks[d.FamilyOf()]; ok {
				return &MissingFamilyError{Where: name, Title: k.title, Package: k.pkg}
			}
			return fmt.Errorf("%s: decoder family %q is not one this build knows (%s)", name, d.Family, strings.Join(Families(), ", "))
		}
		return f.Validate(name, d)
	}
	if c.VocabSize < 1 || c.VocabSize > MaxVocab {
		return fmt.Errorf("vocab_size %d is out of range (1 to %d)", c.VocabSize, MaxVocab)
	}
	if c.Source != nil {
		if err := checkMaxLength(c.Source.MaxLength); err != nil {
			return err
		}
	}
	for _, id := range []struct {
		name string
		v    int
	}{{"eos_token_id", c.EOSTokenID}, {"pad_token_id", c.PadTokenID}, {"bos_token_id", c.BOSTokenID}} {
		if id.v < 0 || id.v >= c.VocabSize {
			return fmt.Errorf("%s %d must be an id of the vocabulary (0 to %d)", id.name, id.v, c.VocabSize-1)
		}
	}
	if len(c.StopTokenIDs) > 64 {
		return fmt.Errorf("stop_token_ids: %d ids (at most 64)", len(c.StopTokenIDs))
	}
	for _, id := range c.StopTokenIDs {
		if id < 0 || id >= c.VocabSize {
			return fmt.Errorf("stop_token_ids: %d must be an id of the vocabulary (0 to %d)", id, c.VocabSize-1)
		}
	}
	switch c.Kind {
	case Vanilla:
		return dec("decoder", c.Decoder)
	case Block:
		if err := dec("block_decoder", c.BlockDecoder); err != nil {
			return err
		}
		if c.TokenDecoder == nil {
			return fmt.Errorf("token_decoder is missing")
		}
		td := c.TokenDecoder
		if td.Own == nil {
			if err := dec("token_decoder", &td.DecoderConfig); err != nil {
				return err
			}
		} else if err := td.Own.Check(c); err != nil {
			return err
		}
		if c.BlockLength < 1 || c.Embedder == nil {
			return fmt.Errorf("block_length and embedder are required for a block model")
		}
		if c.BlockLength > MaxBlockLength || td.ExpansionRatio > MaxRatio || c.Embedder.Dim > MaxHidden || c.Embedder.Dim < 0 {
			return fmt.Errorf("block_length (at most %d), expansion_ratio (%d) or the embedder's dim (%d) is out of range", MaxBlockLength, MaxRatio, MaxHidden)
		}
		if err := c.validateEmbedder(); err != nil {
			return err
		}
		switch {
		case td.Decoding == Prefix || td.Decoding == CrossAttention:
			if td.ExpansionRatio < 1 {
				return fmt.Errorf("token_decoder: expansion_ratio must be positive")
			}
		case td.Decoding == Summation:
			if td.ExpansionRatio != c.BlockLength {
				return fmt.Errorf("token_decoder: summation decoding needs expansion_ratio = block_length (%d), got %d", c.BlockLength, td.ExpansionRatio)
			}
		default:
			return fmt.Errorf("token_decoder: decoding %q (want prefix, summation or cross_attention)", td.Decoding)
		}
		// A class with a stack of its own runs its one decoding; a decoder family's stack prefix or
		// summation.
		if (td.Own != nil && td.Decoding != td.Own.Decoding()) || (td.Own == nil && td.Decoding == CrossAttention) {
			return fmt.Errorf("token_decoder: %s decoding with a %s token decoder (cross_attention is T5's, prefix and summation GPT-NeoX's)", td.Decoding, td.Class())
		}
		if td.Own != nil {
			return td.Own.Agree(c)
		}
		return nil
	}
	return fmt.Errorf("kind %q (want block or vanilla)", c.Kind)
}

// validateEmbedder checks the embedder against the block decoder it feeds.
func (c *Config) validateEmbedder() error {
	e, D, L := c.Embedder, c.BlockDecoder.Hidden, c.BlockLength
	K := e.Vectors(L)
	switch e.Type {
	case Concat:
		if e.Dim*K != D {
			return fmt.Errorf("concat embedder: dim %d x %d vectors != block decoder hidden %d", e.Dim, K, D)
		}
	case ProjectionLayer:
		if e.Dim < 1 {
			return fmt.Errorf("projection_layer embedder: dim must be positive")
		}
	default:
		return fmt.Errorf("embedder type %q (want concat or projection_layer)", e.Type)
	}
	if e.Encoder == nil {
		_, err := lookupClass(Embedder)
		return err
	}
	return e.Encoder.Check(c)
}

// Describe is a one-line summary of the architecture.
func (c *Config) Describe() string {
	stack := func(d *DecoderConfig) string {
		s := fmt.Sprintf("%d layers D=%d (%d heads x %d, FFN %d)", d.Layers, d.Hidden, d.Heads, d.HeadDim, d.Intermediate)
		if d.KVHeads > 0 && d.KVHeads < d.Heads {
			s = fmt.Sprintf("%d layers D=%d (%d heads x %d, %d key/value heads, FFN %d)", d.Layers, d.Hidden, d.Heads, d.HeadDim, d.KVHeads, d.Intermediate)
		}
		if !d.IsNeoX() {
			title := d.Family
			if f := Family(d.Family); f != nil {
				title = f.Title
			}
			s = title + " " + s
		}
		return s
	}
	if !c.IsBlock() {
		if !c.Decoder.IsNeoX() {
			return fmt.Sprintf("vanilla %s, V=%d", stack(c.Decoder), c.VocabSize)
		}
		return fmt.Sprintf("vanilla GPT-NeoX: %s, V=%d", stack(c.Decoder), c.VocabSize)
	}
	emb := string(c.Embedder.Type)
	if enc := c.Embedder.Encoder; enc != nil {
		emb = enc.Describe(c.Embedder.Dim) + " " + emb
	}
	td := stack(&c.TokenDecoder.DecoderConfig)
	if own := c.TokenDecoder.Own; own != nil {
		td = own.Describe()
	}
	return fmt.Sprintf("Block Transformer: L_B=%d, %s embedder, block decoder %s, token decoder %s, %s decoding r=%d, V=%d",
		c.BlockLength, emb, stack(c.BlockDecoder), td, c.TokenDecoder.Decoding, c.TokenDecoder.ExpansionRatio, c.VocabSize)
}

// Stacks returns the model's decoder stacks (GPT-NeoX or a registered family's) by component (a
// token decoder with a stack of its own, T5's, is not one).
func (c *Config) Stacks() map[string]*DecoderConfig {
	if !c.IsBlock() {
		return map[string]*DecoderConfig{Decoder: c.Decoder}
	}
	out := map[string]*DecoderConfig{BlockDecoder: c.BlockDecoder}
	if c.TokenDecoder.Own == nil {
		out[TokenDecoder] = &c.TokenDecoder.DecoderConfig
	}
	return out
}
