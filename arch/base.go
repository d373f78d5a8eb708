package arch

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// How a GPT-NeoX stack's architecture is resolved, as the official code does it: the HF config of
// the base model a YAML names (model_name_or_path), then every key of the YAML's config section set
// on top of it, one by one. Nothing is derived from the hidden size.

// The HF GPTNeoXConfig keys a config section may set that change the architecture.
const (
	KeyLayers           = "num_hidden_layers"
	KeyHidden           = "hidden_size"
	KeyHeads            = "num_attention_heads"
	KeyIntermediate     = "intermediate_size"
	KeyVocab            = "vocab_size"
	KeyMaxPositions     = "max_position_embeddings"
	KeyRotaryPct        = "rotary_pct"
	KeyRotaryBase       = "rotary_emb_base"
	KeyLayerNormEps     = "layer_norm_eps"
	KeyParallelResidual = "use_parallel_residual"
	KeyAct              = "hidden_act"
)

// keyAliases are the transformers 5.x spellings of the same settings.
var keyAliases = map[string]string{"partial_rotary_factor": KeyRotaryPct, "rope_theta": KeyRotaryBase}

// inertKeys are GPTNeoXConfig keys that do not change inference (training, caching, token ids); a
// config section may set them. The value a few of them must have is checked.
var inertKeys = map[string]bool{
	"attention_dropout": true, "hidden_dropout": true, "classifier_dropout": true, "initializer_range": true,
	"use_cache": true, "bos_token_id": true, "eos_token_id": true, "pad_token_id": true, "torch_dtype": true,
	"dtype": true, "tie_word_embeddings": true, "attention_bias": true, "rope_scaling": true, "is_decoder": true,
	"use_flash_attn": true, "_attn_implementation": true,
}

// keyLimit bounds each size a config may give: past them no model fits any machine, and a size
// read from a file is bounded before anything is allocated for it (and products of sizes cannot
// overflow).
var keyLimit = map[string]int{KeyLayers: MaxLayers, KeyHidden: MaxHidden, KeyHeads: MaxHeads, KeyIntermediate: MaxFFN,
	KeyVocab: MaxVocab, KeyMaxPositions: MaxPositions, KeyTypeVocab: MaxVocab,
	KeyT5Layers: MaxLayers, KeyDecoderLayers: MaxLayers, KeyDModel: MaxHidden, KeyDKV: MaxHidden, KeyDFF: MaxFFN, KeyT5Heads: MaxHeads,
	KeyBuckets: MaxHidden, KeyMaxDistance: MaxPositions}

// The bounds of a config's sizes.
const (
	MaxLayers      = 1024
	MaxHidden      = 1 << 16
	MaxHeads       = 1 << 12
	MaxFFN         = 1 << 18
	MaxVocab       = 1 << 22
	MaxPositions   = 1 << 22
	MaxBlockLength = 1024
	MaxRatio       = 1024
)

// NeoXConfig is the architecture part of an HF GPTNeoXConfig, with where each value came from.
type NeoXConfig struct {
	Layers, Hidden, Heads, Intermediate, Vocab, MaxPositions int
	RotaryPct, RotaryBase, LayerNormEps                      float64
	ParallelResidual                                         bool
	Act                                                      string
	// Origin maps each key above to where its value came from.
	Origin map[string]Origin
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
func neoxDefaults(origin Origin) NeoXConfig {
	c := NeoXConfig{MaxPositions: 2048, RotaryPct: 0.25, RotaryBase: 10000, LayerNormEps: 1e-5,
		ParallelResidual: true, Act: "gelu", Origin: map[string]Origin{}}
	for _, k := range []string{KeyMaxPositions, KeyRotaryPct, KeyRotaryBase, KeyLayerNormEps, KeyParallelResidual, KeyAct} {
		c.Origin[k] = origin
	}
	return c
}

// BaseModel returns the HF config of a base model by its model_name_or_path.
func BaseModel(name string) (NeoXConfig, bool) {
	size, ok := strings.CutPrefix(name, "EleutherAI/pythia-")
	if !ok {
		return NeoXConfig{}, false
	}
	size = strings.TrimSuffix(size, "-deduped")
	for _, p := range pythiaSizes {
		if p.size == size {
			o := Origin{OriginBase, name}
			c := neoxDefaults(o)
			c.Hidden, c.Layers, c.Heads, c.Intermediate, c.Vocab = p.hidden, p.layers, p.heads, p.ffn, p.vocab
			for _, k := range []string{KeyHidden, KeyLayers, KeyHeads, KeyIntermediate, KeyVocab} {
				c.Origin[k] = o
			}
			return c, true
		}
	}
	return NeoXConfig{}, false
}

// UnknownBase is the starting point when model_name_or_path is not in the table (or absent): the
// GPTNeoXConfig defaults for the settings Pythia shares, and nothing for the shapes and heads.
func UnknownBase() NeoXConfig { return neoxDefaults(Origin{OriginDefaults, "GPTNeoXConfig defaults"}) }

// fields are the config's keys by the type of their values.
func (c *NeoXConfig) fields() Fields {
	return Fields{
		Ints: map[string]*int{KeyLayers: &c.Layers, KeyHidden: &c.Hidden, KeyHeads: &c.Heads,
			KeyIntermediate: &c.Intermediate, KeyVocab: &c.Vocab, KeyMaxPositions: &c.MaxPositions},
		Floats: map[string]*float64{KeyRotaryPct: &c.RotaryPct, KeyRotaryBase: &c.RotaryBase, KeyLayerNormEps: &c.LayerNormEps},
		Strs:   map[string]*string{KeyAct: &c.Act},
		Bools:  map[string]*bool{KeyParallelResidual: &c.ParallelResidual},
	}
}

// Set overrides one key as a config section does, recording origin. Unknown keys and values of the
// wrong type are errors (their text names the key, not the file: the caller adds that).
func (c *NeoXConfig) Set(key string, v any, origin Origin) error {
	if a, ok := keyAliases[key]; ok {
		key = a
	}
	ok, err := c.fields().Set(key, v)
	switch {
	case err != nil:
		return err
	case !ok && inertKeys[key]:
		return checkInert(key, v)
	case !ok:
		return fmt.Errorf("unknown key %q (not a GPTNeoXConfig setting)", key)
	}
	if c.Origin == nil {
		c.Origin = map[string]Origin{}
	}
	c.Origin[key] = origin
	return nil
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

func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), x == int64(int(x))
	case uint64:
		return int(x), x <= math.MaxInt32
	case float64:
		return int(x), x == math.Trunc(x) && math.Abs(x) <= math.MaxInt32
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case string: // YAML 1.1 readers (PyYAML) take 1e-05 without a dot for a string
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// Explain says where a key's value came from, e.g. "num_attention_heads 16 from
// EleutherAI/pythia-410m-deduped".
func (c *NeoXConfig) Explain(key string) string { return ExplainKey(c.fields().Value, c.Origin, key) }

func (c *NeoXConfig) VocabSize() int { return c.Vocab }

func (c *NeoXConfig) OriginOf(key string) Origin { return c.Origin[key] }

// neoxKeys are a GPTNeoXConfig's architecture keys, in the order notes list them.
var neoxKeys = []string{KeyLayers, KeyHidden, KeyHeads, KeyIntermediate, KeyVocab, KeyRotaryPct, KeyRotaryBase,
	KeyLayerNormEps, KeyParallelResidual, KeyAct, KeyMaxPositions}

// Summary lists every architecture key with its value, grouped by origin (for the manifest's notes).
func (c *NeoXConfig) Summary() string { return Summarize(c.fields().Value, c.Origin, neoxKeys) }

// Missing names the keys without a value (a base that is not in the table leaves the shapes and
// the head count open).
func (c *NeoXConfig) Missing() []string {
	var out []string
	for k, v := range map[string]int{KeyLayers: c.Layers, KeyHidden: c.Hidden, KeyHeads: c.Heads, KeyIntermediate: c.Intermediate, KeyVocab: c.Vocab} {
		if v == 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Decoder turns the resolved HF config into our explicit decoder config.
func (c *NeoXConfig) Decoder() (DecoderConfig, error) {
	d := DecoderConfig{Layers: c.Layers, Hidden: c.Hidden, Heads: c.Heads, Intermediate: c.Intermediate,
		RotaryBase: c.RotaryBase, LayerNormEps: c.LayerNormEps, ParallelResidual: c.ParallelResidual,
		Activation: c.Act, MaxPositions: c.MaxPositions}
	if c.Heads < 1 || c.Hidden < 1 {
		return d, fmt.Errorf("%s and %s must be positive", KeyHidden, KeyHeads)
	}
	if c.Hidden%c.Heads != 0 {
		return d, fmt.Errorf("%s is not a multiple of %s", c.Explain(KeyHidden), c.Explain(KeyHeads))
	}
	d.HeadDim = c.Hidden / c.Heads
	// As HF GPT-NeoX: the rotated dims are int(head_dim * rotary_pct).
	d.RotaryDims = int(float64(d.HeadDim) * c.RotaryPct)
	if d.RotaryDims%2 != 0 || d.RotaryDims > d.HeadDim || d.RotaryDims < 0 {
		return d, fmt.Errorf("%s gives %d rotary dims of a head of %d (%s): they must be even, not negative and at most the head size",
			c.Explain(KeyRotaryPct), d.RotaryDims, d.HeadDim, c.Explain(KeyHeads))
	}
	if d.RotaryDims > 0 && c.RotaryBase == 0 {
		return d, fmt.Errorf("%s: rotary embeddings need a positive base", c.Explain(KeyRotaryBase))
	}
	return d, nil
}

// RotaryPct is the rotary_pct that gives back d's rotary dims through HF's int(head_dim * pct).
func RotaryPct(d *DecoderConfig) float64 {
	pct := float64(d.RotaryDims) / float64(d.HeadDim)
	if int(float64(d.HeadDim)*pct) != d.RotaryDims { // rounding: aim at the middle of the interval
		pct = (float64(d.RotaryDims) + 0.5) / float64(d.HeadDim)
	}
	return pct
}
