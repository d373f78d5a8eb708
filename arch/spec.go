package arch

import (
	"cmp"
	"fmt"
	"strings"
)

// A spec is what an official YAML (a file, a released config by name, or init's shape) says about
// the architecture, before anything is filled in. Resolve turns it into our Config the way the
// official code builds its model from the YAML; this is the one place where that happens.

// StackSpec is one decoder of a YAML: its class, the base model it names and the keys its
// config section sets, in order.
type StackSpec struct {
	Cls      string // "gpt-neo-x" ("" is taken as it) or, a token decoder, "t5"
	Base     string // model_name_or_path
	Settings []Setting
}

// EmbedderSpec is the embedder of a Block YAML.
type EmbedderSpec struct {
	Cls  string // "lookup" ("" is taken as it), "roberta" or "roberta_cls"
	Base string // model_name_or_path (the RoBERTa embedders')
	// ProjectionMethod is "concat" or "projection_layer"; "" (null) is concat for the lookup
	// embedder and projection_layer for the RoBERTa ones, as the official classes take it.
	ProjectionMethod string
	Hidden, Vocab    int // the lookup embedder's config (0: unsaid; Settings may state them)
	EmbeddingTokens  int // n_embedding_tokens; 0: unsaid (1)
	CLSTokens        int // n_cls_tokens (roberta_cls); 0: unsaid (1)
	// Settings are the keys of the config section, in order: the RoBERTa embedders' whole
	// RobertaConfig; the lookup embedder's hidden_size and vocab_size.
	Settings []Setting
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

// The official classes of the parts of a Block Transformer (the YAML's cls keys): each names the
// part's graph too (graph's embedders and token decoders are registered under them).
const (
	ClassLookup     = "lookup"
	ClassRoberta    = "roberta"
	ClassRobertaCLS = "roberta_cls"
	ClassNeoX       = "gpt-neo-x"
	ClassT5         = "t5"
)

// NotYet is the message for the official classes and settings btconvert does not run yet.
func NotYet(what string) error {
	return fmt.Errorf("%s is not supported yet (btconvert runs lookup, roberta and roberta_cls embedders, gpt-neo-x decoders with prefix or summation decoding, and t5 token decoders with cross_attention decoding)", what)
}

func (s *BlockSpec) origin() Origin { return Section{File: s.File, Kind: s.Kind}.Origin() }

// Resolve builds the config as the official code does. heads gives head counts where the config
// leaves them open (and must agree where it does not); shapes(stack) are the shape keys read off
// the weights for a base model outside the table (nil when there are no weights). Errors name
// the YAML's keys; the caller says which file.
func (s *BlockSpec) Resolve(heads Heads, shapes func(stack string) map[string]int, prov Provenance) (*Config, []string, error) {
	if len(heads) > 2 {
		return nil, nil, fmt.Errorf("{Heads} %s: give one head count, or the block decoder's and the token decoder's", heads)
	}
	if (s.Embedder.Cls == ClassRoberta || s.Embedder.Cls == ClassRobertaCLS) && encoderClass(s.Embedder.Cls) == nil {
		return nil, nil, missingFamily(fmt.Sprintf("embedder.cls %q", s.Embedder.Cls), "roberta")
	}
	if s.TokenDecoder.Cls == ClassT5 && tokenStackClass(ClassT5) == nil {
		return nil, nil, missingFamily(fmt.Sprintf("token_decoder.cls %q", s.TokenDecoder.Cls), "t5")
	}
	if (s.Embedder.Cls == "" || s.Embedder.Cls == ClassLookup) && encoderClass(ClassLookup) == nil {
		_, err := lookupClass(fmt.Sprintf("embedder.cls %q", cmp.Or(s.Embedder.Cls, ClassLookup)))
		return nil, nil, err
	}
	if s.Embedder.Cls != "" && s.Embedder.Cls != ClassLookup && encoderClass(s.Embedder.Cls) == nil {
		return nil, nil, fmt.Errorf("embedder.cls %q is not an embedder of the official code (lookup, roberta or roberta_cls)", s.Embedder.Cls)
	}
	switch s.BlockDecoder.Cls {
	case "", ClassNeoX:
	case "gpt-neo":
		return nil, nil, NotYet("block_decoder.cls gpt-neo")
	default:
		return nil, nil, fmt.Errorf("block_decoder.cls %q is not a block decoder of the official code (gpt-neo-x or gpt-neo)", s.BlockDecoder.Cls)
	}
	own := tokenStackClass(s.TokenDecoder.Cls)
	switch s.TokenDecoder.Cls {
	case "", ClassNeoX:
	case "gpt-neo":
		return nil, nil, NotYet("token_decoder.cls gpt-neo")
	default:
		if own == nil {
			return nil, nil, fmt.Errorf("token_decoder.cls %q is not a token decoder of the official code (gpt-neo-x, t5 or gpt-neo)", s.TokenDecoder.Cls)
		}
	}
	if n := s.Embedder.EmbeddingTokens; n > 1 {
		return nil, nil, NotYet(fmt.Sprintf("embedder.n_embedding_tokens %d", n))
	}
	if m := s.TokenDecoder.ExpansionMethod; m != "" && m != "expansion_layer" {
		return nil, nil, NotYet(fmt.Sprintf("token_decoder.expansion_method %q", m))
	}
	if s.BlockLength < 1 {
		return nil, nil, fmt.Errorf("block_length is not stated (a Block Transformer YAML needs it)")
	}
	if s.BlockLength > MaxBlockLength || s.TokenDecoder.ExpansionRatio < 0 || s.TokenDecoder.ExpansionRatio > MaxRatio {
		return nil, nil, fmt.Errorf("block_length %d or expansion_ratio %d is out of range (1 to %d)", s.BlockLength, s.TokenDecoder.ExpansionRatio, MaxBlockLength)
	}
	if err := checkMaxLength(s.MaxLength); err != nil {
		return nil, nil, err
	}
	o := s.origin()
	var dec Decoding
	switch s.TokenDecoder.Decoding {
	case "":
		return nil, nil, fmt.Errorf("token_decoder.decoding_strategy is not stated (the official code needs prefix, summation or cross_attention)")
	case string(Prefix), string(Summation), string(CrossAttention):
		dec = Decoding(s.TokenDecoder.Decoding)
	default:
		return nil, nil, fmt.Errorf("token_decoder.decoding_strategy %q (want prefix, summation or cross_attention)", s.TokenDecoder.Decoding)
	}
	switch {
	case dec == CrossAttention && own == nil:
		return nil, nil, fmt.Errorf("token_decoder.decoding_strategy cross_attention needs token_decoder.cls t5 (the official code supports it for the T5 token decoder only)")
	case own != nil:
		if err := own.CheckDecoding(dec); err != nil {
			return nil, nil, err
		}
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
	resolve := func(stack string, st StackSpec) (StackHF, error) {
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
	parts := BlockParts{BlockLength: s.BlockLength, LengthOrigin: o, ExpansionRatio: ratio, RatioOrigin: ratioOrigin,
		Decoding: dec, DecodingOrigin: o}
	var tdC StackHF
	if own != nil {
		sec := Section{File: s.File, Kind: s.Kind, Stack: TokenDecoder, Keys: TokenDecoder + ".config"}
		if parts.Own, err = own.Resolve(s.TokenDecoder.StackSpec, sec, heads.For(TokenDecoder)); err != nil {
			return nil, nil, err
		}
	} else if tdC, err = resolve(TokenDecoder, s.TokenDecoder.StackSpec); err != nil {
		return nil, nil, err
	}
	if err := s.resolveEmbedder(bdC, &parts); err != nil {
		return nil, nil, err
	}
	cfg, err := BlockConfig(bdC, tdC, parts, prov)
	if err != nil {
		return nil, nil, err
	}
	cfg.Source = NewSource(s.MaxLength, s.Precision, map[string]string{Embedder: s.Embedder.Base, BlockDecoder: s.BlockDecoder.Base, TokenDecoder: s.TokenDecoder.Base})
	notes := []string{"architecture from " + s.File}
	if parts.Encoder != nil {
		notes = append(notes, "embedder: "+parts.Encoder.Summary())
	}
	notes = append(notes, "block_decoder: "+bdC.Summary())
	if parts.Own != nil {
		notes = append(notes, "token_decoder: "+parts.Own.Summary())
	} else {
		notes = append(notes, "token_decoder: "+tdC.Summary())
	}
	notes = append(notes, unknownBaseNotes(BlockDecoder, s.BlockDecoder.Base, bdC)...)
	if tdC != nil {
		notes = append(notes, unknownBaseNotes(TokenDecoder, s.TokenDecoder.Base, tdC)...)
	}
	if ratioOrigin.Kind == OriginFillIn {
		notes = append(notes, fmt.Sprintf("token_decoder: expansion_ratio %d from %s", ratio, ratioOrigin.From))
	}
	return cfg, notes, nil
}

// resolveEmbedder sets the embedder's parts through its class (the lookup embedder's: its width,
// stated or the block decoder's over the block length; an encoder's: its resolved config) and the
// projection.
func (s *BlockSpec) resolveEmbedder(bdC StackHF, p *BlockParts) error {
	e := s.Embedder
	sec := Section{File: s.File, Kind: s.Kind, Stack: Embedder, Keys: Embedder + ".config"}
	enc, err := lookupClass(fmt.Sprintf("embedder.cls %q", ClassLookup))
	if e.Cls != "" && e.Cls != ClassLookup {
		enc, err = encoderClass(e.Cls), nil
	}
	if err != nil {
		return err
	}
	method := e.ProjectionMethod
	switch {
	case method == "":
		method = string(enc.Projection)
	case method != string(Concat) && method != string(ProjectionLayer):
		return fmt.Errorf("embedder.projection_method %q (want projection_layer, concat or null)", method)
	}
	p.Embedder.Type, p.BlockDecoder = EmbedderType(method), bdC
	return enc.Resolve(e, sec, p)
}

// SizeSetting is a setting's value as a size of the config (a positive integer within the key's
// bounds); sec names the section in the error.
func SizeSetting(sec Section, st Setting) (int, error) {
	n, ok := asInt(st.Value)
	if !ok || n < 1 || n > keyLimit[st.Key] {
		return 0, fmt.Errorf("%s: %s: %v is not a positive integer (at most %d)", sec.Keys, st.Key, st.Value, keyLimit[st.Key])
	}
	return n, nil
}

// Resolve builds a vanilla config: the base model's HF config with the settings on top.
func (s *VanillaSpec) Resolve(heads Heads, shapes map[string]int, prov Provenance) (*Config, []string, error) {
	if len(heads) > 1 {
		return nil, nil, fmt.Errorf("{Heads} %s: a vanilla model has one decoder", heads)
	}
	if err := checkMaxLength(s.MaxLength); err != nil {
		return nil, nil, err
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

// unknownBaseNotes warns when a base model outside the table left settings at the class
// defaults (GPTNeoXConfig's): the official code would take them from that model's config, which
// btconvert cannot read.
func unknownBaseNotes(stack, base string, c StackHF) []string {
	class, err := Decoders(stack)
	if err != nil || base == "" {
		return nil
	}
	if _, known := class.Base(base); known {
		return nil
	}
	var keys []string
	for _, k := range class.DefaultKeys {
		if c.OriginOf(k).Kind == OriginDefaults {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("warning: %s: model_name_or_path %q is not a base model btconvert knows, so %s are %s's defaults; the official code takes them from that model's config: state them in the YAML if they differ",
		stack, base, strings.Join(keys, ", "), class.ClassName)}
}
