package formats

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// FormatNeoX is an HF transformers GPT-NeoX / Pythia folder.
const FormatNeoX = "hf-gpt-neox"

// hfConfig is the part of an HF GPT-NeoX config.json we read; both the transformers 4.x and 5.x
// spellings of the rotary settings are accepted.
type hfConfig struct {
	ModelType           string   `json:"model_type"`
	HiddenSize          int      `json:"hidden_size"`
	NumAttentionHeads   int      `json:"num_attention_heads"`
	NumHiddenLayers     int      `json:"num_hidden_layers"`
	IntermediateSize    int      `json:"intermediate_size"`
	VocabSize           int      `json:"vocab_size"`
	RotaryPct           *float64 `json:"rotary_pct"`
	PartialRotaryFactor *float64 `json:"partial_rotary_factor"`
	RotaryEmbBase       *float64 `json:"rotary_emb_base"`
	RopeTheta           *float64 `json:"rope_theta"`
	RopeParameters      *struct {
		PartialRotaryFactor *float64 `json:"partial_rotary_factor"`
		RopeTheta           *float64 `json:"rope_theta"`
		RopeType            string   `json:"rope_type"`
	} `json:"rope_parameters"`
	LayerNormEps        *float64 `json:"layer_norm_eps"`
	UseParallelResidual *bool    `json:"use_parallel_residual"`
	HiddenAct           string   `json:"hidden_act"`
	TieWordEmbeddings   bool     `json:"tie_word_embeddings"`
	BOSTokenID          *int     `json:"bos_token_id"`
	EOSTokenID          *int     `json:"eos_token_id"`
	PadTokenID          *int     `json:"pad_token_id"`
}

func firstOf(def float64, vs ...*float64) float64 {
	for _, v := range vs {
		if v != nil {
			return *v
		}
	}
	return def
}

func readHFConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badFile(path, "cannot read: %v", unwrapPathErr(err))
	}
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, badFile(path, "not valid JSON: %v", err)
	}
	if h.ModelType != "" && h.ModelType != "gpt_neox" {
		return nil, badFile(path, "model_type %q is not gpt_neox", h.ModelType)
	}
	if h.HiddenSize <= 0 || h.NumAttentionHeads <= 0 || h.NumHiddenLayers <= 0 || h.VocabSize <= 0 {
		return nil, badFile(path, "needs hidden_size, num_attention_heads, num_hidden_layers and vocab_size")
	}
	if h.HiddenSize%h.NumAttentionHeads != 0 {
		return nil, badFile(path, "hidden_size %d is not a multiple of num_attention_heads %d", h.HiddenSize, h.NumAttentionHeads)
	}
	var rp, rb []*float64
	if h.RopeParameters != nil {
		if h.RopeParameters.RopeType != "" && h.RopeParameters.RopeType != "default" {
			return nil, badFile(path, "rope_parameters.rope_type %q is not supported (only default)", h.RopeParameters.RopeType)
		}
		rp = append(rp, h.RopeParameters.PartialRotaryFactor)
		rb = append(rb, h.RopeParameters.RopeTheta)
	}
	pct := firstOf(0.25, append(rp, h.PartialRotaryFactor, h.RotaryPct)...)
	base := firstOf(10000, append(rb, h.RopeTheta, h.RotaryEmbBase)...)
	act := h.HiddenAct
	if act == "" {
		act = "gelu"
	}
	if act != "gelu" {
		return nil, badFile(path, "hidden_act %q is not supported (only exact gelu)", act)
	}
	hd := h.HiddenSize / h.NumAttentionHeads
	d := DecoderConfig{
		Layers: h.NumHiddenLayers, Hidden: h.HiddenSize, Heads: h.NumAttentionHeads, HeadDim: hd,
		Intermediate: h.IntermediateSize, RotaryDims: int(float64(hd) * pct), RotaryBase: base,
		LayerNormEps: firstOf(1e-5, h.LayerNormEps), ParallelResidual: h.UseParallelResidual == nil || *h.UseParallelResidual,
		Activation: act,
	}
	if d.Intermediate == 0 {
		d.Intermediate = 4 * d.Hidden
	}
	pad := 0
	for _, p := range []*int{h.PadTokenID, h.EOSTokenID} {
		if p != nil {
			pad = *p
			break
		}
	}
	bos := pad
	if h.BOSTokenID != nil {
		bos = *h.BOSTokenID
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: "vanilla", VocabSize: h.VocabSize,
		PadTokenID: pad, BOSTokenID: bos, Decoder: &d}
	if err := cfg.Validate(); err != nil {
		return nil, badFile(path, "%v", err)
	}
	return cfg, nil
}

func isNeoX(c *Checkpoint) bool { return c.Has("gpt_neox.embed_in.weight") }

// neoxName maps our vanilla key to the HF name (output head as given).
func neoxName(head string) func(component, name string) string {
	return func(_, name string) string {
		if name == "embed_out.weight" {
			return head
		}
		return "gpt_neox." + name
	}
}

func openNeoX(c *Checkpoint, configPath string) (*Model, error) {
	if configPath == "" {
		configPath = filepath.Join(c.Dir, "config.json")
		if !fileExists(configPath) {
			return nil, badFile(c.Dir, "GPT-NeoX weights but no config.json beside them (give --config)")
		}
	}
	cfg, err := readHFConfig(configPath)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatNeoX, Path: c.Dir, Config: cfg}
	head := "embed_out.weight"
	switch {
	case c.Has("embed_out.weight"):
	case c.Has("lm_head.weight"):
		head = "lm_head.weight"
	default:
		head = "gpt_neox.embed_in.weight"
		m.Notes = append(m.Notes, "no embed_out.weight / lm_head.weight: output head tied to gpt_neox.embed_in.weight")
	}
	name := neoxName(head)
	used := map[string]bool{}
	var tensors []*Tensor
	for _, s := range ExpectedTensors(cfg) {
		src := name(s.Component, s.Name)
		if !c.Has(src) {
			return nil, badTensor(c.Dir, src, "missing from the checkpoint (config.json asks for it)")
		}
		used[src] = true
		tensors = append(tensors, c.tensor(src, s.Component, s.Name))
	}
	for _, n := range c.Names {
		switch {
		case used[n]:
		case neoxBuffer.MatchString(n):
			m.Notes = append(m.Notes, "ignored buffer "+n)
		case n == "lm_head.weight" || n == "embed_out.weight":
			return nil, badTensor(c.FileOf(n), n, "second output head (both embed_out.weight and lm_head.weight present)")
		default:
			return nil, badTensor(c.FileOf(n), n, "not part of a GPT-NeoX model with this config.json")
		}
	}
	if m.Tensors, err = checkAgainstSpecs(c.Dir, cfg, tensors, name); err != nil {
		return nil, err
	}
	m.closers = append(m.closers, c)
	return m, nil
}

// HFConfigJSON writes our vanilla config as an HF GPT-NeoX config.json (for export).
func HFConfigJSON(c *Config, dtype DType) ([]byte, error) {
	d := c.Decoder
	torchDType := map[DType]string{F32: "float32", BF16: "bfloat16", F16: "float16"}[dtype]
	m := map[string]any{
		"architectures":           []string{"GPTNeoXForCausalLM"},
		"model_type":              "gpt_neox",
		"hidden_size":             d.Hidden,
		"num_attention_heads":     d.Heads,
		"num_hidden_layers":       d.Layers,
		"intermediate_size":       d.Intermediate,
		"vocab_size":              c.VocabSize,
		"rotary_pct":              float64(d.RotaryDims) / float64(d.HeadDim),
		"rotary_emb_base":         d.RotaryBase,
		"layer_norm_eps":          d.LayerNormEps,
		"use_parallel_residual":   d.ParallelResidual,
		"hidden_act":              "gelu",
		"tie_word_embeddings":     false,
		"bos_token_id":            c.BOSTokenID,
		"eos_token_id":            c.PadTokenID,
		"max_position_embeddings": 2048,
		"torch_dtype":             torchDType,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}
