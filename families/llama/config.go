package llama

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
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
	Architectures      []string        `json:"architectures"`
	ModelType          string          `json:"model_type"`
	VocabSize          int             `json:"vocab_size"`
	HiddenSize         int             `json:"hidden_size"`
	IntermediateSize   int             `json:"intermediate_size"`
	NumHiddenLayers    int             `json:"num_hidden_layers"`
	NumAttentionHeads  int             `json:"num_attention_heads"`
	NumKeyValueHeads   *int            `json:"num_key_value_heads"`
	HeadDim            *int            `json:"head_dim"`
	HiddenAct          *string         `json:"hidden_act"`
	MaxPositions       *int            `json:"max_position_embeddings"`
	RMSNormEps         *float64        `json:"rms_norm_eps"`
	RopeTheta          *float64        `json:"rope_theta"`
	RopeScaling        json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings  *bool           `json:"tie_word_embeddings"`
	AttentionBias      *bool           `json:"attention_bias"`
	MLPBias            *bool           `json:"mlp_bias"`
	SlidingWindow      json.RawMessage `json:"sliding_window"`
	UseSlidingWindow   *bool           `json:"use_sliding_window"`
	BOSTokenID         json.RawMessage `json:"bos_token_id"`
	EOSTokenID         json.RawMessage `json:"eos_token_id"`
	PadTokenID         json.RawMessage `json:"pad_token_id"`
	VisionConfig       json.RawMessage `json:"vision_config"`
	TextConfig         json.RawMessage `json:"text_config"`
	QuantizationConfig json.RawMessage `json:"quantization_config"`
}

// The defaults of the keys a config.json may leave out, per class (transformers' LlamaConfig,
// MistralConfig, Qwen2Config).
var defaults = map[string]struct {
	maxPositions, bos, eos int // bos, eos -1: none
	window                 int // the sliding window (Qwen2's applies with use_sliding_window only)
}{
	"llama":   {maxPositions: 2048, bos: 1, eos: 2},
	"mistral": {maxPositions: 4096 * 32, bos: 1, eos: 2, window: 4096},
	"qwen2":   {maxPositions: 32768, bos: -1, eos: -1, window: 4096},
}

// set reports whether a raw JSON value is present and not null.
func set(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// readConfig turns a config.json (and the generation_config.json beside it, when there is one:
// genCfg, nil otherwise) into our config. Every key that would change the computation and that
// this family does not run is refused by name; keys that do not (dropout, init range, dtype,
// cache use) are ignored.
func readConfig(b, genCfg []byte, file string, prov arch.Provenance) (*arch.Config, []string, error) {
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, nil, fmt.Errorf("%s: a JSON %s where a %s belongs", te.Field, te.Value, jsonKind(te.Type.String()))
		}
		return nil, nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if set(h.VisionConfig) || set(h.TextConfig) {
		return nil, nil, fmt.Errorf("vision_config / text_config: a multimodal model is not supported (btconvert reads Llama, Mistral and Qwen2 text models)")
	}
	if set(h.QuantizationConfig) {
		return nil, nil, fmt.Errorf("quantization_config: a checkpoint quantized by another tool is not read; import the float model (btconvert quantize writes its own types)")
	}
	want, ok := architectures[h.ModelType]
	if !ok {
		return nil, nil, fmt.Errorf("model_type %q is not a Llama-family model btconvert reads (%s)", h.ModelType, strings.Join(modelTypes(), ", "))
	}
	def := defaults[h.ModelType]
	if len(h.Architectures) != 1 || h.Architectures[0] != want {
		return nil, nil, fmt.Errorf("architectures %v: want [%s] for model_type %s (other heads than the causal LM's are not supported)", h.Architectures, want, h.ModelType)
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"vocab_size", h.VocabSize}, {"hidden_size", h.HiddenSize}, {"intermediate_size", h.IntermediateSize},
		{"num_hidden_layers", h.NumHiddenLayers}, {"num_attention_heads", h.NumAttentionHeads}} {
		if k.v <= 0 {
			return nil, nil, fmt.Errorf("%s %d: a positive size is needed (missing or 0?)", k.key, k.v)
		}
	}
	if h.HiddenSize%h.NumAttentionHeads != 0 {
		return nil, nil, fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", h.HiddenSize, h.NumAttentionHeads)
	}
	hd := h.HiddenSize / h.NumAttentionHeads
	if h.HeadDim != nil && *h.HeadDim != hd {
		return nil, nil, fmt.Errorf("head_dim %d other than hidden_size / num_attention_heads (%d) is not supported yet", *h.HeadDim, hd)
	}
	if h.HiddenAct != nil && *h.HiddenAct != "silu" && *h.HiddenAct != "swish" { // transformers' default: silu (swish is its other name)
		return nil, nil, fmt.Errorf("hidden_act %q is not supported (a Llama-family MLP is SwiGLU: silu)", *h.HiddenAct)
	}
	if h.MLPBias != nil && *h.MLPBias {
		return nil, nil, fmt.Errorf("mlp_bias true is not supported yet")
	}
	maxPos := def.maxPositions
	if h.MaxPositions != nil {
		maxPos = *h.MaxPositions
	}
	if maxPos <= 0 || maxPos > arch.MaxPositions {
		return nil, nil, fmt.Errorf("max_position_embeddings %d is out of range (1 to %d)", maxPos, arch.MaxPositions)
	}
	o := Options{ModelType: h.ModelType}
	var err error
	if o.RopeScale, o.RopeLlama3, err = ropeScaling(h.RopeScaling); err != nil {
		return nil, nil, err
	}
	// A sliding window the context never reaches changes nothing: Mistral's (4096 when the key is
	// absent) at or past max_position_embeddings, Qwen2's when use_sliding_window is false.
	window := def.window
	if set(h.SlidingWindow) {
		if err := json.Unmarshal(h.SlidingWindow, &window); err != nil || window <= 0 {
			return nil, nil, fmt.Errorf("sliding_window %s: want a positive number of positions or null", h.SlidingWindow)
		}
	} else if len(h.SlidingWindow) > 0 {
		window = 0 // null: none
	}
	o.SlidingWindow = window
	useWindow := h.ModelType == "mistral" || (h.UseSlidingWindow != nil && *h.UseSlidingWindow)
	switch {
	case h.UseSlidingWindow != nil && *h.UseSlidingWindow && window == 0:
		return nil, nil, fmt.Errorf("use_sliding_window true with sliding_window null")
	case useWindow && window > 0 && window < maxPos:
		return nil, nil, fmt.Errorf("sliding_window %d is under max_position_embeddings %d: sliding-window attention is not supported yet", window, maxPos)
	}
	switch {
	case h.ModelType == "qwen2":
		o.QKVBias = true // Qwen2's q, k and v Linears always have biases; its class reads no attention_bias
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
	switch {
	case !(eps > 0):
		return nil, nil, fmt.Errorf("rms_norm_eps %g must be positive", eps)
	case !(theta > 0) || math.IsInf(theta, 0):
		return nil, nil, fmt.Errorf("rope_theta %g must be a positive number", theta)
	}
	d := arch.DecoderConfig{Family: Family, Layers: h.NumHiddenLayers, Hidden: h.HiddenSize, Heads: h.NumAttentionHeads,
		HeadDim: hd, Intermediate: h.IntermediateSize, RotaryDims: hd, RotaryBase: theta, LayerNormEps: eps,
		Activation: "silu", MaxPositions: maxPos}
	if kvh != h.NumAttentionHeads {
		d.KVHeads = kvh
	}
	if err := d.SetOptions(o); err != nil {
		return nil, nil, err
	}
	ids, notes, err := tokenIDs(h, genCfg, def.bos, def.eos)
	if err != nil {
		return nil, nil, err
	}
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Vanilla,
		VocabSize: h.VocabSize, BOSTokenID: ids.bos, EOSTokenID: ids.eos[0], StopTokenIDs: ids.eos[1:], PadTokenID: ids.pad,
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

// jsonKind names a Go type of hfConfig in JSON's words.
func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"):
		return "whole number"
	case strings.Contains(goType, "float"):
		return "number"
	case strings.Contains(goType, "bool"):
		return "true or false"
	case strings.Contains(goType, "string"):
		return "string"
	}
	return goType
}

type ids struct {
	bos, pad int
	eos      []int // the first ends a generation as the EOS, the others too (StopTokenIDs)
}

// tokenIDs reads the special ids. The EOS ids are generation_config.json's when it states them
// (what HF's generate stops at: a Llama 3 Instruct model's end of turn is only there), else
// config.json's, else (the key absent) the class's default; a list keeps every id. Without a pad id, prompts are
// padded with the EOS (they are masked: any id does, and HF's generate takes the EOS too).
func tokenIDs(h hfConfig, genCfg []byte, defBOS, defEOS int) (ids, []string, error) {
	var out ids
	var notes []string
	// read is a key's ids: the class's default when the key is absent, none when it is null.
	read := func(key string, raw json.RawMessage, def int) ([]int, error) {
		switch {
		case len(raw) == 0 && def >= 0:
			return []int{def}, nil
		case !set(raw):
			return nil, nil
		}
		var one int
		if json.Unmarshal(raw, &one) == nil {
			return []int{one}, nil
		}
		var list []int
		if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
			return nil, fmt.Errorf("%s %s: want a token id or a list of them", key, raw)
		}
		return list, nil
	}
	check := func(key string, v []int) error {
		for _, id := range v {
			if id < 0 || id >= h.VocabSize {
				return fmt.Errorf("%s %d is not an id of the vocabulary (0 to %d)", key, id, h.VocabSize-1)
			}
		}
		return nil
	}
	bos, err := read("bos_token_id", h.BOSTokenID, defBOS)
	if err == nil {
		err = check("bos_token_id", bos)
	}
	if err != nil {
		return out, nil, err
	}
	if len(bos) > 0 {
		out.bos = bos[0]
	}
	eos, err := read("eos_token_id", h.EOSTokenID, defEOS)
	if err == nil {
		err = check("eos_token_id", eos)
	}
	if err != nil {
		return out, nil, err
	}
	if genCfg != nil {
		var g struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(genCfg, &g); err != nil {
			return out, nil, fmt.Errorf("generation_config.json: not valid JSON: %v", err)
		}
		if set(g.EOS) {
			v, err := read("generation_config.json eos_token_id", g.EOS, -1)
			if err == nil {
				err = check("generation_config.json eos_token_id", v)
			}
			if err != nil {
				return out, nil, err
			}
			if !slices.Equal(v, eos) {
				notes = append(notes, fmt.Sprintf("generation stops at %v (generation_config.json's eos_token_id)", v))
			}
			eos = v
		}
	}
	if len(eos) == 0 {
		return out, nil, fmt.Errorf("eos_token_id is absent or null: btconvert needs the id a generation ends at (state it in config.json; generate --ignore-eos then still runs to -n)")
	}
	out.eos = eos
	pad, err := read("pad_token_id", h.PadTokenID, -1)
	if err != nil {
		return out, nil, err
	}
	switch {
	case len(pad) == 0 || pad[0] < 0: // older conversions write -1 for none
		out.pad = eos[0]
	default:
		if err := check("pad_token_id", pad); err != nil {
			return out, nil, err
		}
		out.pad = pad[0]
	}
	if len(eos) > 1 {
		notes = append(notes, fmt.Sprintf("generation stops at any of %v", eos))
	}
	return out, notes, nil
}

// ropeScaling reads rope_scaling: none, linear with its factor, or Llama 3.1's llama3 (returned
// as the linear factor, 0 for none, or the llama3 settings). Other kinds (dynamic, yarn, longrope)
// are refused by name.
func ropeScaling(raw json.RawMessage) (float64, *Llama3Rope, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil, nil
	}
	var r map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, nil, fmt.Errorf("rope_scaling: not an object: %v", err)
	}
	kind, _ := r["type"].(string)
	if t, ok := r["rope_type"].(string); ok {
		kind = t
	}
	num := func(key string) (float64, error) {
		f, ok := r[key].(float64)
		if !ok {
			return 0, fmt.Errorf("rope_scaling.%s %v: want a number", key, jsonText(r[key]))
		}
		return f, nil
	}
	switch kind {
	case "default":
		return 0, nil, nil // what newer transformers write for none
	case "linear":
		f, ok := r["factor"].(float64)
		if !ok {
			return 0, nil, fmt.Errorf("rope_scaling.factor %v: want a number from 1 to 1024", jsonText(r["factor"]))
		}
		if f < 1 || f > 1024 {
			return 0, nil, fmt.Errorf("rope_scaling.factor %g is out of range (1 to 1024)", f)
		}
		if f == 1 {
			return 0, nil, nil
		}
		return f, nil, nil
	case "llama3":
		var l Llama3Rope
		var err error
		for _, k := range []struct {
			key string
			to  *float64
		}{{"factor", &l.Factor}, {"low_freq_factor", &l.LowFreq}, {"high_freq_factor", &l.HighFreq}} {
			if *k.to, err = num(k.key); err != nil {
				return 0, nil, err
			}
		}
		om, err := num("original_max_position_embeddings")
		if err != nil {
			return 0, nil, err
		}
		if om != math.Trunc(om) || om < 1 || om > arch.MaxPositions {
			return 0, nil, fmt.Errorf("rope_scaling.original_max_position_embeddings %g: want a whole number from 1 to %d", om, arch.MaxPositions)
		}
		l.OriginalMax = int(om)
		if err := l.check(); err != nil {
			return 0, nil, err
		}
		return 0, &l, nil
	}
	return 0, nil, fmt.Errorf("rope_scaling type %q is not supported (none, linear or llama3)", kind)
}

// jsonText is v as JSON wrote it ("2" for a string, 2 for a number).
func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
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
		"rope_theta":              floatJSON(d.RotaryBase),
		"rope_scaling":            nil,
		"tie_word_embeddings":     o.TiedHead,
		"bos_token_id":            c.BOSTokenID,
		"eos_token_id":            c.EOSTokenID,
		"pad_token_id":            c.PadTokenID,
		"torch_dtype":             dtype,
	}
	if len(c.StopTokenIDs) > 0 {
		m["eos_token_id"] = append([]int{c.EOSTokenID}, c.StopTokenIDs...)
	}
	switch r := o.RopeLlama3; {
	case o.RopeScale > 0:
		// transformers 4.x insists on a float factor: 2.0, not 2.
		m["rope_scaling"] = map[string]any{"type": "linear", "factor": floatJSON(o.RopeScale)}
	case r != nil:
		m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": floatJSON(r.Factor), "low_freq_factor": floatJSON(r.LowFreq),
			"high_freq_factor": floatJSON(r.HighFreq), "original_max_position_embeddings": r.OriginalMax}
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

// floatJSON is a float written with a decimal point (2.0), as Python writes a float: Python's json
// reads 2 as an int, which some of transformers' checks refuse where they want a float.
type floatJSON float64

// MarshalJSON implements json.Marshaler.
func (f floatJSON) MarshalJSON() ([]byte, error) {
	s := strconv.FormatFloat(float64(f), 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return []byte(s), nil
}
