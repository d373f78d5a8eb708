package gptneox

import (
	"fmt"
	"sort"
	"strings"

	"github.com/btconvert/btconvert/arch"
)

// How a GPT-NeoX stack's architecture is resolved, as the official code does it: the HF config of
// the base model a YAML names (model_name_or_path), then every key of the YAML's config section set
// on top of it, one by one. Nothing is derived from the hidden size.

// decoderClass is the official code's decoder class, resolved against the Pythia models.
var decoderClass = &arch.DecoderClass{
	Base:      func(name string) (arch.StackHF, bool) { c, ok := BaseModel(name); return &c, ok },
	Defaults:  func() arch.StackHF { c := UnknownBase(); return &c },
	BaseNames: BaseModelNames,
	DefaultKeys: []string{arch.KeyRotaryPct, arch.KeyRotaryBase, arch.KeyLayerNormEps, arch.KeyParallelResidual, arch.KeyAct,
		arch.KeyMaxPositions},
	ClassName: "GPTNeoXConfig",
}

var _ arch.StackHF = (*HF)(nil)

// inertKeys are GPTNeoXConfig keys that do not change inference (training, caching, token ids); a
// config section may set them. The value a few of them must have is checked.
var inertKeys = map[string]bool{
	"attention_dropout": true, "hidden_dropout": true, "classifier_dropout": true, "initializer_range": true,
	"use_cache": true, "bos_token_id": true, "eos_token_id": true, "pad_token_id": true, "torch_dtype": true,
	"dtype": true, "tie_word_embeddings": true, "attention_bias": true, "rope_scaling": true, "is_decoder": true,
	"use_flash_attn": true, "_attn_implementation": true,
}

// HF is the architecture part of an HF GPTNeoXConfig, with where each value came from.
type HF struct {
	Layers, Hidden, Heads, Intermediate, Vocab, MaxPositions int
	RotaryPct, RotaryBase, LayerNormEps                      float64
	ParallelResidual                                         bool
	Act                                                      string
	// Origin maps each key above to where its value came from.
	Origin map[string]arch.Origin
}

// pythia is one Pythia base model: the public config.json facts that differ between sizes.
type pythia struct {
	size                              string
	hidden, layers, heads, ffn, vocab int
}

// pythiaSizes are the EleutherAI Pythia models (each also as "-deduped", same shapes). Every one has
// rotary_pct 0.25, rotary_emb_base 10000, layer_norm_eps 1e-5, parallel residual, exact GELU and
// 2048 positions.
var pythiaSizes = []pythia{
	{"14m", 128, 6, 4, 512, 50304},
	{"31m", 256, 6, 8, 1024, 50304},
	{"70m", 512, 6, 8, 2048, 50304},
	{"160m", 768, 12, 12, 3072, 50304},
	{"410m", 1024, 24, 16, 4096, 50304},
	{"1b", 2048, 16, 8, 8192, 50304},
	{"1.4b", 2048, 24, 16, 8192, 50304},
	{"2.8b", 2560, 32, 32, 10240, 50304},
	{"6.9b", 4096, 32, 32, 16384, 50432},
	{"12b", 5120, 36, 40, 20480, 50688},
}

// BaseModelNames lists every model_name_or_path btconvert knows, sorted.
func BaseModelNames() []string {
	var out []string
	for _, p := range pythiaSizes {
		out = append(out, "EleutherAI/pythia-"+p.size, "EleutherAI/pythia-"+p.size+"-deduped")
	}
	sort.Strings(out)
	return out
}

// neoxDefaults are the GPTNeoXConfig settings every Pythia shares (and the class defaults).
func neoxDefaults(origin arch.Origin) HF {
	c := HF{MaxPositions: 2048, RotaryPct: 0.25, RotaryBase: 10000, LayerNormEps: 1e-5,
		ParallelResidual: true, Act: "gelu", Origin: map[string]arch.Origin{}}
	for _, k := range []string{arch.KeyMaxPositions, arch.KeyRotaryPct, arch.KeyRotaryBase, arch.KeyLayerNormEps, arch.KeyParallelResidual, arch.KeyAct} {
		c.Origin[k] = origin
	}
	return c
}

// BaseModel returns the HF config of a base model by its model_name_or_path.
func BaseModel(name string) (HF, bool) {
	size, ok := strings.CutPrefix(name, "EleutherAI/pythia-")
	if !ok {
		return HF{}, false
	}
	size = strings.TrimSuffix(size, "-deduped")
	for _, p := range pythiaSizes {
		if p.size == size {
			o := arch.Origin{Kind: arch.OriginBase, From: name}
			c := neoxDefaults(o)
			c.Hidden, c.Layers, c.Heads, c.Intermediate, c.Vocab = p.hidden, p.layers, p.heads, p.ffn, p.vocab
			for _, k := range []string{arch.KeyHidden, arch.KeyLayers, arch.KeyHeads, arch.KeyIntermediate, arch.KeyVocab} {
				c.Origin[k] = o
			}
			return c, true
		}
	}
	return HF{}, false
}

// UnknownBase is the starting point when model_name_or_path is not in the table (or absent): the
// GPTNeoXConfig defaults for the settings Pythia shares, and nothing for the shapes and heads.
func UnknownBase() HF {
	return neoxDefaults(arch.Origin{Kind: arch.OriginDefaults, From: "GPTNeoXConfig defaults"})
}

// fields are the config's keys by the type of their values.
func (c *HF) fields() arch.Fields {
	return arch.Fields{
		Ints: map[string]*int{arch.KeyLayers: &c.Layers, arch.KeyHidden: &c.Hidden, arch.KeyHeads: &c.Heads,
			arch.KeyIntermediate: &c.Intermediate, arch.KeyVocab: &c.Vocab, arch.KeyMaxPositions: &c.MaxPositions},
		Floats: map[string]*float64{arch.KeyRotaryPct: &c.RotaryPct, arch.KeyRotaryBase: &c.RotaryBase, arch.KeyLayerNormEps: &c.LayerNormEps},
		Strs:   map[string]*string{arch.KeyAct: &c.Act},
		Bools:  map[string]*bool{arch.KeyParallelResidual: &c.ParallelResidual},
	}
}

// Set overrides one key as a config section does, recording origin. Unknown keys and values of the
// wrong type are errors (their text names the key, not the file: the caller adds that).
func (c *HF) Set(key string, v any, origin arch.Origin) error {
	if c.Origin == nil {
		c.Origin = map[string]arch.Origin{}
	}
	return arch.SetKey(c.fields(), c.Origin, "GPTNeoXConfig", arch.CanonicalKey(key), v, origin, inertKeys, checkInert)
}

// checkInert refuses the values of inert keys that would change the model after all.
func checkInert(key string, v any) error {
	switch key {
	case "tie_word_embeddings":
		if b, _ := v.(bool); b {
			return fmt.Errorf("%s: true is not supported (GPT-NeoX heads are untied)", key)
		}
	case "attention_bias":
		if b, ok := v.(bool); ok && !b {
			return fmt.Errorf("%s: false is not supported (GPT-NeoX attention has biases)", key)
		}
	case "rope_scaling":
		if v != nil {
			return fmt.Errorf("%s: rotary scaling is not supported", key)
		}
	}
	return nil
}

// Explain says where a key's value came from, e.g. "num_attention_heads 16 from
// EleutherAI/pythia-410m-deduped".
func (c *HF) Explain(key string) string { return arch.ExplainKey(c.fields().Value, c.Origin, key) }

func (c *HF) VocabSize() int { return c.Vocab }

func (c *HF) OriginOf(key string) arch.Origin { return c.Origin[key] }

// neoxKeys are a GPTNeoXConfig's architecture keys, in the order notes list them.
var neoxKeys = []string{arch.KeyLayers, arch.KeyHidden, arch.KeyHeads, arch.KeyIntermediate, arch.KeyVocab, arch.KeyRotaryPct, arch.KeyRotaryBase,
	arch.KeyLayerNormEps, arch.KeyParallelResidual, arch.KeyAct, arch.KeyMaxPositions}

// Summary lists every architecture key with its value, grouped by origin (for the manifest's notes).
func (c *HF) Summary() string { return arch.Summarize(c.fields().Value, c.Origin, neoxKeys) }

// Missing names the keys without a value (a base that is not in the table leaves the shapes and
// the head count open).
func (c *HF) Missing() []string {
	var out []string
	for k, v := range map[string]int{arch.KeyLayers: c.Layers, arch.KeyHidden: c.Hidden, arch.KeyHeads: c.Heads, arch.KeyIntermediate: c.Intermediate, arch.KeyVocab: c.Vocab} {
		if v == 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Decoder turns the resolved HF config into our explicit decoder config.
func (c *HF) Decoder() (arch.DecoderConfig, error) {
	d := arch.DecoderConfig{Layers: c.Layers, Hidden: c.Hidden, Heads: c.Heads, Intermediate: c.Intermediate,
		RotaryBase: c.RotaryBase, LayerNormEps: c.LayerNormEps, ParallelResidual: c.ParallelResidual,
		Activation: c.Act, MaxPositions: c.MaxPositions}
	if c.Heads < 1 || c.Hidden < 1 {
		return d, fmt.Errorf("%s and %s must be positive", arch.KeyHidden, arch.KeyHeads)
	}
	if c.Hidden%c.Heads != 0 {
		return d, fmt.Errorf("%s is not a multiple of %s", c.Explain(arch.KeyHidden), c.Explain(arch.KeyHeads))
	}
	d.HeadDim = c.Hidden / c.Heads
	// As HF GPT-NeoX: the rotated dims are int(head_dim * rotary_pct).
	d.RotaryDims = int(float64(d.HeadDim) * c.RotaryPct)
	if d.RotaryDims%2 != 0 || d.RotaryDims > d.HeadDim || d.RotaryDims < 0 {
		return d, fmt.Errorf("%s gives %d rotary dims of a head of %d (%s): they must be even, not negative and at most the head size",
			c.Explain(arch.KeyRotaryPct), d.RotaryDims, d.HeadDim, c.Explain(arch.KeyHeads))
	}
	if d.RotaryDims > 0 && c.RotaryBase == 0 {
		return d, fmt.Errorf("%s: rotary embeddings need a positive base", c.Explain(arch.KeyRotaryBase))
	}
	return d, nil
}

// Keys are the keys with a value's origin.
func (c *HF) Keys() []string {
	out := make([]string, 0, len(c.Origin))
	for k := range c.Origin {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Int is an integer key's value (0: none).
func (c *HF) Int(key string) int {
	if p := c.fields().Ints[key]; p != nil {
		return *p
	}
	return 0
}
