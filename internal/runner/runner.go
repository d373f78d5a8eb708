// Package runner starts the backend a run asks for and loads models onto it: the device, the
// phases the user sees while it works, the memory checks made before anything is allocated, and
// the size of a run that the backend choice weighs.
package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/sysmem"
	"github.com/btconvert/btconvert/quant/scheme"
)

// UI is how a long run talks to its user (the pipeline's UI).
type UI interface {
	// Note is one line to tell the user (a fact, or a warning starting with "warning:").
	Note(msg string)
	// Progress starts a bar of total units (unit "B" is bytes, else a count of unit); unit "" is
	// a phase whose progress is not counted (total 1), shown as running for so long.
	Progress(what string, total int64, unit string) Bar
}

// Bar is one progress bar.
type Bar interface {
	// Add advances by n units; item names what was just done ("" keeps the last), or with n == 0
	// what is under way.
	Add(n int64, item string)
	// Done ends the bar.
	Done()
}

// Device is a started backend: the backend, the spec it was made from, the compute dtype, and the
// UI that shows its loads.
type Device struct {
	Backend compute.Backend
	Spec    string
	DType   dtypes.DType
	ui      UI
}

// StartBackend starts the backend spec (given by option) and tells the user which one runs and
// why.
func StartBackend(option, spec string, dt dtypes.DType, ui UI, w backend.Work) (*Device, error) {
	s, err := backend.OpenFor(option, spec, w)
	if err != nil {
		return nil, err
	}
	ui.Note(fmt.Sprintf("backend: %s [%s]", backend.Describe(s.Backend), s.Why))
	WarnSlowBuild(ui, s.Backend)
	return &Device{s.Backend, s.Spec, dt, ui}, nil
}

// Warner is a UI that also shows warnings --quiet does not silence (the command line's does).
type Warner interface {
	Warn(msg string)
}

// WarnSlowBuild tells the user that this binary runs the go backend without its SIMD kernels
// (backend.SlowBuildWarning): through Warn when ui has it (the command line prints it once per
// run), else as a Note.
func WarnSlowBuild(ui UI, b compute.Backend) {
	if backend.SIMDBuiltIn || !backend.IsGo(b) {
		return
	}
	if w, ok := ui.(Warner); ok {
		w.Warn(backend.SlowBuildWarning)
		return
	}
	ui.Note(backend.SlowBuildWarning)
}

// Loaded is a model opened and uploaded to a backend.
type Loaded struct {
	Src *formats.Model
	Eng *graph.Engine
}

// Close frees the device's copy and closes the model's files.
func (l *Loaded) Close() {
	l.Eng.Close()
	l.Src.Close()
}

// Load opens path and uploads it to the device; every file of our folder read on the way is
// checked against the manifest's sha256 (see modeldir.Open).
func (d *Device) Load(path string, o formats.OpenOptions) (*Loaded, error) {
	bar := Phase(d.ui, "load", path) // reading, checking and uploading a large model takes seconds
	defer bar.Done()
	src, err := source.Open(path, o)
	if err != nil {
		return nil, err
	}
	if err := CheckFitsMemory(src); err != nil {
		src.Close()
		return nil, err
	}
	eng, err := graph.Load(src, d.Backend, d.DType)
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
	return &Loaded{Src: src, Eng: eng}, nil
}

// Phase is a bar for work whose progress is not counted (loading, a check, a compile): the user
// sees that it runs, and for how long, when it takes more than a moment. item names it.
func Phase(ui UI, what, item string) Bar {
	b := ui.Progress(what, 1, "")
	if item != "" {
		b.Add(0, item)
	}
	return b
}

// Compiling is the item of a phase whose first graphs compile before they run on one of devs
// (XLA: seconds on a CPU), "" where none does (the pure-Go backend builds graphs in no time).
func Compiling(devs ...*Device) string {
	for _, d := range devs {
		if !backend.IsGo(d.Backend) {
			return "compiling first"
		}
	}
	return ""
}

// WeightsOnDisk is what the models at paths hold in weight files (a folder's or a checkpoint's
// .safetensors, a bundle or a single file whole): what auto weighs before anything is read. A
// quantized folder's weights count as the float32 they stand for (its config.json says which):
// the go backend spends a float32 weight's time on each of them or more (docs/QUANTIZATION.md),
// so its quantized bytes alone would send to go the runs that XLA finishes first.
func WeightsOnDisk(paths ...string) int64 {
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

// TextTokens guesses the tokens of a text file before any tokenizer is read: a byte-level
// vocabulary gives one a byte, a BPE one about one in four bytes; the guess takes one in two.
func TextTokens(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size() / 2
}

// Tokenizer is the tokenizer the loaded model carries (or its vocabulary's byte tokenizer).
func (l *Loaded) Tokenizer() (tokenizer.Tokenizer, error) {
	return tokenizer.For(l.Src.File, l.Src.Name(), l.Eng.Config.VocabSize)
}

// CheckWindows refuses scoring windows of window tokens, batch at a time, whose estimated memory
// (the same estimate as a bench batch: activations, attention scores, logits) exceeds what is
// available, before anything is allocated. windowOpt and batchOpt name the options.
func CheckWindows(l *Loaded, window, batch int, windowOpt, batchOpt string) error {
	need := l.Eng.Estimate(batch, window)
	if avail := MemoryFor(); avail > 0 && need > avail {
		return errs.Option(windowOpt, window, "with {%s} %d needs about %s of memory, more than the %s available: use a smaller {%s} or {%s}",
			batchOpt, batch, humanize.IBytes(uint64(need)), humanize.IBytes(uint64(avail)), windowOpt, batchOpt)
	}
	return nil
}

// MemoryFor is the memory this process may use: the system's available memory.
func MemoryFor() int64 { return sysmem.Available() }

// CheckFitsMemory refuses to load a model whose weights would not fit in memory.
func CheckFitsMemory(m *formats.Model) error {
	var n int64
	for _, t := range m.Tensors {
		n += t.Bytes()
	}
	if avail := MemoryFor(); avail > 0 && n > avail {
		return errs.File(m.Path, "its weights need %s in memory, more than the %s available", humanize.IBytes(uint64(n)), humanize.IBytes(uint64(avail)))
	}
	return nil
}

// FitsMemory refuses a generation at batch B up to length tokens whose estimated memory is more
// than the system has available (before allocating anything).
func FitsMemory(l *Loaded, B, length int) error {
	est := l.Eng.Estimate(B, length)
	if avail := MemoryFor(); avail > 0 && est > avail {
		return errs.Option("MaxNewTokens", nil, "batch %d up to %d tokens needs about %s of memory, more than the %s available",
			B, length, humanize.IBytes(uint64(est)), humanize.IBytes(uint64(avail)))
	}
	return nil
}
