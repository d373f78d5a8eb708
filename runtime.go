package btconvert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Runtime says where a model runs.
type Runtime struct {
	Backend      string // "" is $BTCONVERT_BACKEND, else auto (see backend.Choose)
	ComputeDType string // "f32" (default) or "bf16"
}

// device is a started Runtime: the backend, the spec it was made from, the compute dtype, and the
// UI that shows its loads.
type device struct {
	b    compute.Backend
	spec string
	dt   dtypes.DType
	ui   UI
}

// start checks the compute dtype, creates the backend rt asks for and tells the user which one
// runs and why.
// The work (backend.Work) lets auto keep a small run off XLA's CPU plugin, whose compile would
// take longer than the run.
func (rt Runtime) start(ui UI, w backend.Work) (*device, error) {
	dt, err := graph.ParseComputeDType(rt.ComputeDType)
	if err != nil {
		return nil, err
	}
	return startBackend("Backend", backend.Resolve(rt.Backend), dt, ui, w)
}

// startBackend starts the backend spec (given by option) and tells the user which one runs and
// why.
func startBackend(option, spec string, dt dtypes.DType, ui UI, w backend.Work) (*device, error) {
	s, err := backend.OpenFor(option, spec, w)
	if err != nil {
		return nil, err
	}
	ui.Note(fmt.Sprintf("backend: %s [%s]", backend.Describe(s.Backend), s.Why))
	warnSlowBuild(ui, s.Backend)
	return &device{s.Backend, s.Spec, dt, ui}, nil
}

// Warner is a UI that also shows warnings --quiet does not silence (the command line's does).
type Warner interface {
	Warn(msg string)
}

// warnSlowBuild tells the user that this binary runs the go backend without its SIMD kernels
// (backend.SlowBuildWarning): through Warn when ui has it (the command line prints it once per
// run), else as a Note.
func warnSlowBuild(ui UI, b compute.Backend) {
	if backend.SIMDBuiltIn || !backend.IsGo(b) {
		return
	}
	if w, ok := ui.(Warner); ok {
		w.Warn(backend.SlowBuildWarning)
		return
	}
	ui.Note(backend.SlowBuildWarning)
}

// loaded is a model opened and uploaded to a backend.
type loaded struct {
	src *formats.Model
	eng *graph.Engine
}

func (l *loaded) Close() {
	l.eng.Close()
	l.src.Close()
}

// load opens path and uploads it to the device; every file of our folder read on the way is
// checked against the manifest's sha256 (see modeldir.Open).
func (d *device) load(path string, o formats.OpenOptions) (*loaded, error) {
	bar := phase(d.ui, "load", path) // reading, checking and uploading a large model takes seconds
	defer bar.Done()
	src, err := source.Open(path, o)
	if err != nil {
		return nil, err
	}
	if err := checkFitsMemory(src); err != nil {
		src.Close()
		return nil, err
	}
	eng, err := graph.Load(src, d.b, d.dt)
	if err == nil {
		err = src.Finish()
	}
	if err != nil {
		if eng != nil {
			eng.Close()
		}
		src.Close()
		return nil, err
	}
	return &loaded{src: src, eng: eng}, nil
}

// phase is a bar for work whose progress is not counted (loading, a check, a compile): the user
// sees that it runs, and for how long, when it takes more than a moment. item names it.
func phase(ui UI, what, item string) Bar {
	b := ui.Progress(what, 1, "")
	if item != "" {
		b.Add(0, item)
	}
	return b
}

// compiling is the item of a phase whose first graphs compile before they run on one of devs
// (XLA: seconds on a CPU), "" where none does (the pure-Go backend builds graphs in no time).
func compiling(devs ...*device) string {
	for _, d := range devs {
		if !backend.IsGo(d.b) {
			return "compiling first"
		}
	}
	return ""
}

// open starts the backend rt asks for and loads model on it.
func (rt Runtime) open(model string, o formats.OpenOptions, ui UI, w backend.Work) (*device, *loaded, error) {
	dev, err := rt.start(ui, w)
	if err != nil {
		return nil, nil, err
	}
	l, err := dev.load(model, o)
	if err != nil {
		return nil, nil, err
	}
	return dev, l, nil
}

// weightsOnDisk is what the models at paths hold in weight files (a folder's or a checkpoint's
// .safetensors, a bundle or a single file whole): what auto weighs before anything is read. A
// quantized folder's weights count as the float32 they stand for (its config.json says which):
// the go backend spends a float32 weight's time on each of them or more (docs/QUANTIZATION.md),
// so its quantized bytes alone would send to go the runs that XLA finishes first.
func weightsOnDisk(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if p == "" {
			continue
		}
		st, err := os.Stat(p)
		switch {
		case err != nil:
		case st.IsDir():
			files, _ := filepath.Glob(filepath.Join(p, "*.safetensors"))
			for _, f := range files {
				if fs, err := os.Stat(f); err == nil {
					n += fs.Size()
				}
			}
			n += floatEquivalentExtra(p)
		default:
			n += st.Size()
		}
	}
	return n
}

// floatEquivalentExtra is what a quantized folder's tensors would add as float32: 4 bytes a weight
// less what its code takes; 0 for anything else (an unreadable config is the reader's to report).
func floatEquivalentExtra(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || len(b) > 16<<20 {
		return 0
	}
	var c struct {
		Quantization map[string]struct {
			Type       string `json:"type"`
			Rows, Cols int
		} `json:"quantization"`
	}
	if json.Unmarshal(b, &c) != nil {
		return 0
	}
	var n int64
	for _, q := range c.Quantization {
		if sc, err := scheme.Of(scheme.Type(q.Type)); err == nil {
			n += int64(max(q.Rows, 0)) * int64(max(q.Cols, 0)) * int64(32-sc.Bits) / 8
		}
	}
	return n
}

// textTokens guesses the tokens of a text file before any tokenizer is read: a byte-level
// vocabulary gives one a byte, a BPE one about one in four bytes; the guess takes one in two.
func textTokens(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size() / 2
}

// tokenizer is the tokenizer the loaded model carries (or its vocabulary's byte tokenizer).
func (l *loaded) tokenizer() (tokenizer.Tokenizer, error) {
	return tokenizer.For(l.src.File, l.src.Name(), l.eng.Config.VocabSize)
}
