package btconvert

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/dustin/go-humanize"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/fsio"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/verify/bench"
)

// Runtime says where a model runs.
type Runtime struct {
	Backend      string // "" is $BTCONVERT_BACKEND, else auto (see backend.Choose)
	ComputeDType string // "f32" (default) or "bf16"
}

// device is a started Runtime: the backend, the spec it was made from, and the compute dtype.
type device struct {
	b    compute.Backend
	spec string
	dt   dtypes.DType
}

// start checks the compute dtype, creates the backend rt asks for and tells the user which one
// runs and why.
func (rt Runtime) start(ui UI) (*device, error) {
	dt, err := graph.ParseComputeDType(rt.ComputeDType)
	if err != nil {
		return nil, err
	}
	return startBackend("Backend", backend.Resolve(rt.Backend), dt, ui)
}

// startBackend starts the backend spec (given by option) and tells the user which one runs and
// why.
func startBackend(option, spec string, dt dtypes.DType, ui UI) (*device, error) {
	s, err := backend.Open(option, spec)
	if err != nil {
		return nil, err
	}
	ui.Note(fmt.Sprintf("backend: %s [%s]", backend.Describe(s.Backend), s.Why))
	warnSlowBuild(ui, s.Backend)
	return &device{s.Backend, s.Spec, dt}, nil
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

// checkWindows refuses scoring windows of window tokens, batch at a time, whose estimated memory
// (the same estimate as a bench batch: activations, attention scores, logits) exceeds what is
// available, before anything is allocated. windowOpt and batchOpt name the options.
func checkWindows(l *loaded, window, batch int, windowOpt, batchOpt string) error {
	need := bench.Estimate(l.eng.Config, l.eng.Weights.Bytes, l.eng.DType.Size(), batch, window)
	if avail := memoryFor(); avail > 0 && need > avail {
		return errs.Option(windowOpt, window, "with {%s} %d needs about %s of memory, more than the %s available: use a smaller {%s} or {%s}",
			batchOpt, batch, humanize.IBytes(uint64(need)), humanize.IBytes(uint64(avail)), windowOpt, batchOpt)
	}
	return nil
}

// memoryFor is the memory this process may use: the system's available memory.
func memoryFor() int64 { return bench.Available() }

// checkFitsMemory refuses to load a model whose weights would not fit in memory.
func checkFitsMemory(m *formats.Model) error {
	var n int64
	for _, t := range m.Tensors {
		n += t.Bytes()
	}
	if avail := memoryFor(); avail > 0 && n > avail {
		return errs.File(m.Path, "its weights need %s in memory, more than the %s available", humanize.IBytes(uint64(n)), humanize.IBytes(uint64(avail)))
	}
	return nil
}

// tensorWritten reports each written tensor on bar and, after a large one, hands its memory back
// to the system at once: the peak then follows the largest tensor, not the collector's growth
// target over two of them.
func tensorWritten(bar Bar) func(tensor string, n int64) {
	return func(tensor string, n int64) {
		bar.Add(n, tensor)
		if n >= 16<<20 {
			debug.FreeOSMemory()
		}
	}
}

// checkWrite refuses, before anything is written, an output whose largest tensor would not fit in
// memory while it is made (its bytes, their float32 values and the converted copy) or whose total
// would not fit on the destination's disk.
func checkWrite(m *formats.Model, dest string, to safetensors.DType) error {
	var total, largest int64
	var name string
	for _, t := range m.Tensors {
		b := t.Bytes()
		if to != "" && t.DType.IsFloat() {
			b = t.NumElements() * int64(to.Size())
		}
		total += b
		if need := t.Bytes() + 4*t.NumElements() + b; need > largest {
			largest, name = need, t.Key()
		}
	}
	if avail := memoryFor(); avail > 0 && largest > avail {
		return &errs.InputError{Tensor: name, Msg: fmt.Sprintf("needs about %s in memory to be written, more than the %s available",
			humanize.IBytes(uint64(largest)), humanize.IBytes(uint64(avail)))}
	}
	if free := freeSpace(filepath.Dir(filepath.Clean(dest))); free > 0 && total > free {
		return errs.File(dest, "needs %s on disk but only %s is free there", humanize.IBytes(uint64(total)), humanize.IBytes(uint64(free)))
	}
	return nil
}

// freeSpace is the free space of the file system holding dir (or its nearest existing parent);
// 0 if unknown.
func freeSpace(dir string) int64 {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Statfs_t
		if syscall.Statfs(d, &st) == nil {
			return int64(st.Bavail) * int64(st.Bsize)
		}
		if filepath.Dir(d) == d {
			return 0
		}
	}
}

// modelName is the name a model is shown by: its folder or file name.
func modelName(p string) string {
	return cmp.Or(filepath.Base(filepath.Clean(p)), p)
}

// readText reads a text file (regular files only, within a bound).
func readText(path string) (string, error) {
	b, err := fsio.ReadFile(path, fsio.TextLimit)
	return string(b), err
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
