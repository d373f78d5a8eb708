package llama

import (
	"path/filepath"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Format is the name of the layout: Hugging Face's Llama, Mistral and Qwen2 folders.
const Format = "hf-llama"

// Layout reads and writes HF Llama-family folders: config.json and model.* tensors with an
// lm_head (absent when tied), in one file or in shards with their index.
type Layout struct{}

var _ formats.Layout = Layout{}

// Format implements formats.Layout.
func (Layout) Format() string { return Format }

// Describe implements formats.Layout.
func (Layout) Describe() string {
	return "an HF Llama, Mistral or Qwen2 folder (config.json + safetensors)"
}

// Detect implements formats.Layout.
func (Layout) Detect(c *safetensors.Checkpoint) bool {
	return c.Has(hfTable) && c.Has("model.layers.0.self_attn.q_proj.weight")
}

// Exports implements formats.Layout: vanilla Llama-family models.
func (Layout) Exports(cfg *arch.Config) bool { return !cfg.IsBlock() && cfg.Decoder.Family == Family }

const (
	hfTable = "model.embed_tokens.weight"
	hfHead  = "lm_head.weight"
	hfNorm  = "model.norm.weight"
)

// hfName is the HF name of our tensor id of a vanilla model.
func hfName(id arch.ID) string {
	switch id.Part {
	case arch.PartEmbedIn:
		return hfTable
	case arch.PartEmbedOut:
		return hfHead
	case arch.PartFinalNorm:
		return hfNorm
	}
	return "model." + id.Name()
}

// Open implements formats.Layout.
func (Layout) Open(c *safetensors.Checkpoint, o formats.OpenOptions) (*formats.Model, error) {
	switch {
	case o.Decoding != "":
		return nil, &errs.InputError{File: c.Dir, Msg: "holds a vanilla Llama-family model; {Decoding} applies to Block Transformer checkpoints"}
	case len(o.Heads) > 0:
		return nil, &errs.InputError{File: c.Dir, Msg: "holds a Llama-family model, whose config.json states its heads; {Heads} applies to checkpoints without one"}
	}
	path := o.Config
	if path == "" {
		path = filepath.Join(c.Dir, "config.json")
		if !fsio.Exists(path) {
			return nil, &errs.InputError{File: c.Dir, Msg: "Llama-family weights but no config.json beside them: give {Config} (the model's config.json)"}
		}
	}
	b, err := fsio.ReadFile(path, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	// HF's generate stops at generation_config.json's eos_token_id where it states one.
	var genCfg []byte
	if g := filepath.Join(filepath.Dir(path), "generation_config.json"); fsio.Exists(g) {
		if genCfg, err = fsio.ReadFile(g, fsio.ConfigLimit); err != nil {
			return nil, err
		}
	}
	prov := arch.Provenance{}
	cfg, notes, err := readConfig(b, genCfg, filepath.Base(path), prov)
	if err != nil {
		return nil, &errs.InputError{File: path, Msg: err.Error()}
	}
	m := &formats.Model{Format: Format, Path: c.Dir, Config: cfg,
		Notes: append([]string{"architecture from " + filepath.Base(path), "decoder: " + cfg.Describe()}, notes...)}
	tied := cfg.Decoder.Tied() // then the table is the head: no embed_out in our table
	name := func(s arch.TensorSpec) string { return hfName(s.ID()) }
	specs := arch.Tensors(cfg)
	notes, err = formats.CheckNames(specs, name, c.Names, formats.Expect{
		File: c.Dir, FileOf: c.FileOf,
		Missing:    "missing from the checkpoint (config.json asks for it)",
		Unexpected: "not part of a Llama-family model with this config.json",
		Extra: func(n string) (string, bool) {
			switch {
			case strings.HasSuffix(n, ".rotary_emb.inv_freq"):
				return "ignored buffer " + n, true
			case n == hfHead && tied:
				return "", false // refused: config.json ties the head, the file has its own
			}
			return "", false
		}})
	if err != nil {
		if tied && c.Has(hfHead) {
			return nil, &errs.InputError{File: path, Msg: "tie_word_embeddings is true but the checkpoint has its own lm_head.weight: set it false to use that head"}
		}
		return nil, err
	}
	if tied {
		m.Notes = append(m.Notes, "output head tied to "+hfTable+" (held once)")
	}
	m.Notes = append(m.Notes, notes...)
	var ts []*formats.Tensor
	for _, s := range specs {
		ts = append(ts, formats.FromCheckpoint(c, name(s), s.Component, s.Name))
	}
	if m.Tensors, err = formats.Match(c.Dir, specs, prov, ts); err != nil {
		return nil, err
	}
	m.OnClose(c)
	return m, nil
}

// Export implements formats.Layout: config.json and model.safetensors (or shards); a tied head is
// the token table, written once.
func (Layout) Export(m *formats.Model, dir string, o formats.ExportOptions) error {
	wts, dt, err := formats.SpecTensors(m, hfName, o.DType)
	if err != nil {
		return err
	}
	cj, err := writeConfig(m.Config, formats.TorchDType(dt))
	if err != nil {
		return err
	}
	return formats.WriteCheckpoint(dir, "config.json", cj, wts, o)
}
