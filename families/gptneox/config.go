package gptneox

import (
	"cmp"
	"encoding/json"
	"path/filepath"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

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
	LayerNormEps          *float64 `json:"layer_norm_eps"`
	UseParallelResidual   *bool    `json:"use_parallel_residual"`
	HiddenAct             string   `json:"hidden_act"`
	MaxPositionEmbeddings *int     `json:"max_position_embeddings"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	// Inert keys whose value may still change the model: checked as a YAML's are (checkInert),
	// never dropped unread.
	RopeScaling   any   `json:"rope_scaling"`
	AttentionBias *bool `json:"attention_bias"`
	BOSTokenID    *int  `json:"bos_token_id"`
	EOSTokenID    *int  `json:"eos_token_id"`
	PadTokenID    *int  `json:"pad_token_id"`
}

// readHFConfig reads an HF config.json. A missing intermediate_size is read off the weights
// (shapes); heads, hidden size, layers and vocabulary must be there.
func readHFConfig(path string, shapes map[string]int) (*HF, arch.TokenIDs, error) {
	var ids arch.TokenIDs
	b, err := fsio.ReadFile(path, fsio.ConfigLimit)
	if err != nil {
		return nil, ids, err
	}
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, ids, errs.File(path, "not valid JSON: %v", err)
	}
	if h.ModelType != "" && h.ModelType != "gpt_neox" {
		return nil, ids, errs.File(path, "model_type %q is not gpt_neox", h.ModelType)
	}
	if h.HiddenSize <= 0 || h.NumAttentionHeads <= 0 || h.NumHiddenLayers <= 0 || h.VocabSize <= 0 {
		return nil, ids, errs.File(path, "needs hidden_size, num_attention_heads, num_hidden_layers and vocab_size")
	}
	if h.TieWordEmbeddings {
		return nil, ids, errs.File(path, "tie_word_embeddings true is not supported (GPT-NeoX heads are untied)")
	}
	var rp, rb []*float64
	if h.RopeParameters != nil {
		if h.RopeParameters.RopeType != "" && h.RopeParameters.RopeType != "default" {
			return nil, ids, errs.File(path, "rope_parameters.rope_type %q is not supported (only default)", h.RopeParameters.RopeType)
		}
		rp = append(rp, h.RopeParameters.PartialRotaryFactor)
		rb = append(rb, h.RopeParameters.RopeTheta)
	}
	file := filepath.Base(path)
	c := UnknownBase() // the GPTNeoXConfig defaults for anything config.json leaves out
	var settings []arch.Setting
	add := func(key string, v any, ok bool) {
		if ok {
			settings = append(settings, arch.Setting{Key: key, Value: v})
		}
	}
	add(arch.KeyHidden, h.HiddenSize, true)
	add(arch.KeyHeads, h.NumAttentionHeads, true)
	add(arch.KeyLayers, h.NumHiddenLayers, true)
	add(arch.KeyVocab, h.VocabSize, true)
	add(arch.KeyIntermediate, h.IntermediateSize, h.IntermediateSize != 0)
	pct, err := oneOf(path, arch.KeyRotaryPct, append(rp, h.PartialRotaryFactor, h.RotaryPct)...)
	if err != nil {
		return nil, ids, err
	}
	base, err := oneOf(path, arch.KeyRotaryBase, append(rb, h.RopeTheta, h.RotaryEmbBase)...)
	if err != nil {
		return nil, ids, err
	}
	if pct != nil {
		add(arch.KeyRotaryPct, *pct, true)
	}
	if base != nil {
		add(arch.KeyRotaryBase, *base, true)
	}
	add("rope_scaling", h.RopeScaling, h.RopeScaling != nil)
	if h.AttentionBias != nil {
		add("attention_bias", *h.AttentionBias, true)
	}
	if h.LayerNormEps != nil {
		add(arch.KeyLayerNormEps, *h.LayerNormEps, true)
	}
	if h.MaxPositionEmbeddings != nil { // a 0 is refused as the YAML's is, not taken for "unset"
		add(arch.KeyMaxPositions, *h.MaxPositionEmbeddings, true)
	}
	add(arch.KeyAct, h.HiddenAct, h.HiddenAct != "")
	if h.UseParallelResidual != nil {
		add(arch.KeyParallelResidual, *h.UseParallelResidual, true)
	}
	for _, s := range settings {
		if err := c.Set(s.Key, s.Value, arch.Origin{Kind: arch.OriginConfigJSON, From: file}); err != nil {
			return nil, ids, errs.File(path, "%v", err)
		}
	}
	if c.Intermediate == 0 && shapes[arch.KeyIntermediate] > 0 {
		_ = c.Set(arch.KeyIntermediate, shapes[arch.KeyIntermediate], arch.FromShapes)
	}
	for _, p := range []*int{h.PadTokenID, h.EOSTokenID} {
		if p != nil {
			ids.Pad = *p
			break
		}
	}
	ids.BOS, ids.EOS = ids.Pad, ids.Pad
	if h.EOSTokenID != nil {
		ids.EOS = *h.EOSTokenID
	}
	if h.BOSTokenID != nil {
		ids.BOS = *h.BOSTokenID
	}
	return &c, ids, nil
}

// oneOf is the value the spellings of one setting give (nil if none does); spellings that
// disagree are refused, naming the setting, rather than one silently winning.
func oneOf(path, key string, vs ...*float64) (*float64, error) {
	var got *float64
	for _, v := range vs {
		switch {
		case v == nil:
		case got == nil:
			got = v
		case *v != *got:
			return nil, errs.File(path, "%s is given twice, as %g and %g (rope_parameters, partial_rotary_factor / rotary_pct, rope_theta / rotary_emb_base): say it once", key, *got, *v)
		}
	}
	return got, nil
}

// configJSON writes our vanilla config as an HF GPT-NeoX config.json.
func configJSON(c *arch.Config, dtype safetensors.DType) ([]byte, error) {
	d := c.Decoder
	torchDType := formats.TorchDType(dtype)
	m := map[string]any{
		"architectures":           []string{"GPTNeoXForCausalLM"},
		"model_type":              "gpt_neox",
		"hidden_size":             d.Hidden,
		"num_attention_heads":     d.Heads,
		"num_hidden_layers":       d.Layers,
		"intermediate_size":       d.Intermediate,
		"vocab_size":              c.VocabSize,
		"rotary_pct":              official.RotaryPct(d),
		"rotary_emb_base":         d.RotaryBase,
		"layer_norm_eps":          d.LayerNormEps,
		"use_parallel_residual":   d.ParallelResidual,
		"hidden_act":              "gelu",
		"tie_word_embeddings":     false,
		"bos_token_id":            c.BOSTokenID,
		"eos_token_id":            c.EOSTokenID,
		"pad_token_id":            c.PadTokenID,
		"max_position_embeddings": cmp.Or(d.MaxPositions, 2048),
		"torch_dtype":             torchDType,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}
