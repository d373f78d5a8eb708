package arch

import (
	"math"
	"strconv"
)

// The keys of a decoder stack's HF config (GPTNeoXConfig's spelling, which our tables and the
// official YAML use; families/gptneox resolves them) and the bounds of every config's sizes.

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
