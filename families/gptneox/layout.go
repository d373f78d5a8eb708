package gptneox

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Format is the name of this layout.
const Format = "hf-gpt-neox"

// Layout reads and writes HF transformers GPT-NeoX / Pythia folders: config.json (or the official
// code's vanilla YAML) and gpt_neox.* tensors with an embed_out or lm_head output head.
type Layout struct{}

var _ formats.Layout = Layout{}

// Format implements formats.Layout.
func (Layout) Format() string { return Format }

// Describe implements formats.Layout.
func (Layout) Describe() string {
	return "an HF GPT-NeoX / Pythia folder (config.json or the official vanilla config.yaml, + safetensors)"
}

// Detect implements formats.Layout.
func (Layout) Detect(c *safetensors.Checkpoint) bool {
	return c.Has(embedIn)
}

// Exports implements formats.Layout: vanilla models.
func (Layout) Exports(cfg *arch.Config) bool { return !cfg.IsBlock() && cfg.Decoder.IsNeoX() }

// Name is the HF name of our vanilla tensor id, the output head as embed_out.weight.
func Name(id arch.ID) string { return srcName("embed_out.weight")(id) }

// srcName names our vanilla tensors as HF does, with the output head as given.
func srcName(head string) func(arch.ID) string {
	return func(id arch.ID) string {
		if id.Part == arch.PartEmbedOut {
			return head
		}
		return "gpt_neox." + id.Name()
	}
}

// embedIn is the HF name of the token embeddings.
var embedIn = Name(arch.ID{Component: arch.Decoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer})

// Open implements formats.Layout.
func (Layout) Open(c *safetensors.Checkpoint, o formats.OpenOptions) (*formats.Model, error) {
	prov := arch.Provenance{}
	cfg, notes, err := architecture(c, o, prov)
	if err != nil {
		return nil, err
	}
	m := &formats.Model{Format: Format, Path: c.Dir, Config: cfg, Notes: notes}
	head := "embed_out.weight"
	switch {
	case c.Has("embed_out.weight"):
	case c.Has("lm_head.weight"):
		head = "lm_head.weight"
	default:
		head = embedIn
		m.Notes = append(m.Notes, "no embed_out.weight / lm_head.weight: output head tied to "+embedIn)
	}
	name := srcName(head)
	specs := arch.Tensors(cfg)
	notes, err = formats.CheckNames(specs, func(s arch.TensorSpec) string { return name(s.ID()) }, c.Names, formats.Expect{
		File: c.Dir, FileOf: c.FileOf,
		Missing:    "missing from the checkpoint (config.json asks for it)",
		Unexpected: "not part of a GPT-NeoX model with this config.json",
		Extra: func(n string) (string, bool) {
			switch {
			case official.Buffer(n):
				return "ignored buffer " + n, true
			case n == "lm_head.weight" || n == "embed_out.weight":
				return "second output head (both embed_out.weight and lm_head.weight present)", false
			}
			return "", false
		}})
	if err != nil {
		return nil, err
	}
	m.Notes = append(m.Notes, notes...)
	var tensors []*formats.Tensor
	for _, s := range specs {
		tensors = append(tensors, formats.FromCheckpoint(c, name(s.ID()), s.Component, s.Name))
	}
	if m.Tensors, err = formats.Match(c.Dir, specs, prov, tensors); err != nil {
		return nil, err
	}
	m.OnClose(c)
	return m, nil
}

// shapes reads the shape keys of a GPT-NeoX checkpoint.
func shapes(c *safetensors.Checkpoint) map[string]int {
	return official.StackShapes(c, "gpt_neox.", embedIn)
}

// architecture resolves a GPT-NeoX checkpoint's config: config.json, or the official vanilla YAML
// (config.yaml, any .yaml given, or an official vanilla config by name), or, with only the
// weights, their shapes plus the given heads.
func architecture(c *safetensors.Checkpoint, o formats.OpenOptions, prov arch.Provenance) (*arch.Config, []string, error) {
	if o.Decoding != "" {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: "holds a vanilla GPT-NeoX model; {Decoding} applies to Block Transformer checkpoints"}
	}
	if len(o.Heads) > 1 {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: fmt.Sprintf("holds a vanilla GPT-NeoX model: {Heads} %s gives more than its one decoder", o.Heads)}
	}
	heads := o.Heads.For(arch.Decoder)
	path := o.Config
	if path == "" {
		for _, name := range []string{"config.json", "config.yaml"} {
			if p := filepath.Join(c.Dir, name); fsio.Exists(p) {
				path = p
				break
			}
		}
	}
	file := filepath.Base(path)
	switch {
	case path == "":
		if heads < 1 {
			return nil, nil, &errs.InputError{File: c.Dir, Msg: "GPT-NeoX weights but no config.json beside them, and the attention heads cannot be read from them: give {Config} (config.json, the official YAML, or an official config: " +
				strings.Join(vanillaNames(), ", ") + "), or {Heads} N to read the rest off the weights"}
		}
		n, err := arch.FromShapesWithHeads(arch.Decoder, shapes(c), heads)
		if err != nil {
			return nil, nil, errs.File(c.Dir, "%v", err)
		}
		cfg, err := arch.VanillaConfig(n, arch.TokenIDs{}, prov)
		if err != nil {
			return nil, nil, errs.File(c.Dir, "%v", err)
		}
		return cfg, []string{"no config.json: architecture read off the tensor shapes, heads given", "decoder: " + n.Summary()}, nil
	case arch.IsReleased(path) && !fsio.Exists(path):
		_, v, err := arch.Released(path, arch.OriginYAML)
		if err != nil {
			return nil, nil, err
		}
		if v == nil {
			return nil, nil, errs.File(c.Dir, "holds a vanilla GPT-NeoX model; %s is the config of a Block Transformer", path)
		}
		return vanillaSpec(c.Dir, v, c, heads, prov)
	case strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml"):
		var y official.VanillaYAML
		if err := official.ReadYAML(path, &y); err != nil {
			return nil, nil, err
		}
		return vanillaSpec(path, &arch.VanillaSpec{Name: y.Name, File: file, Base: y.ModelNameOrPath, Settings: official.Settings(y.ModelConfig),
			MaxLength: y.MaxLength, Precision: y.Precision}, c, heads, prov)
	}
	n, ids, err := readHFConfig(path, shapes(c))
	if err != nil {
		return nil, nil, err
	}
	if heads > 0 && heads != n.Heads {
		return nil, nil, &errs.InputError{File: path, Msg: fmt.Sprintf("%s; {Heads} %d disagrees", n.Explain(arch.KeyHeads), heads)}
	}
	cfg, err := arch.VanillaConfig(n, ids, prov)
	if err != nil {
		return nil, nil, errs.File(path, "%v", err)
	}
	return cfg, []string{"architecture from " + file, "decoder: " + n.Summary()}, nil
}

// vanillaSpec resolves a vanilla YAML (path names it in errors).
func vanillaSpec(path string, s *arch.VanillaSpec, c *safetensors.Checkpoint, heads int, prov arch.Provenance) (*arch.Config, []string, error) {
	var h arch.Heads
	if heads > 0 {
		h = arch.Heads{heads}
	}
	cfg, notes, err := s.Resolve(h, shapes(c), prov)
	if err != nil {
		return nil, nil, &errs.InputError{File: path, Msg: err.Error()}
	}
	return cfg, notes, nil
}

// vanillaNames are the official vanilla configs.
func vanillaNames() []string {
	var out []string
	for _, n := range arch.ReleasedNames() {
		if _, v, _ := arch.Released(n, arch.OriginYAML); v != nil {
			out = append(out, n)
		}
	}
	return out
}

// Export implements formats.Layout: config.json and model.safetensors (or shards).
func (Layout) Export(m *formats.Model, dir string, o formats.ExportOptions) error {
	wts, dt, err := formats.SpecTensors(m, Name, o.DType)
	if err != nil {
		return err
	}
	cj, err := configJSON(m.Config, dt)
	if err != nil {
		return err
	}
	return formats.WriteCheckpoint(dir, "config.json", cj, wts, o)
}
