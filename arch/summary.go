package arch

// Architecture is the architecture as inspect --json and init --list --json show it: each
// decoder's shapes on their own (the decoders of a Block Transformer may differ in width, heads
// and FFN), with what kind of source each value came from.
type Architecture struct {
	Kind         string            `json:"kind"`
	VocabSize    int               `json:"vocab_size"`
	BlockLength  int               `json:"block_length,omitempty"`
	Embedder     *EmbedderSummary  `json:"embedder,omitempty"`
	BlockDecoder *StackSummary     `json:"block_decoder,omitempty"`
	TokenDecoder *StackSummary     `json:"token_decoder,omitempty"`
	Decoder      *StackSummary     `json:"decoder,omitempty"`
	Origin       map[string]string `json:"origin,omitempty"` // block_length
}

// EmbedderSummary is the block embedder.
type EmbedderSummary struct {
	Type   string            `json:"type"`
	Dim    int               `json:"dim"`
	Class  string            `json:"class"` // lookup, roberta or roberta_cls
	Origin map[string]string `json:"origin,omitempty"`
	// Encoder is an encoder class's network (its hidden_size is Dim), with its CLS tokens (a
	// RoBERTa one's).
	Encoder   *StackSummary `json:"encoder,omitempty"`
	CLSTokens int           `json:"n_cls_tokens,omitempty"`
}

// StackSummary is one decoder (or an embedder's encoder).
type StackSummary struct {
	Class            string            `json:"class,omitempty"` // a token decoder's: gpt-neo-x or t5
	HiddenSize       int               `json:"hidden_size"`
	Heads            int               `json:"heads"`
	HeadDim          int               `json:"head_dim"`
	IntermediateSize int               `json:"intermediate_size"`
	Layers           int               `json:"layers"`
	ExpansionRatio   int               `json:"expansion_ratio,omitempty"` // token decoder
	Decoding         string            `json:"decoding,omitempty"`        // token decoder
	Origin           map[string]string `json:"origin,omitempty"`
}

// Summary is the architecture of c, per decoder.
func (c *Config) Summary() Architecture {
	origins := func(prefix string, keys ...string) map[string]string {
		out := map[string]string{}
		for _, k := range keys {
			if o := c.Origins[prefix+k]; o != "" {
				out[k] = o
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	stack := func(comp string, d *DecoderConfig) *StackSummary {
		return &StackSummary{HiddenSize: d.Hidden, Heads: d.Heads, HeadDim: d.HeadDim, IntermediateSize: d.Intermediate, Layers: d.Layers,
			Origin: origins(comp+".", "hidden_size", "heads", "head_dim", "intermediate_size", "layers", "expansion_ratio", "decoding")}
	}
	a := Architecture{Kind: string(c.Kind), VocabSize: c.VocabSize}
	if !c.IsBlock() {
		a.Decoder = stack(Decoder, c.Decoder)
		return a
	}
	a.BlockLength = c.BlockLength
	a.Origin = origins("", "block_length")
	e := c.Embedder
	a.Embedder = &EmbedderSummary{Type: string(e.Type), Dim: e.Dim, Class: e.Class(), Origin: origins("embedder.", "dim", "n_cls_tokens")}
	if enc := e.Encoder; enc != nil {
		enc.Summarize(a.Embedder, func(d *DecoderConfig) *StackSummary { return stack(Embedder, d) }, e.Dim)
	}
	a.BlockDecoder = stack(BlockDecoder, c.BlockDecoder)
	td := c.TokenDecoder
	if own := td.Own; own != nil {
		shape := own.Shape()
		a.TokenDecoder = stack(TokenDecoder, &shape)
	} else {
		a.TokenDecoder = stack(TokenDecoder, &td.DecoderConfig)
	}
	a.TokenDecoder.Class, a.TokenDecoder.ExpansionRatio, a.TokenDecoder.Decoding = td.Class(), td.ExpansionRatio, string(td.Decoding)
	return a
}
