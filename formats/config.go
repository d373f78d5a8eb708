package formats

import (
	"encoding/json"
	"fmt"
	"os"
)

// FormatName marks our model directory's config.json.
const FormatName = "btconvert"

// FormatVersion is bumped on any incompatible change of the directory layout.
const FormatVersion = 1

// Component names: the files of our directory.
const (
	Embedder     = "embedder"
	BlockDecoder = "block_decoder"
	TokenDecoder = "token_decoder"
	Decoder      = "decoder" // a vanilla model's only component
)

// DecoderConfig is one GPT-NeoX stack, fully explicit.
type DecoderConfig struct {
	Layers           int     `json:"num_layers"`
	Hidden           int     `json:"hidden_size"`
	Heads            int     `json:"num_heads"`
	HeadDim          int     `json:"head_dim"`
	Intermediate     int     `json:"intermediate_size"`
	RotaryDims       int     `json:"rotary_dims"` // leading dims of each head that get rotary
	RotaryBase       float64 `json:"rotary_base"`
	LayerNormEps     float64 `json:"layer_norm_eps"`
	ParallelResidual bool    `json:"parallel_residual"`
	Activation       string  `json:"activation"` // "gelu" (exact erf form)
	// MaxPositions is the base config's max_position_embeddings: positions the stack was built for
	// (0: unknown).
	MaxPositions int `json:"max_position_embeddings,omitempty"`
}

// EmbedderConfig is the block embedder.
type EmbedderConfig struct {
	Type string `json:"type"` // "concat" or "projection_layer"
	Dim  int    `json:"dim"`  // width of one token vector
}

// TokenDecoderConfig adds the block-context expansion to a decoder stack.
type TokenDecoderConfig struct {
	DecoderConfig
	ExpansionRatio int    `json:"expansion_ratio"`
	Decoding       string `json:"decoding"` // "prefix" or "summation"
}

// Config is our config.json: the complete architecture, nothing left to defaults.
type Config struct {
	Format        string              `json:"format"`
	FormatVersion int                 `json:"format_version"`
	Kind          string              `json:"kind"` // "block" or "vanilla"
	VocabSize     int                 `json:"vocab_size"`
	PadTokenID    int                 `json:"pad_token_id"`
	BOSTokenID    int                 `json:"bos_token_id"`
	BlockLength   int                 `json:"block_length,omitempty"`
	Embedder      *EmbedderConfig     `json:"embedder,omitempty"`
	BlockDecoder  *DecoderConfig      `json:"block_decoder,omitempty"`
	TokenDecoder  *TokenDecoderConfig `json:"token_decoder,omitempty"`
	Decoder       *DecoderConfig      `json:"decoder,omitempty"`
	// Source keeps what the source's YAML said that does not change the computation but that an
	// export writes back (nil when the source had none).
	Source *SourceConfig `json:"source,omitempty"`
	// Quantization maps "component/tensor" to how it is stored, for every quantized tensor.
	Quantization map[string]QuantSpec `json:"quantization,omitempty"`
}

// SourceConfig is the provenance part of the config: the base models the YAML named, its training
// context length and precision.
type SourceConfig struct {
	BaseModels map[string]string `json:"base_models,omitempty"` // component -> model_name_or_path
	MaxLength  int               `json:"max_length,omitempty"`  // tokens (the YAML's max_length)
	Precision  string            `json:"precision,omitempty"`
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

// QuantSpec records how one tensor is quantized (see docs/FORMAT.md).
type QuantSpec struct {
	Type       string `json:"type"`                 // "int8" or "int4"
	GroupSize  int    `json:"group_size,omitempty"` // int4: elements per group along the input dim
	Symmetric  bool   `json:"symmetric"`
	ScaleDType string `json:"scale_dtype"`           // "F32" or "F16"
	Rows       int    `json:"rows"`                  // logical shape [rows, cols]
	Cols       int    `json:"cols"`                  //
	PaddedCols int    `json:"padded_cols,omitempty"` // int4: cols rounded up to a whole group
}

// IsBlock reports whether this is a Block Transformer.
func (c *Config) IsBlock() bool { return c.Kind == "block" }

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
		case d.Layers < 1, d.Hidden < 1, d.Heads < 1, d.Intermediate < 1:
			return fmt.Errorf("%s: layers, hidden_size, num_heads and intermediate_size must be positive", name)
		case d.Heads*d.HeadDim != d.Hidden:
			return fmt.Errorf("%s: num_heads %d x head_dim %d != hidden_size %d", name, d.Heads, d.HeadDim, d.Hidden)
		case d.RotaryDims < 0 || d.RotaryDims > d.HeadDim || d.RotaryDims%2 != 0:
			return fmt.Errorf("%s: rotary_dims %d must be even and at most head_dim %d", name, d.RotaryDims, d.HeadDim)
		case d.Activation != "gelu":
			return fmt.Errorf("%s: activation %q is not supported (only exact gelu)", name, d.Activation)
		case d.LayerNormEps <= 0 || d.RotaryBase <= 0:
			return fmt.Errorf("%s: layer_norm_eps and rotary_base must be positive", name)
		case d.MaxPositions < 0:
			return fmt.Errorf("%s: max_position_embeddings must not be negative", name)
		}
		return nil
	}
	if c.VocabSize < 1 {
		return fmt.Errorf("vocab_size must be positive")
	}
	switch c.Kind {
	case "vanilla":
		return dec("decoder", c.Decoder)
	case "block":
		if err := dec("block_decoder", c.BlockDecoder); err != nil {
			return err
		}
		if c.TokenDecoder == nil {
			return fmt.Errorf("token_decoder is missing")
		}
		if err := dec("token_decoder", &c.TokenDecoder.DecoderConfig); err != nil {
			return err
		}
		if c.BlockLength < 1 || c.Embedder == nil {
			return fmt.Errorf("block_length and embedder are required for a block model")
		}
		D := c.BlockDecoder.Hidden
		switch c.Embedder.Type {
		case "concat":
			if c.Embedder.Dim*c.BlockLength != D {
				return fmt.Errorf("concat embedder: dim %d x block_length %d != block decoder hidden %d", c.Embedder.Dim, c.BlockLength, D)
			}
		case "projection_layer":
			if c.Embedder.Dim < 1 {
				return fmt.Errorf("projection_layer embedder: dim must be positive")
			}
		default:
			return fmt.Errorf("embedder type %q (want concat or projection_layer)", c.Embedder.Type)
		}
		td := c.TokenDecoder
		switch td.Decoding {
		case "prefix":
			if td.ExpansionRatio < 1 {
				return fmt.Errorf("token_decoder: expansion_ratio must be positive")
			}
		case "summation":
			if td.ExpansionRatio != c.BlockLength {
				return fmt.Errorf("token_decoder: summation decoding needs expansion_ratio = block_length (%d), got %d", c.BlockLength, td.ExpansionRatio)
			}
		default:
			return fmt.Errorf("token_decoder: decoding %q (want prefix or summation)", td.Decoding)
		}
		return nil
	}
	return fmt.Errorf("kind %q (want block or vanilla)", c.Kind)
}

// ReadConfig reads and validates our config.json.
func ReadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badFile(path, "cannot read: %v", unwrapPathErr(err))
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, badFile(path, "not valid JSON: %v", err)
	}
	if c.Format != FormatName {
		return nil, badFile(path, "not a btconvert config (format %q)", c.Format)
	}
	if c.FormatVersion != FormatVersion {
		return nil, badFile(path, "format_version %d is not supported (this btconvert reads %d)", c.FormatVersion, FormatVersion)
	}
	if err := c.Validate(); err != nil {
		return nil, badFile(path, "%v", err)
	}
	return &c, nil
}
