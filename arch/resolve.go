package arch

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Setting is one key a YAML config section sets, in the order written.
type Setting struct {
	Key   string
	Value any
	// Origin is where the value came from; zero means the section's file.
	Origin Origin
}

// Section names where settings come from, for origins and messages: File is the file's base name
// (or "released config NAME"), Kind what kind of source that is (OriginYAML when empty), Stack the
// decoder ("block_decoder"), Keys the section that holds the settings ("block_decoder.config", or
// "model_config" in a vanilla YAML).
type Section struct {
	File  string
	Kind  OriginKind
	Stack string
	Keys  string
}

func (s Section) Origin() Origin {
	if s.Kind == "" {
		return Origin{OriginYAML, s.File}
	}
	return Origin{s.Kind, s.File}
}

// Heads are head counts the caller gives: none, one for every decoder, or (block models) the
// block decoder's and the token decoder's, in that order.
type Heads []int

// For is the head count given for one stack (0: none).
func (h Heads) For(stack string) int {
	switch {
	case len(h) == 0:
		return 0
	case len(h) == 1 || stack != TokenDecoder:
		return h[0]
	}
	return h[1]
}

// String is the flag spelling ("12", "8,4").
func (h Heads) String() string {
	var parts []string
	for _, n := range h {
		parts = append(parts, strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

// GivenHeads is the origin of a head count the caller gave.
var GivenHeads = Origin{OriginGiven, "the given head count"}

// FromShapes is the origin of values read off the tensor shapes.
var FromShapes = Origin{OriginShapes, "tensor shapes"}

// StackHF is a decoder stack's resolved HF config with where each value came from: the official
// code's GPTNeoXConfig, which families/gptneox registers (RegisterDecoderClass). What resolving a
// YAML and assembling a config ask of it.
type StackHF interface {
	tokenVocab
	Summary() string                            // its keys with their values, grouped by origin
	Set(key string, v any, origin Origin) error // one key as a config section sets it
	OriginOf(key string) Origin
	Keys() []string     // the keys that have a value's origin
	Int(key string) int // an integer key's value (0: none yet)
	Missing() []string  // the keys still without a value
	Decoder() (DecoderConfig, error)
}

// DecoderClass is how the official code's decoder class (ClassNeoX) resolves: the HF config of a
// base model it knows, or the class defaults for one outside its table.
type DecoderClass struct {
	// Base is the config of the base model named (model_name_or_path), false if unknown.
	Base func(name string) (StackHF, bool)
	// Defaults is the starting point for a base outside the table: the class defaults.
	Defaults func() StackHF
	// BaseNames lists the base models Base knows, sorted.
	BaseNames func() []string
	// DefaultKeys are the settings a base model states that the defaults only guess (a warning
	// names those left at the defaults).
	DefaultKeys []string
	// ClassName is the HF class in messages ("GPTNeoXConfig").
	ClassName string
}

var decoderClass struct {
	sync.RWMutex
	c *DecoderClass
}

// RegisterDecoderClass makes the official decoder class resolvable; its family registers it once,
// from its package's init.
func RegisterDecoderClass(c *DecoderClass) {
	decoderClass.Lock()
	defer decoderClass.Unlock()
	if decoderClass.c != nil {
		panic("arch: the official decoder class registered twice")
	}
	decoderClass.c = c
}

// Decoders is the official decoder class; where names what needs it, in the error of a program
// built without its family.
func Decoders(where string) (*DecoderClass, error) {
	decoderClass.RLock()
	defer decoderClass.RUnlock()
	if decoderClass.c == nil {
		k := knownStacks[FamilyNeoX]
		return nil, &MissingFamilyError{Where: where, Title: k.title, Package: k.pkg}
	}
	return decoderClass.c, nil
}

// BaseModelNames lists every model_name_or_path the decoder class knows (none without its family).
func BaseModelNames() []string {
	c, err := Decoders("")
	if err != nil {
		return nil
	}
	return c.BaseNames()
}

// ResolveStack builds one decoder's HF config as the official code does: in block mode the
// official fill-in first (fillin.go), then the config of the base model (st.Base), then every
// setting on top of it, in order. heads > 0 is a head count the caller gives: it must agree with
// what the settings, the fill-in or the base model say, and gives the count only where none of
// them does. Shape keys still open (a base outside the table) are read from shapes (key -> value
// off the weights). Errors are worded for the file's reader; they name the Heads option as {Heads}.
func ResolveStack(st StackSpec, sec Section, block bool, heads int, shapes map[string]int) (StackHF, error) {
	class, err := Decoders(sec.Stack)
	if err != nil {
		return nil, err
	}
	c, known := class.Base(st.Base)
	if !known {
		c = class.Defaults()
	}
	settings := st.Settings
	if block {
		var err error
		if settings, err = FillIn(settings, sec); err != nil {
			return nil, err
		}
	}
	if err := ApplySettings(c, settings, sec); err != nil {
		return nil, err
	}
	if have := c.Int(KeyHeads); heads > 0 && heads != have {
		if have != 0 {
			return nil, fmt.Errorf("%s: %s; {Heads} %d disagrees (the official code builds %d heads from this config)",
				sec.Stack, c.Explain(KeyHeads), heads, have)
		}
		if err := c.Set(KeyHeads, heads, GivenHeads); err != nil {
			return nil, fmt.Errorf("%s: {Heads} %d is out of range (at most %d)", sec.Stack, heads, MaxHeads)
		}
	}
	if c.Int(KeyHeads) == 0 {
		why := fmt.Sprintf("model_name_or_path %q is not a base model btconvert knows", st.Base)
		if st.Base == "" {
			why = "no model_name_or_path names a base model"
		}
		return nil, fmt.Errorf("%s: num_attention_heads is unknown (%s and %s does not state it): state num_attention_heads under %s in %s, or pass {Heads} N",
			sec.Stack, why, sec.Keys, sec.Keys, sec.File)
	}
	for _, k := range c.Missing() {
		if v, ok := shapes[k]; ok && v > 0 {
			_ = c.Set(k, v, FromShapes)
		}
	}
	if miss := c.Missing(); len(miss) > 0 {
		return nil, fmt.Errorf("%s: %s unknown (not stated, not in the base model, not readable from the weights)", sec.Stack, strings.Join(miss, ", "))
	}
	return c, nil
}

// ApplySettings sets each setting on a part's HF config in order; a setting without an origin
// comes from the section's file.
func ApplySettings(c interface {
	Set(key string, v any, origin Origin) error
}, settings []Setting, sec Section) error {
	for _, s := range settings {
		o := s.Origin
		if o.Kind == "" {
			o = sec.Origin()
		}
		if err := c.Set(s.Key, s.Value, o); err != nil {
			return fmt.Errorf("%s: %v", sec.Keys, err)
		}
	}
	return nil
}

// BaseNotKnown is the error for a RoBERTa or T5 part whose base model is not in the table.
func BaseNotKnown(sec Section, base string, known []string) error {
	if base == "" {
		return fmt.Errorf("%s.model_name_or_path is not stated: the official code builds the %s from that model's config (btconvert knows %s)",
			sec.Stack, sec.Stack, strings.Join(known, ", "))
	}
	return fmt.Errorf("%s.model_name_or_path %q is not a base model btconvert knows (%s): the official code builds the %s from that model's config",
		sec.Stack, base, strings.Join(known, ", "), sec.Stack)
}

// FromShapesWithHeads is a stack read off the weights alone: everything but the head count, which
// heads gives (where names the stack in the error of a program built without its family).
func FromShapesWithHeads(where string, shapes map[string]int, heads int) (StackHF, error) {
	class, err := Decoders(where)
	if err != nil {
		return nil, err
	}
	n := class.Defaults()
	for k, v := range shapes {
		_ = n.Set(k, v, FromShapes)
	}
	if heads == 0 {
		return n, nil // Decoder refuses the count still unknown
	}
	if err := n.Set(KeyHeads, heads, GivenHeads); err != nil {
		return nil, fmt.Errorf("%s: {Heads} %d is out of range (at most %d)", where, heads, MaxHeads)
	}
	return n, nil
}

// TokenIDs are the special ids a vanilla config names.
type TokenIDs struct{ Pad, BOS, EOS int }

// BlockParts are the settings of a block model outside its two GPT-NeoX decoders, each with its
// origin, and the resolved HF configs of its other parts.
type BlockParts struct {
	Embedder       EmbedderConfig // the lookup embedder's; an encoder embedder's Type only
	EmbedderOrigin Origin
	EmbedderVocab  int // 0: unsaid; else must agree with the token decoder's vocabulary
	// Encoder is an encoder embedder's resolved config (a RoBERTa one's; nil: the lookup
	// embedder), with its CLS tokens (roberta_cls; 0 for roberta).
	Encoder   PartHF
	CLSTokens int
	CLSOrigin Origin
	// Own is the resolved config of a token decoder with a stack of its own (a T5 one's; nil: a
	// GPT-NeoX stack).
	Own PartHF
	// BlockDecoder is the block decoder's resolved config (the lookup embedder's width defaults
	// to its hidden size over the block length).
	BlockDecoder   StackHF
	BlockLength    int
	LengthOrigin   Origin
	ExpansionRatio int
	RatioOrigin    Origin
	Decoding       Decoding
	DecodingOrigin Origin
}

// PartHF is the resolved HF config of an embedder's encoder or of a token decoder's own stack
// (roberta.HF, t5.HF in their families): what assembling a Block config asks of it.
type PartHF interface {
	tokenVocab
	Summary() string // its keys with their values, grouped by origin
	// assemble puts the part into cfg (complete but for it) and records where its values came
	// from; tdVocab explains the token decoder's vocabulary.
	Assemble(cfg *Config, p *BlockParts, tdVocab Explained, prov Provenance, origins map[string]string) error
}

// BlockConfig assembles a Block Transformer config from its resolved block decoder, token decoder
// (tdC, or p.Own for one with a stack of its own) and the other parts, recording where every value
// came from in prov and in the config's Origins.
func BlockConfig(bdC, tdC StackHF, p BlockParts, prov Provenance) (*Config, error) {
	bd, err := bdC.Decoder()
	if err != nil {
		return nil, fmt.Errorf("block_decoder: %v", err)
	}
	td := &TokenDecoderConfig{ExpansionRatio: p.ExpansionRatio, Decoding: p.Decoding}
	var vocab tokenVocab = tdC
	if p.Own != nil {
		vocab = p.Own
	} else if td.DecoderConfig, err = tdC.Decoder(); err != nil {
		return nil, fmt.Errorf("token_decoder: %v", err)
	}
	V := vocab.VocabSize()
	if p.EmbedderVocab != 0 && p.EmbedderVocab != V {
		return nil, fmt.Errorf("embedder vocab_size %d disagrees with the token decoder's %s", p.EmbedderVocab, vocab.Explain(KeyVocab))
	}
	emb := p.Embedder
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: Block, VocabSize: V,
		BlockLength: p.BlockLength, Embedder: &emb, BlockDecoder: &bd, TokenDecoder: td}
	origins := map[string]string{}
	recordStack(BlockDecoder, bdC, prov, origins)
	if tdC != nil && p.Own == nil {
		recordStack(TokenDecoder, tdC, prov, origins)
	}
	prov[KeyVocab] = explain(vocab, KeyVocab)
	for _, part := range []PartHF{p.Own, p.Encoder} { // the token decoder's first: it has the ids
		if part != nil {
			if err := part.Assemble(cfg, &p, vocab, prov, origins); err != nil {
				return nil, err
			}
		}
	}
	for _, v := range []struct {
		key, origin string // the Provenance key (what TensorSpec.Dims name), the Origins key
		val         any
		o           Origin
	}{{"block_length", "block_length", p.BlockLength, p.LengthOrigin},
		{"expansion_ratio", TokenDecoder + ".expansion_ratio", p.ExpansionRatio, p.RatioOrigin},
		{"decoding", TokenDecoder + ".decoding", p.Decoding, p.DecodingOrigin},
		{"embedder." + KeyHidden, "embedder.dim", emb.Dim, p.EmbedderOrigin}} {
		if v.key == "embedder."+KeyHidden && p.Encoder != nil {
			origins[v.origin] = string(v.o.Kind)
			continue // the encoder's own record says more (hidden_size is one of its keys)
		}
		prov[v.key] = fmt.Sprintf("%s %v from %s", v.key, v.val, v.o.From)
		origins[v.origin] = string(v.o.Kind)
	}
	cfg.Origins = origins
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// tokenVocab is a token decoder's resolved config: it states the vocabulary.
type tokenVocab interface {
	Explained
	VocabSize() int
}

// VanillaConfig assembles a vanilla GPT-NeoX config from its resolved HF config.
func VanillaConfig(n StackHF, ids TokenIDs, prov Provenance) (*Config, error) {
	d, err := n.Decoder()
	if err != nil {
		return nil, err
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: Vanilla, VocabSize: n.VocabSize(),
		PadTokenID: ids.Pad, BOSTokenID: ids.BOS, EOSTokenID: ids.EOS, Decoder: &d, Origins: map[string]string{}}
	recordStack(Decoder, n, prov, cfg.Origins)
	prov[KeyVocab] = explain(n, KeyVocab)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// originNames are the keys of a stack's Origins: our names for the HF keys shown per decoder.
var originNames = map[string]string{KeyHidden: "hidden_size", KeyHeads: "heads", KeyIntermediate: "intermediate_size", KeyLayers: "layers"}

// recordStack notes where each of a stack's values came from.
func recordStack(comp string, c StackHF, prov Provenance, origins map[string]string) {
	for _, k := range c.Keys() {
		prov[comp+"."+k] = comp + "." + explain(c, k)
	}
	for k, name := range originNames {
		origins[comp+"."+name] = string(c.OriginOf(k).Kind)
	}
	origins[comp+".head_dim"] = string(c.OriginOf(KeyHeads).Kind)
}

// NewSource keeps a YAML's provenance settings (nil when it had none).
func NewSource(maxLength int, precision string, bases map[string]string) *SourceConfig {
	s := &SourceConfig{MaxLength: maxLength, Precision: precision}
	for k, v := range bases {
		if v != "" {
			if s.BaseModels == nil {
				s.BaseModels = map[string]string{}
			}
			s.BaseModels[k] = v
		}
	}
	if s.BaseModels == nil && s.MaxLength == 0 && s.Precision == "" {
		return nil
	}
	return s
}
