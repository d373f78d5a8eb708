package arch

import (
	"cmp"
	"fmt"
	"strings"
)

// A spec is what an official YAML (a file, a released config by name, or init's shape) says about
// the architecture, before anything is filled in. Resolve turns it into our Config the way the
// official code builds its model from the YAML; this is the one place where that happens.

// StackSpec is one GPT-NeoX decoder of a YAML: its class, the base model it names and the keys
// its config section sets, in order.
type StackSpec struct {
	Cls      string // "gpt-neo-x" ("" is taken as it)
	Base     string // model_name_or_path
	Settings []Setting
}

// EmbedderSpec is the embedder of a Block YAML.
type EmbedderSpec struct {
	Cls              string // "lookup" ("" is taken as it)
	ProjectionMethod string // "concat" ("" or null) or "projection_layer"
	Hidden, Vocab    int    // 0: unsaid
	EmbeddingTokens  int    // n_embedding_tokens; 0: unsaid (1)
}

// TokenSpec is the token decoder of a Block YAML.
type TokenSpec struct {
	StackSpec
	ExpansionMethod string // "expansion_layer" ("" is taken as it)
	ExpansionRatio  int    // 0: unsaid
	Decoding        string // decoding_strategy ("" : unsaid)
}

// BlockSpec is a Block Transformer YAML.
type BlockSpec struct {
	Name string
	// File names the source in origins and messages ("config.yaml", "released config
	// block_main_b4_85"); Kind is its kind of origin (OriginYAML when empty).
	File         string
	Kind         OriginKind
	BlockLength  int
	MaxLength    int
	Precision    string
	Embedder     EmbedderSpec
	BlockDecoder StackSpec
	TokenDecoder TokenSpec
}

// VanillaSpec is a vanilla model's YAML: a base model and the keys of its HF config set on top
// (model_config). Vanilla YAMLs get no fill-in.
type VanillaSpec struct {
	Name      string
	File      string
	Kind      OriginKind
	Base      string
	Settings  []Setting
	MaxLength int
	Precision string
}

// Supported classes.
const (
	clsLookup = "lookup"
	clsNeoX   = "gpt-neo-x"
)

// notYet is the message for the official classes btconvert does not run yet.
func notYet(what string) error {
	return fmt.Errorf("%s is not supported yet (btconvert runs lookup embedders with gpt-neo-x decoders and prefix or summation decoding)", what)
}

func (s *BlockSpec) origin() Origin { return Section{File: s.File, Kind: s.Kind}.origin() }

// Resolve builds the config as the official code does. heads gives head counts where the config
// leaves them open (and must agree where it does not); shapes(stack) are the shape keys read off
// the weights for a base model outside the table (nil when there are no weights). Errors name
// the YAML's keys; the caller says which file.
func (s *BlockSpec) Resolve(heads Heads, shapes func(stack string) map[string]int, prov Provenance) (*Config, []string, error) {
	if len(heads) > 2 {
		return nil, nil, fmt.Errorf("{Heads} %s: give one head count, or the block decoder's and the token decoder's", heads)
	}
	switch s.Embedder.Cls {
	case "", clsLookup:
	case "roberta", "roberta_cls":
		return nil, nil, notYet("embedder.cls " + s.Embedder.Cls)
	default:
		return nil, nil, fmt.Errorf("embedder.cls %q is not an embedder of the official code (lookup, roberta or roberta_cls)", s.Embedder.Cls)
	}
	for stack, cls := range map[string]string{BlockDecoder: s.BlockDecoder.Cls, TokenDecoder: s.TokenDecoder.Cls} {
		switch cls {
		case "", clsNeoX:
		case "t5", "gpt-neo":
			return nil, nil, notYet(stack + ".cls " + cls)
		default:
			return nil, nil, fmt.Errorf("%s.cls %q is not a decoder of the official code", stack, cls)
		}
	}
	if n := s.Embedder.EmbeddingTokens; n > 1 {
		return nil, nil, notYet(fmt.Sprintf("embedder.n_embedding_tokens %d", n))
	}
	if m := s.TokenDecoder.ExpansionMethod; m != "" && m != "expansion_layer" {
		return nil, nil, notYet(fmt.Sprintf("token_decoder.expansion_method %q", m))
	}
	if s.BlockLength < 1 {
		return nil, nil, fmt.Errorf("block_length is not stated (a Block Transformer YAML needs it)")
	}
	if s.BlockLength > MaxBlockLength || s.TokenDecoder.ExpansionRatio < 0 || s.TokenDecoder.ExpansionRatio > MaxRatio {
		return nil, nil, fmt.Errorf("block_length %d or expansion_ratio %d is out of range (1 to %d)", s.BlockLength, s.TokenDecoder.ExpansionRatio, MaxBlockLength)
	}
	if s.MaxLength < 0 {
		return nil, nil, fmt.Errorf("max_length %d must not be negative", s.MaxLength)
	}
	o := s.origin()
	var dec Decoding
	switch s.TokenDecoder.Decoding {
	case "":
		return nil, nil, fmt.Errorf("token_decoder.decoding_strategy is not stated (the official code needs prefix, summation or cross_attention)")
	case string(Prefix), string(Summation):
		dec = Decoding(s.TokenDecoder.Decoding)
	case "cross_attention":
		return nil, nil, notYet("token_decoder.decoding_strategy cross_attention")
	default:
		return nil, nil, fmt.Errorf("token_decoder.decoding_strategy %q (want prefix, summation or cross_attention)", s.TokenDecoder.Decoding)
	}
	ratio, ratioOrigin := s.TokenDecoder.ExpansionRatio, o
	switch {
	case ratio == 0 && dec == Prefix:
		return nil, nil, fmt.Errorf("token_decoder.expansion_ratio is not stated: the official code requires it for prefix decoding")
	case ratio == 0:
		ratio = s.BlockLength
		ratioOrigin = Origin{OriginFillIn, fmt.Sprintf("the official default for %s decoding (block_length %d)", dec, s.BlockLength)}
	case dec == Summation && ratio != s.BlockLength:
		return nil, nil, fmt.Errorf("token_decoder.expansion_ratio %d: summation decoding needs expansion_ratio = block_length (%d)", ratio, s.BlockLength)
	}
	resolve := func(stack string, st StackSpec) (*NeoXConfig, error) {
		var sh map[string]int
		if shapes != nil {
			sh = shapes(stack)
		}
		return ResolveStack(st, Section{File: s.File, Kind: s.Kind, Stack: stack, Keys: stack + ".config"}, true, heads.For(stack), sh)
	}
	bdC, err := resolve(BlockDecoder, s.BlockDecoder)
	if err != nil {
		return nil, nil, err
	}
	tdC, err := resolve(TokenDecoder, s.TokenDecoder.StackSpec)
	if err != nil {
		return nil, nil, err
	}
	embType := EmbedderType(cmp.Or(s.Embedder.ProjectionMethod, string(Concat)))
	embDim, embOrigin := s.Embedder.Hidden, o
	if embDim == 0 { // as the lookup embedder: the block decoder's width over the block length
		embDim = bdC.Hidden / s.BlockLength
		embOrigin = Origin{OriginFillIn, fmt.Sprintf("the official default (block decoder hidden_size %d / block_length %d)", bdC.Hidden, s.BlockLength)}
	}
	cfg, err := BlockConfig(bdC, tdC, BlockParts{
		Embedder: EmbedderConfig{Type: embType, Dim: embDim}, EmbedderOrigin: embOrigin, EmbedderVocab: s.Embedder.Vocab,
		BlockLength: s.BlockLength, LengthOrigin: o, ExpansionRatio: ratio, RatioOrigin: ratioOrigin,
		Decoding: dec, DecodingOrigin: o}, prov)
	if err != nil {
		return nil, nil, err
	}
	cfg.Source = NewSource(s.MaxLength, s.Precision, map[string]string{BlockDecoder: s.BlockDecoder.Base, TokenDecoder: s.TokenDecoder.Base})
	notes := []string{"architecture from " + s.File, "block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	notes = append(notes, unknownBaseNotes(BlockDecoder, s.BlockDecoder.Base, bdC)...)
	notes = append(notes, unknownBaseNotes(TokenDecoder, s.TokenDecoder.Base, tdC)...)
	if ratioOrigin.Kind == OriginFillIn {
		notes = append(notes, fmt.Sprintf("token_decoder: expansion_ratio %d from %s", ratio, ratioOrigin.From))
	}
	return cfg, notes, nil
}

// Resolve builds a vanilla config: the base model's HF config with the settings on top.
func (s *VanillaSpec) Resolve(heads Heads, shapes map[string]int, prov Provenance) (*Config, []string, error) {
	if len(heads) > 1 {
		return nil, nil, fmt.Errorf("{Heads} %s: a vanilla model has one decoder", heads)
	}
	if s.MaxLength < 0 {
		return nil, nil, fmt.Errorf("max_length %d must not be negative", s.MaxLength)
	}
	n, err := ResolveStack(StackSpec{Base: s.Base, Settings: s.Settings}, Section{File: s.File, Kind: s.Kind, Stack: Decoder, Keys: "model_config"},
		false, heads.For(Decoder), shapes)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := VanillaConfig(n, TokenIDs{}, prov)
	if err != nil {
		return nil, nil, err
	}
	cfg.Source = NewSource(s.MaxLength, s.Precision, map[string]string{Decoder: s.Base})
	return cfg, append([]string{"architecture from " + s.File, "decoder: " + n.Summary()}, unknownBaseNotes(Decoder, s.Base, n)...), nil
}

// unknownBaseNotes warns when a base model outside the table left settings at GPTNeoXConfig's
// defaults: the official code would take them from that model's config, which btconvert cannot
// read.
func unknownBaseNotes(stack, base string, c *NeoXConfig) []string {
	if _, known := BaseModel(base); known || base == "" {
		return nil
	}
	var keys []string
	for _, k := range []string{KeyRotaryPct, KeyRotaryBase, KeyLayerNormEps, KeyParallelResidual, KeyAct, KeyMaxPositions} {
		if c.Origin[k].Kind == OriginDefaults {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("warning: %s: model_name_or_path %q is not a base model btconvert knows, so %s are GPTNeoXConfig's defaults; the official code takes them from that model's config: state them in the YAML if they differ",
		stack, base, strings.Join(keys, ", "))}
}
