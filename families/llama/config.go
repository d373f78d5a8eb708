package llama

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/btconvert/btconvert/arch"
)

// KeyKVHeads is the HF key of the key/value heads.
const KeyKVHeads = "num_key_value_heads"

// The architectures this family reads, by config.json's model_type.
var architectures = map[string]string{
	"llama":   "LlamaForCausalLM",
	"mistral": "MistralForCausalLM",
	"qwen2":   "Qwen2ForCausalLM",
}

// hfConfig is what we read of a Llama-family config.json. Pointers tell a key that is absent from
// one set to its zero value.
type hfConfig struct {
	Architectures     []string        `json:"architectures"`
	ModelType         string          `json:"model_type"`
	VocabSize         int             `json:"vocab_size"`
	HiddenSize        int             `json:"hidden_size"`
	IntermediateSize  int             `json:"intermediate_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	NumKeyValueHeads  *int            `json:"num_key_value_heads"`
	HeadDim           *int            `json:"head_dim"`
	HiddenAct         string          `json:"hidden_act"`
	MaxPositions      int             `json:"max_position_embeddings"`
	RMSNormEps        *float64        `json:"rms_norm_eps"`
	RopeTheta         *float64        `json:"rope_theta"`
	RopeScaling       json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings *bool           `json:"tie_word_embeddings"`
	AttentionBias     *bool           `json:"attention_bias"`
	MLPBias           *bool           `json:"mlp_bias"`
	SlidingWindow     *int            `json:"sliding_window"`
	UseSlidingWindow  *bool           `json:"use_sliding_window"`
	BOSTokenID        json.RawMessage `json:"bos_token_id"`
	EOSTokenID        json.RawMessage `json:"eos_token_id"`
	PadTokenID        json.RawMessage `json:"pad_token_id"`
	VisionConfig      json.RawMessage `json:"vision_config"`
	TextConfig        json.RawMessage `json:"text_config"`
}

// readConfig turns a config.json into our config. Every key that would change the computation
// and that this family does not run is refused by name; keys that do not (dropout, init range,
// dtype, cache use) are ignored.
func readConfig(b []byte, file string, prov arch.Provenance) (*arch.Config, []string, error) {
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if len(h.VisionConfig) > 0 || len(h.TextConfig) > 0 {
		return nil, nil, fmt.Errorf("vision_config / text_config: a multimodal model is not supported (btconvert reads Llama, Mistral and Qwen2 text models)")
	}
	want, ok := architectures[h.ModelType]
	if !ok {
		return nil, nil, fmt.Errorf("model_type %q is not a Llama-family model btconvert reads (%s)", h.ModelType, strings.Join(modelTypes(), ", "))
	}
	if len(h.Architectures) != 1 || h.Architectures[0] != want {
		return nil, nil, fmt.Errorf("architectures %v: want [%s] for model_type %s (other heads than the causal LM's are not supported)", h.Architectures, want, h.ModelType)
	}
	if h.HiddenSize <= 0 || h.NumAttentionHeads <= 0 || h.NumHiddenLayers <= 0 || h.VocabSize <= 0 || h.IntermediateSize <= 0 {
		return nil, nil, fmt.Errorf("needs positive hidden_size, intermediate_size, num_attention_heads, num_hidden_layers and vocab_size")
	}
	if h.HiddenSize%h.NumAttentionHeads != 0 {
		return nil, nil, fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", h.HiddenSize, h.NumAttentionHeads)
	}
	hd := h.HiddenSize / h.NumAttentionHeads
	if h.HeadDim != nil && *h.HeadDim != hd {
		return nil, nil, fmt.Errorf("head_dim %d other than hidden_size / num_attention_heads (%d) is not supported yet", *h.HeadDim, hd)
	}
	if h.HiddenAct != "silu" {
		return nil, nil, fmt.Errorf("hidden_act %q is not supported (a Llama-family MLP is SwiGLU: silu)", h.HiddenAct)
	}
	if h.MLPBias != nil && *h.MLPBias {
		return nil, nil, fmt.Errorf("mlp_bias true is not supported yet")
	}
	if h.MaxPositions <= 0 {
		return nil, nil, fmt.Errorf("max_position_embeddings must be positive")
	}
	if h.MaxPositions > arch.MaxPositions {
		return nil, nil, fmt.Errorf("max_position_embeddings %d is over what btconvert runs (%d)", h.MaxPositions, arch.MaxPositions)
	}
	o := Options{ModelType: h.ModelType}
	scale, err := ropeScaling(h.RopeScaling)
	if err != nil {
		return nil, nil, err
	}
	o.RopeScale = scale
	// A sliding window the context never reaches changes nothing (Mistral's 4096 under 4096
	// positions, Qwen2's when use_sliding_window is false).
	if h.SlidingWindow != nil {
		o.SlidingWindow = *h.SlidingWindow
		on := h.ModelType == "mistral" || (h.UseSlidingWindow != nil && *h.UseSlidingWindow)
		if on && *h.SlidingWindow < h.MaxPositions {
			return nil, nil, fmt.Errorf("sliding_window %d is under max_position_embeddings %d: sliding-window attention is not supported yet", *h.SlidingWindow, h.MaxPositions)
		}
	}
	if h.UseSlidingWindow != nil && *h.UseSlidingWindow && h.SlidingWindow == nil {
		return nil, nil, fmt.Errorf("use_sliding_window true without sliding_window")
	}
	switch {
	case h.ModelType == "qwen2":
		o.QKVBias = true // Qwen2's q, k and v Linears always have biases
		if h.AttentionBias != nil {
			return nil, nil, fmt.Errorf("attention_bias is not a Qwen2 key")
		}
	case h.AttentionBias != nil && *h.AttentionBias:
		if h.ModelType != "llama" {
			return nil, nil, fmt.Errorf("attention_bias true is not supported for %s", h.ModelType)
		}
		o.QKVBias, o.OutBias = true, true
	}
	// tie_word_embeddings defaults to false in the three classes' configs.
	o.TiedHead = h.TieWordEmbeddings != nil && *h.TieWordEmbeddings
	kvh := h.NumAttentionHeads
	if h.NumKeyValueHeads != nil {
		kvh = *h.NumKeyValueHeads
	}
	if kvh <= 0 || h.NumAttentionHeads%kvh != 0 {
		return nil, nil, fmt.Errorf("num_key_value_heads %d must divide num_attention_heads %d", kvh, h.NumAttentionHeads)
	}
	eps, theta := 1e-6, 10000.0 // LlamaConfig's defaults (Mistral and Qwen2 files state theirs)
	if h.RMSNormEps != nil {
		eps = *h.RMSNormEps
	}
	if h.RopeTheta != nil {
		theta = *h.RopeTheta
	}
	d := arch.DecoderConfig{Family: Family, Layers: h.NumHiddenLayers, Hidden: h.HiddenSize, Heads: h.NumAttentionHeads,
		HeadDim: hd, Intermediate: h.IntermediateSize, RotaryDims: hd, RotaryBase: theta, LayerNormEps: eps,
		Activation: "silu", MaxPositions: h.MaxPositions}
	if kvh != h.NumAttentionHeads {
		d.KVHeads = kvh
	}
	if err := d.SetOptions(o); err != nil {
		return nil, nil, err
	}
	var notes []string
	ids := map[string]int{}
	for _, t := range []struct {
		key string
		raw json.RawMessage
	}{{"bos_token_id", h.BOSTokenID}, {"eos_token_id", h.EOSTokenID}, {"pad_token_id", h.PadTokenID}} {
		id, note, err := tokenID(t.key, t.raw)
		if err != nil {
			return nil, nil, err
		}
		if id < 0 || id >= h.VocabSize {
			return nil, nil, fmt.Errorf("%s %d is not an id of the vocabulary (0 to %d)", t.key, id, h.VocabSize-1)
		}
		ids[t.key] = id
		if note != "" {
			notes = append(notes, note)
		}
	}
	pad := ids["pad_token_id"]
	if len(h.PadTokenID) == 0 || string(h.PadTokenID) == "null" {
		pad = ids["eos_token_id"] // prompts are padded on the left and masked: any id does; HF's generate takes the EOS
	}
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Vanilla,
		VocabSize: h.VocabSize, BOSTokenID: ids["bos_token_id"], EOSTokenID: ids["eos_token_id"], PadTokenID: pad,
		Decoder: &d}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	// What a tensor of the wrong shape is told: the keys that fix its dimensions.
	from := func(key string, v int) string { return fmt.Sprintf("%s %d from %s", key, v, file) }
	c := arch.Decoder + "."
	prov[arch.KeyVocab] = from("vocab_size", h.VocabSize)
	prov[c+arch.KeyHidden] = from("hidden_size", h.HiddenSize)
	prov[c+arch.KeyIntermediate] = from("intermediate_size", h.IntermediateSize)
	prov[c+arch.KeyHeads] = from("num_attention_heads", h.NumAttentionHeads)
	prov[c+KeyKVHeads] = from(KeyKVHeads, kvh)
	prov[c+"head_dim"] = fmt.Sprintf("head_dim %d (hidden_size / num_attention_heads)", hd)
	return cfg, notes, nil
}

// ropeScaling reads rope_scaling: none, or linear with its factor. Other kinds (dynamic, yarn,
// llama3, longrope) are refused by name.
func ropeScaling(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var r map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, fmt.Errorf("rope_scaling: not an object: %v", err)
	}
	kind, _ := r["type"].(string)
	if t, ok := r["rope_type"].(string); ok {
		kind = t
	}
	if kind != "linear" {
		return 0, fmt.Errorf("rope_scaling %s %q is not supported (only none or linear)", "type", kind)
	}
	f, ok := r["factor"].(float64)
	if !ok || f < 1 || f > 1024 {
		return 0, fmt.Errorf("rope_scaling.factor %v: want a number from 1 to 1024", r["factor"])
	}
	if f == 1 {
		return 0, nil
	}
	return f, nil
}

// tokenID reads a token id key: a number, null / absent (0), or a list (Llama 3's several EOS
// ids: the first ends a generation here, and the note says so).
func tokenID(key string, raw json.RawMessage) (int, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, "", nil
	}
	var id int
	if json.Unmarshal(raw, &id) == nil {
		return id, "", nil
	}
	var list []int
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return 0, "", fmt.Errorf("%s %s: want a token id or a list of them", key, raw)
	}
	return list[0], fmt.Sprintf("%s lists %d ids: %d ends a generation here", key, len(list), list[0]), nil
}

func modelTypes() []string {
	var out []string
	for k := range architectures {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// writeConfig is the config.json of a vanilla Llama-family model, in its own class's spelling.
func writeConfig(c *arch.Config, dtype string) ([]byte, error) {
	d := c.Decoder
	o := options(d)
	m := map[string]any{
		"architectures":           []string{architectures[o.ModelType]},
		"model_type":              o.ModelType,
		"vocab_size":              c.VocabSize,
		"hidden_size":             d.Hidden,
		"intermediate_size":       d.Intermediate,
		"num_hidden_layers":       d.Layers,
		"num_attention_heads":     d.Heads,
		KeyKVHeads:                d.KVHeadCount(),
		"hidden_act":              "silu",
		"max_position_embeddings": d.MaxPositions,
		"rms_norm_eps":            d.LayerNormEps,
		"rope_theta":              d.RotaryBase,
		"rope_scaling":            nil,
		"tie_word_embeddings":     o.TiedHead,
		"bos_token_id":            c.BOSTokenID,
		"eos_token_id":            c.EOSTokenID,
		"torch_dtype":             dtype,
	}
	if o.RopeScale > 0 {
		m["rope_scaling"] = map[string]any{"type": "linear", "factor": o.RopeScale}
	}
	var window any // null: none
	if o.SlidingWindow > 0 {
		window = o.SlidingWindow
	}
	switch o.ModelType {
	case "llama":
		m["attention_bias"] = o.OutBias
	case "mistral":
		m["sliding_window"] = window
	case "qwen2":
		m["use_sliding_window"] = false
		m["sliding_window"] = window
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}
