package formats

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Model is a model in our layout: its config and its tensors in canonical order (arch.Tensors,
// quantized tensors as their stored parts), from whatever source.
type Model struct {
	Format  string // where it was read from: "btconvert", "official-block-transformer", "hf-gpt-neox", ...
	Path    string // the file or folder it was read from ("" if made in memory)
	Config  *arch.Config
	Tensors []*Tensor
	Notes   []string // what the user should be told (dropped tensors, where settings came from)
	// Bundle is the .btz the model was read from, if any (Path is then its extracted copy).
	Bundle string
	// ReadFile reads a file that goes with the model (tokenizer, recorded report) by name: nil,
	// nil when it has none. Our folder checks it against its manifest; nil ReadFile: none.
	ReadFile func(name string) ([]byte, error)
	// MadeFrom is the Fingerprint of the model this one was written from, as our folder's
	// manifest records it ("" when unknown): a quantized model's base.
	MadeFrom string
	closers  []io.Closer
	fp       *fingerprint
	finish   []func() error
	byKey    map[string]*Tensor
}

// OnFinish has check run by Finish.
func (m *Model) OnFinish(check func() error) { m.finish = append(m.finish, check) }

// WrapFinishError passes the errors of the checks Finish runs through wrap.
func (m *Model) WrapFinishError(wrap func(error) error) {
	old := m.finish
	m.finish = []func() error{func() error {
		for _, f := range old {
			if err := f(); err != nil {
				return wrap(err)
			}
		}
		return nil
	}}
}

// Finish completes the integrity checks of what the model was read from (the files whose
// tensors were not all read are read to the end): call it before trusting a result.
func (m *Model) Finish() error {
	for _, f := range m.finish {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// Name is what the user calls the model: the bundle or the path it was read from.
func (m *Model) Name() string {
	if m.Bundle != "" {
		return m.Bundle
	}
	return m.Path
}

// File reads a file that goes with the model (see ReadFile).
func (m *Model) File(name string) ([]byte, error) {
	if m.ReadFile == nil {
		return nil, nil
	}
	return m.ReadFile(name)
}

// OnClose has c closed when the model is.
func (m *Model) OnClose(c io.Closer) { m.closers = append(m.closers, c) }

// Tensor looks up a tensor by component and name.
func (m *Model) Tensor(component, name string) *Tensor {
	if m.byKey == nil {
		m.byKey = map[string]*Tensor{}
		for _, t := range m.Tensors {
			m.byKey[t.Key()] = t
		}
	}
	return m.byKey[component+"/"+name]
}

// SpecTensors are m's tensors in the order of its config's table (arch.Tensors), each to be
// written under name(id) in dtype to ("" keeps each tensor's own), and the dtype of the first one
// as written: what an HF layout's Export writes and states as its torch_dtype.
func SpecTensors(m *Model, name func(arch.ID) string, to safetensors.DType) ([]safetensors.WriteTensor, safetensors.DType, error) {
	specs := arch.Tensors(m.Config)
	if len(specs) != len(m.Tensors) {
		return nil, "", fmt.Errorf("%s: %d tensors, its config has %d", m.Name(), len(m.Tensors), len(specs))
	}
	dt := to
	var wts []safetensors.WriteTensor
	for _, s := range specs {
		t := m.Tensor(s.Component, s.Name)
		if t == nil {
			return nil, "", fmt.Errorf("%s: no tensor %s to export", m.Name(), s.Key())
		}
		if dt == "" {
			dt = t.DType
		}
		wts = append(wts, t.ToWrite(name(s.ID()), t.Shape, to, nil))
	}
	return wts, dt, nil
}

// TorchDType is an HF config.json's torch_dtype for a safetensors dtype.
func TorchDType(dt safetensors.DType) string {
	switch dt {
	case safetensors.F16:
		return "float16"
	case safetensors.BF16:
		return "bfloat16"
	case safetensors.F64:
		return "float64"
	}
	return "float32"
}

// Close releases the files behind the model (latest first).
func (m *Model) Close() error {
	var first error
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	m.closers = nil
	return first
}

// ComponentTensors returns the tensors of one component, in order.
func (m *Model) ComponentTensors(component string) []*Tensor {
	var out []*Tensor
	for _, t := range m.Tensors {
		if t.Component == component {
			out = append(out, t)
		}
	}
	return out
}

// Derive returns a model with the same source and notes but a new config and tensors (e.g. a
// quantized copy). Closing it closes m.
func (m *Model) Derive(format string, cfg *arch.Config, tensors []*Tensor) *Model {
	return &Model{Format: format, Path: m.Path, Config: cfg, Tensors: tensors, Notes: m.Notes, Bundle: m.Bundle, ReadFile: m.ReadFile,
		MadeFrom: m.MadeFrom, closers: []io.Closer{m}, finish: []func() error{m.Finish}, fp: m.fp}
}

// Match checks that tensors, which CheckNames found to be those of specs, have the specs' shapes
// and dtypes (float where no dtype is fixed), and returns them in the specs' order. file names the
// source, and prov (may be nil) where each config value came from, for the messages.
func Match(file string, specs []arch.TensorSpec, prov arch.Provenance, tensors []*Tensor) ([]*Tensor, error) {
	byKey := map[string]*Tensor{}
	for _, t := range tensors {
		byKey[t.Key()] = t
	}
	if len(byKey) != len(specs) || len(tensors) != len(specs) {
		return nil, fmt.Errorf("%s: %d tensors for %d specs (the names were not checked)", file, len(tensors), len(specs))
	}
	var out []*Tensor
	for _, s := range specs {
		t := byKey[s.Key()]
		if t == nil {
			return nil, fmt.Errorf("%s: no tensor for %s (the names were not checked)", file, s.Key())
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return nil, ShapeError(t.SrcFile, t.SrcName, t.Shape, s, prov)
		}
		if s.DType != "" && t.DType != s.DType {
			return nil, errs.Tensor(t.SrcFile, t.SrcName, "dtype %s, want %s", t.DType, s.DType)
		}
		if s.DType == "" && !t.DType.IsFloat() {
			return nil, errs.Tensor(t.SrcFile, t.SrcName, "dtype %s is not a float type", t.DType)
		}
		out = append(out, t)
	}
	return out, nil
}

// ShapeError says a tensor's shape disagrees with the config, and which settings (with their
// origin) fixed the dimension that differs.
func ShapeError(file, tensor string, got []int, s arch.TensorSpec, prov arch.Provenance) error {
	if why := prov.ExplainShape(s, got); why != "" {
		return errs.Tensor(file, tensor, "shape %v disagrees with the config (want %v): %s", got, s.Shape, why)
	}
	return errs.Tensor(file, tensor, "shape %v disagrees with the config (want %v)", got, s.Shape)
}

// OpenOptions says how to read a checkpoint whose files do not say everything.
type OpenOptions struct {
	// Config is the architecture instead of the file beside the weights: an official config by name
	// (arch.ReleasedNames), or a file (official YAML or HF config.json).
	Config string
	// Heads are the head counts of the decoders whose config leaves them open (one for all, or the
	// block decoder's and the token decoder's); where a config gives them they must agree.
	Heads arch.Heads
	// Decoding is the token decoder's strategy for a Block checkpoint read without a config, where
	// the weights fit both prefix and summation.
	Decoding arch.Decoding
}

// ExportOptions controls writing a model in a source layout.
type ExportOptions struct {
	DType     safetensors.DType // "" keeps each tensor's dtype
	ShardSize int64             // > 0: HF shards of at most this many tensor bytes, plus the index
	Progress  safetensors.Progress
	Name      string // model name for the layout's config, where it has one
}

// Layout is a checkpoint layout btconvert reads and writes: it recognises its checkpoints, maps
// them onto our layout, and writes our models back in its own (each name and shape transform next
// to its inverse).
type Layout interface {
	// Format names the layout (Model.Format of what Open returns).
	Format() string
	// Describe says in a phrase what the layout's checkpoints are, for the CLI's help ("an HF
	// GPT-NeoX / Pythia folder (config.json + safetensors)").
	Describe() string
	// Detect tells the layout's checkpoints by their tensor names.
	Detect(c *safetensors.Checkpoint) bool
	// Open maps the checkpoint onto our layout; the model closes c.
	Open(c *safetensors.Checkpoint, o OpenOptions) (*Model, error)
	// Exports reports whether the layout can hold models of this config.
	Exports(cfg *arch.Config) bool
	// Export writes an unquantized model into dir, an empty folder the caller owns.
	Export(m *Model, dir string, o ExportOptions) error
}

// Describe is m's architecture and where it came from, in one line.
func (m *Model) Describe() string { return fmt.Sprintf("%s (%s)", m.Config.Describe(), m.Format) }

// WriteCheckpoint writes a layout's files into dir: its config file, then the tensors as
// model.safetensors (or HF shards of at most o.ShardSize bytes, with their index).
func WriteCheckpoint(dir, configName string, config []byte, tensors []safetensors.WriteTensor, o ExportOptions) error {
	if _, err := fsio.WriteFile(filepath.Join(dir, configName), config); err != nil {
		return err
	}
	_, err := safetensors.WriteSharded(dir, o.ShardSize, map[string]string{"format": "pt"}, tensors, o.Progress)
	return err
}
