package arch

import (
	"fmt"
	"strings"
)

// Setting is one key a YAML config section sets, in the order written.
type Setting struct {
	Key   string
	Value any
}

// Section names where settings come from, for origins and messages: File is the file's base name,
// Stack the decoder ("block_decoder"), Keys the section that holds the settings
// ("block_decoder.config", or "model_config" in a vanilla YAML).
type Section struct{ File, Stack, Keys string }

// ResolveStack builds one decoder's HF config as the official code does: the config of the base
// model (model_name_or_path), then every setting on top of it, in order. heads > 0 gives the head
// count where the settings do not state it; shape keys a base outside the table leaves open are
// read from shapes (key -> value off the weights). Errors are worded for the file's reader; they
// name the Heads option as {Heads}.
func ResolveStack(base string, settings []Setting, sec Section, heads int, shapes map[string]int) (*NeoXConfig, error) {
	c, known := BaseModel(base)
	if !known {
		c = UnknownBase()
	}
	for _, s := range settings {
		if err := c.Set(s.Key, s.Value, sec.File); err != nil {
			return nil, fmt.Errorf("%s: %v", sec.Keys, err)
		}
	}
	if heads > 0 {
		if c.Origin[KeyHeads] == sec.File && c.Heads != heads {
			return nil, fmt.Errorf("%s states num_attention_heads %d; {Heads} %d disagrees", sec.Keys, c.Heads, heads)
		}
		c.Heads, c.Origin[KeyHeads] = heads, GivenHeads
	}
	if c.Heads == 0 {
		why := fmt.Sprintf("model_name_or_path %q is not a base model btconvert knows", base)
		if base == "" {
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

// FromShapes is the origin of values read off the tensor shapes.
const FromShapes = "tensor shapes"

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
type TokenIDs struct{ Pad, BOS int }

// BlockConfig assembles a Block Transformer config from its two resolved decoders and the
// embedder and expansion settings, recording where every value came from in prov. embVocab (0:
// unsaid) must agree with the token decoder's vocabulary.
func BlockConfig(bdC, tdC *NeoXConfig, emb EmbedderConfig, embVocab, blockLength int, td TokenDecoderConfig, prov Provenance) (*Config, error) {
	bd, err := bdC.Decoder()
	if err != nil {
		return nil, fmt.Errorf("block_decoder: %v", err)
	}
	tdd, err := tdC.Decoder()
	if err != nil {
		return nil, fmt.Errorf("token_decoder: %v", err)
	}
	td.DecoderConfig = tdd
	if embVocab != 0 && embVocab != tdC.Vocab {
		return nil, fmt.Errorf("embedder vocab_size %d disagrees with the token decoder's %s", embVocab, tdC.Explain(KeyVocab))
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: Block, VocabSize: tdC.Vocab,
		BlockLength: blockLength, Embedder: &emb, BlockDecoder: &bd, TokenDecoder: &td}
	if cfg.BlockLength == 0 && emb.Type == Concat && emb.Dim > 0 {
		cfg.BlockLength = bd.Hidden / emb.Dim
	}
	for comp, c := range map[string]*NeoXConfig{BlockDecoder: bdC, TokenDecoder: tdC} {
		for k := range c.Origin {
			prov[comp+"."+k] = c.Explain(k)
		}
	}
	prov[KeyVocab] = tdC.Explain(KeyVocab)
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
		PadTokenID: ids.Pad, BOSTokenID: ids.BOS, Decoder: &d}
	for k := range n.Origin {
		prov[Decoder+"."+k] = n.Explain(k)
	}
	prov[KeyVocab] = n.Explain(KeyVocab)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
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

// GivenHeads is the origin of a head count the caller gave (the CLI's --heads).
const GivenHeads = "the given head count"
