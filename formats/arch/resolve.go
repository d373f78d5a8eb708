package arch

import (
	"fmt"
	"strconv"
	"strings"
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

func (s Section) origin() Origin {
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
var GivenHeads = Origin{OriginHeads, "the given head count"}

// FromShapes is the origin of values read off the tensor shapes.
var FromShapes = Origin{OriginShapes, "tensor shapes"}

// ResolveStack builds one decoder's HF config as the official code does: in block mode the
// official fill-in first (fillin.go), then the config of the base model (st.Base), then every
// setting on top of it, in order. heads > 0 is a head count the caller gives: it must agree with
// what the settings, the fill-in or the base model say, and gives the count only where none of
// them does. Shape keys still open (a base outside the table) are read from shapes (key -> value
// off the weights). Errors are worded for the file's reader; they name the Heads option as {Heads}.
func ResolveStack(st StackSpec, sec Section, block bool, heads int, shapes map[string]int) (*NeoXConfig, error) {
	c, known := BaseModel(st.Base)
	if !known {
		c = UnknownBase()
	}
	settings := st.Settings
	if block {
		var err error
		if settings, err = fillIn(settings, sec); err != nil {
			return nil, err
		}
	}
	for _, s := range settings {
		o := s.Origin
		if o.Kind == "" {
			o = sec.origin()
		}
		if err := c.Set(s.Key, s.Value, o); err != nil {
			return nil, fmt.Errorf("%s: %v", sec.Keys, err)
		}
	}
	if heads > 0 && heads != c.Heads {
		if c.Heads != 0 {
			return nil, fmt.Errorf("%s: %s; {Heads} %d disagrees (the official code builds %d heads from this config)",
				sec.Stack, c.Explain(KeyHeads), heads, c.Heads)
		}
		c.Heads, c.Origin[KeyHeads] = heads, GivenHeads
	}
	if c.Heads == 0 {
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
	return &c, nil
}

// FromShapesWithHeads is a stack read off the weights alone: everything but the head count, which
// heads gives.
func FromShapesWithHeads(shapes map[string]int, heads int) *NeoXConfig {
	n := UnknownBase()
	for k, v := range shapes {
		_ = n.Set(k, v, FromShapes)
	}
	n.Heads, n.Origin[KeyHeads] = heads, GivenHeads
	return &n
}

// TokenIDs are the special ids a vanilla config names.
type TokenIDs struct{ Pad, BOS, EOS int }

// BlockParts are the settings of a block model outside its two decoders, each with its origin.
type BlockParts struct {
	Embedder       EmbedderConfig
	EmbedderOrigin Origin
	EmbedderVocab  int // 0: unsaid; else must agree with the token decoder's vocabulary
	BlockLength    int
	LengthOrigin   Origin
	ExpansionRatio int
	RatioOrigin    Origin
	Decoding       Decoding
	DecodingOrigin Origin
}

// BlockConfig assembles a Block Transformer config from its two resolved decoders and the other
// settings, recording where every value came from in prov and in the config's Origins.
func BlockConfig(bdC, tdC *NeoXConfig, p BlockParts, prov Provenance) (*Config, error) {
	bd, err := bdC.Decoder()
	if err != nil {
		return nil, fmt.Errorf("block_decoder: %v", err)
	}
	tdd, err := tdC.Decoder()
	if err != nil {
		return nil, fmt.Errorf("token_decoder: %v", err)
	}
	if p.EmbedderVocab != 0 && p.EmbedderVocab != tdC.Vocab {
		return nil, fmt.Errorf("embedder vocab_size %d disagrees with the token decoder's %s", p.EmbedderVocab, tdC.Explain(KeyVocab))
	}
	emb := p.Embedder
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: Block, VocabSize: tdC.Vocab,
		BlockLength: p.BlockLength, Embedder: &emb, BlockDecoder: &bd,
		TokenDecoder: &TokenDecoderConfig{DecoderConfig: tdd, ExpansionRatio: p.ExpansionRatio, Decoding: p.Decoding}}
	origins := map[string]string{}
	for comp, c := range map[string]*NeoXConfig{BlockDecoder: bdC, TokenDecoder: tdC} {
		recordStack(comp, c, prov, origins)
	}
	prov[KeyVocab] = explain(tdC, KeyVocab)
	for _, v := range []struct {
		key, origin string // the Provenance key (what TensorSpec.Dims name), the Origins key
		val         any
		o           Origin
	}{{"block_length", "block_length", p.BlockLength, p.LengthOrigin},
		{"expansion_ratio", TokenDecoder + ".expansion_ratio", p.ExpansionRatio, p.RatioOrigin},
		{"decoding", TokenDecoder + ".decoding", p.Decoding, p.DecodingOrigin},
		{"embedder." + KeyHidden, "embedder.dim", emb.Dim, p.EmbedderOrigin}} {
		prov[v.key] = fmt.Sprintf("%s %v from %s", v.key, v.val, v.o.From)
		origins[v.origin] = string(v.o.Kind)
	}
	cfg.Origins = origins
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// VanillaConfig assembles a vanilla GPT-NeoX config from its resolved HF config.
func VanillaConfig(n *NeoXConfig, ids TokenIDs, prov Provenance) (*Config, error) {
	d, err := n.Decoder()
	if err != nil {
		return nil, err
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: Vanilla, VocabSize: n.Vocab,
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
func recordStack(comp string, c *NeoXConfig, prov Provenance, origins map[string]string) {
	for k := range c.Origin {
		prov[comp+"."+k] = comp + "." + explain(c, k)
	}
	for k, name := range originNames {
		origins[comp+"."+name] = string(c.Origin[k].Kind)
	}
	origins[comp+".head_dim"] = string(c.Origin[KeyHeads].Kind)
}

// explain is Explain, saying so when the official code takes the value from the same place (so a
// weight that disagrees with it was not made with this config).
func explain(c *NeoXConfig, key string) string {
	if c.Origin[key].official() {
		return c.Explain(key) + ", as the official code resolves this config"
	}
	return c.Explain(key)
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
