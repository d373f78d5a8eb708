package formats

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
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
	LayerNormEps          *float64 `json:"layer_norm_eps"`
	UseParallelResidual   *bool    `json:"use_parallel_residual"`
	HiddenAct             string   `json:"hidden_act"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	BOSTokenID            *int     `json:"bos_token_id"`
	EOSTokenID            *int     `json:"eos_token_id"`
	PadTokenID            *int     `json:"pad_token_id"`
}

// readHFConfig reads an HF config.json. A missing intermediate_size is read off the weights
// (shapes); heads, hidden size, layers and vocabulary must be there.
func readHFConfig(path string, shapes map[string]int) (*NeoXConfig, *TokenIDs, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, badFile(path, "cannot read: %v", unwrapPathErr(err))
	}
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, nil, badFile(path, "not valid JSON: %v", err)
	}
	if h.ModelType != "" && h.ModelType != "gpt_neox" {
		return nil, nil, badFile(path, "model_type %q is not gpt_neox", h.ModelType)
	}
	if h.HiddenSize <= 0 || h.NumAttentionHeads <= 0 || h.NumHiddenLayers <= 0 || h.VocabSize <= 0 {
		return nil, nil, badFile(path, "needs hidden_size, num_attention_heads, num_hidden_layers and vocab_size")
	}
	if h.TieWordEmbeddings {
		return nil, nil, badFile(path, "tie_word_embeddings true is not supported (GPT-NeoX heads are untied)")
	}
	var rp, rb []*float64
	if h.RopeParameters != nil {
		if h.RopeParameters.RopeType != "" && h.RopeParameters.RopeType != "default" {
			return nil, nil, badFile(path, "rope_parameters.rope_type %q is not supported (only default)", h.RopeParameters.RopeType)
		}
		rp = append(rp, h.RopeParameters.PartialRotaryFactor)
		rb = append(rb, h.RopeParameters.RopeTheta)
	}
	file := filepath.Base(path)
	c := UnknownBase() // the GPTNeoXConfig defaults for anything config.json leaves out
	set := func(key string, v any) error {
		if err := c.Set(key, v, file); err != nil {
			return badFile(path, "%v", err)
		}
		return nil
	}
	for _, kv := range []struct {
		key string
		v   any
		ok  bool
	}{
		{KeyHidden, h.HiddenSize, true}, {KeyHeads, h.NumAttentionHeads, true}, {KeyLayers, h.NumHiddenLayers, true},
		{KeyVocab, h.VocabSize, true}, {KeyIntermediate, h.IntermediateSize, h.IntermediateSize != 0},
		{KeyRotaryPct, deref(firstOf(append(rp, h.PartialRotaryFactor, h.RotaryPct)...)), firstOf(append(rp, h.PartialRotaryFactor, h.RotaryPct)...) != nil},
		{KeyRotaryBase, deref(firstOf(append(rb, h.RopeTheta, h.RotaryEmbBase)...)), firstOf(append(rb, h.RopeTheta, h.RotaryEmbBase)...) != nil},
		{KeyLayerNormEps, deref(h.LayerNormEps), h.LayerNormEps != nil},
		{KeyMaxPositions, h.MaxPositionEmbeddings, h.MaxPositionEmbeddings != 0},
		{KeyAct, h.HiddenAct, h.HiddenAct != ""},
	} {
		if kv.ok {
			if err := set(kv.key, kv.v); err != nil {
				return nil, nil, err
			}
		}
	}
	if h.UseParallelResidual != nil {
		if err := set(KeyParallelResidual, *h.UseParallelResidual); err != nil {
			return nil, nil, err
		}
	}
	if c.Intermediate == 0 && shapes[KeyIntermediate] > 0 {
		_ = c.Set(KeyIntermediate, shapes[KeyIntermediate], "tensor shapes")
	}
	ids := &TokenIDs{}
	for _, p := range []*int{h.PadTokenID, h.EOSTokenID} {
		if p != nil {
			ids.Pad = *p
			break
		}
	}
	ids.BOS = ids.Pad
	if h.BOSTokenID != nil {
		ids.BOS = *h.BOSTokenID
	}
	return &c, ids, nil
}

// TokenIDs are the special ids a vanilla config names.
type TokenIDs struct{ Pad, BOS int }

func firstOf(vs ...*float64) *float64 {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func deref(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

// VanillaYAML is the official code's config of a vanilla model: a base model and the keys of its HF
// config set on top (model_config).
type VanillaYAML struct {
	Name            string        `yaml:"name,omitempty"`
	Model           string        `yaml:"model,omitempty"`
	ModelNameOrPath string        `yaml:"model_name_or_path,omitempty"`
	ModelConfig     yaml.MapSlice `yaml:"model_config"`
	MaxLength       int           `yaml:"max_length,omitempty"`
	Precision       string        `yaml:"precision,omitempty"`
}

// vanillaConfig assembles a vanilla config from the resolved HF config.
func vanillaConfig(where string, n *NeoXConfig, ids *TokenIDs, prov Provenance) (*Config, error) {
	d, err := n.Decoder()
	if err != nil {
		return nil, badFile(where, "%v", err)
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: "vanilla", VocabSize: n.Vocab,
		PadTokenID: ids.Pad, BOSTokenID: ids.BOS, Decoder: &d}
	for k := range n.Origin {
		prov[Decoder+"."+k] = n.Explain(k)
	}
	prov[KeyVocab] = n.Explain(KeyVocab)
	if err := cfg.Validate(); err != nil {
		return nil, badFile(where, "%v", err)
	}
	return cfg, nil
}

// neoxShapes reads the shape keys of a GPT-NeoX checkpoint.
func neoxShapes(c *Checkpoint) map[string]int {
	return stackShapes(c, "gpt_neox.", "gpt_neox.embed_in.weight")
}

// neoxArchitecture resolves a GPT-NeoX checkpoint's config: config.json, or the official vanilla
// YAML (config.yaml or any .yaml given), or, with only the weights, their shapes plus heads.
func neoxArchitecture(c *Checkpoint, o OpenOptions, prov Provenance) (*Config, []string, error) {
	path := o.Config
	if path == "" {
		for _, name := range []string{"config.json", "config.yaml"} {
			if p := filepath.Join(c.Dir, name); fileExists(p) {
				path = p
				break
			}
		}
	}
	file := filepath.Base(path)
	switch {
	case path == "":
		if o.Heads < 1 {
			return nil, nil, badFile(c.Dir, "GPT-NeoX weights but no config.json beside them (give --config); or pass --heads N to read the rest off the weights")
		}
		n := UnknownBase()
		for k, v := range neoxShapes(c) {
			_ = n.Set(k, v, "tensor shapes")
		}
		n.Heads, n.Origin[KeyHeads] = o.Heads, "--heads"
		cfg, err := vanillaConfig(c.Dir, &n, &TokenIDs{}, prov)
		if err != nil {
			return nil, nil, err
		}
		return cfg, []string{"no config.json: architecture read off the tensor shapes, heads from --heads", "decoder: " + n.Summary()}, nil
	case strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml"):
		var y VanillaYAML
		if err := readYAML(path, &y); err != nil {
			return nil, nil, err
		}
		n, err := resolveStack(path, "model_config", StackYAML{y.ModelNameOrPath, y.ModelConfig}, o.Heads, neoxShapes(c))
		if err != nil {
			return nil, nil, err
		}
		cfg, err := vanillaConfig(path, n, &TokenIDs{}, prov)
		if err != nil {
			return nil, nil, err
		}
		cfg.Source = sourceConfig(y.MaxLength, y.Precision, map[string]string{Decoder: y.ModelNameOrPath})
		return cfg, []string{"architecture from " + file, "decoder: " + n.Summary()}, nil
	}
	n, ids, err := readHFConfig(path, neoxShapes(c))
	if err != nil {
		return nil, nil, err
	}
	if o.Heads > 0 && o.Heads != n.Heads {
		return nil, nil, badFile(path, "num_attention_heads %d; --heads %d disagrees", n.Heads, o.Heads)
	}
	cfg, err := vanillaConfig(path, n, ids, prov)
	if err != nil {
		return nil, nil, err
	}
	return cfg, []string{"architecture from " + file, "decoder: " + n.Summary()}, nil
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

func openNeoX(c *Checkpoint, o OpenOptions) (*Model, error) {
	prov := Provenance{}
	cfg, notes, err := neoxArchitecture(c, o, prov)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatNeoX, Path: c.Dir, Config: cfg, Notes: notes}
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
	if m.Tensors, err = checkAgainstSpecs(c.Dir, cfg, prov, tensors, name); err != nil {
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
		"rotary_pct":              RotaryPct(d),
		"rotary_emb_base":         d.RotaryBase,
		"layer_norm_eps":          d.LayerNormEps,
		"use_parallel_residual":   d.ParallelResidual,
		"hidden_act":              "gelu",
		"tie_word_embeddings":     false,
		"bos_token_id":            c.BOSTokenID,
		"eos_token_id":            c.PadTokenID,
		"max_position_embeddings": cmp.Or(d.MaxPositions, 2048),
		"torch_dtype":             torchDType,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}
