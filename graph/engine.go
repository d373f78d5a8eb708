package graph

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph/backend"
)

// Engine runs one model on one backend: its weights uploaded once, and every graph it has built
// and compiled kept for its life (each distinct graph is compiled once).
type Engine struct {
	Config  *arch.Config
	Backend compute.Backend
	DType   dtypes.DType // compute dtype: Float32 or BFloat16
	Weights *Weights
	// CompileLess runs a Block Transformer's token decoder, in generation, as a graph of its own
	// that the prefill and the steps share, instead of inside each of them: about half as much
	// to compile, for one more call per block. Load sets it where XLA compiles for a short run
	// (backend.QuickCompile), whose time compiling outweighs its time running.
	CompileLess bool

	// dequantProducts runs every quantized product as x times the whole dequantized weight: the
	// reference the quantized products are tested against.
	dequantProducts bool
	// copyCaches keeps generation's KV caches in the backend's own buffers where it could share
	// them with the host (shareCaches): the path the shared one is tested against.
	copyCaches bool

	compiles atomic.Int64
	mu       sync.Mutex
	execs    map[string]*Exec
	// waiting holds, by builtKey, the channels of the calls waiting for a graph to be built: each
	// is told its output shapes as soon as it is built, before the backend compiles it
	// (compileOverlapped).
	waiting map[string][]chan []shapes.Shape
}

// backendKind is what the graphs adapt to: the pure-Go backend's kernels and missing ops, or XLA.
type backendKind int

const (
	goBackend backendKind = iota
	xlaBackend
)

func kindOf(b compute.Backend) backendKind {
	if backend.IsGo(b) {
		return goBackend
	}
	return xlaBackend
}

// ParseComputeDType maps a compute dtype name (f32, bf16) to a GoMLX dtype.
func ParseComputeDType(s string) (dtypes.DType, error) {
	switch s {
	case "", "f32":
		return dtypes.Float32, nil
	case "bf16":
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, errs.Option("ComputeDType", s, "want f32 or bf16")
}

// Load uploads m's weights to backend once; every graph of the returned Engine reuses them.
func Load(m *formats.Model, backend compute.Backend, dt dtypes.DType) (*Engine, error) {
	for comp, d := range m.Config.Stacks() {
		if stackGraph(d.FamilyOf()).Build == nil {
			return nil, fmt.Errorf("%s: the %s's decoder family %q has no graph in this build", m.Name(), comp, d.FamilyOf())
		}
	}
	w, err := LoadWeights(m, backend)
	if err != nil {
		return nil, err
	}
	return &Engine{Config: m.Config, Backend: backend, DType: dt, Weights: w, execs: map[string]*Exec{},
		CompileLess: shortRun(backend)}, nil
}

// shareCaches reports whether generation keeps its KV caches in buffers shared with the host: on
// XLA's CPU plugin (which shares host memory), where each step's new keys and values are written
// into them by the host instead of XLA copying every cache into a new buffer on every step
// (go-xla v0.4.5 never lets an output reuse a donated parameter's buffer). The go backend updates
// its donated caches in place already.
func (e *Engine) shareCaches() bool {
	return !e.copyCaches && kindOf(e.Backend) == xlaBackend && e.Backend.HasSharedBuffers()
}

// shortRun reports whether b is XLA compiling for a short run (backend.QuickCompile).
func shortRun(b compute.Backend) bool { return kindOf(b) == xlaBackend && backend.QuickCompile() }

// Close frees the device weights and compiled graphs.
func (e *Engine) Close() {
	for _, x := range e.execs {
		x.Finalize()
	}
	e.execs = nil
	e.Weights.Free()
}

// Compilations counts graphs built and compiled so far (each distinct graph once).
func (e *Engine) Compilations() int64 { return e.compiles.Load() }

// exec returns the executor registered under key, creating it on first use. build receives the
// builder and the non-weight inputs (the weights are the leading parameters of every graph).
func (e *Engine) exec(key string, build func(b *builder, in []*Node) []*Node) (*Exec, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.execs[key]; ok {
		return x, nil
	}
	nW := len(e.Weights.Keys)
	x, err := NewExec(e.Backend, func(in []*Node) []*Node {
		defer func() {
			// GoMLX turns a panic with an error into the compile's error and releases whoever
			// waits for that graph; any other value it re-panics, leaving the graph pending for
			// ever (a later Close or compile of it would wait): make every panic an error.
			if r := recover(); r != nil {
				if err, ok := r.(error); ok {
					panic(err)
				}
				panic(fmt.Errorf("%v", r))
			}
		}()
		e.compiles.Add(1)
		b := newBuilder(in[0].Graph(), e.Weights, e.Config, e.DType, in[:nW], kindOf(e.Backend))
		b.dequantProducts = e.dequantProducts
		b.sharedCaches = e.shareCaches()
		outs := build(b, in[nW:])
		argShapes := make([]shapes.Shape, len(in)-nW)
		for i, p := range in[nW:] {
			argShapes[i] = p.Shape()
		}
		shs := make([]shapes.Shape, len(outs))
		for i, o := range outs {
			shs[i] = o.Shape()
		}
		e.mu.Lock()
		for _, c := range e.waiting[builtKey(key, argShapes)] {
			select {
			case c <- shs:
			default: // told already
			}
		}
		e.mu.Unlock()
		return outs
	})
	if err != nil {
		return nil, err
	}
	x.SetMaxCache(-1).WithName(key)
	e.execs[key] = x
	return x, nil
}

// compile compiles x for args (the weights first) without running it and returns how long that
// took, 0 when it was compiled already: callers time their runs after it, so that no rate they
// report includes compilation.
func (e *Engine) compile(x *Exec, args ...*tensors.Tensor) (time.Duration, error) {
	shs := make([]shapes.Shape, len(args))
	for i, a := range args {
		shs[i] = a.Shape()
	}
	return e.compileShapes(x, shs...)
}

// compileShapes is compile for arguments of the given shapes (the weights' come first).
func (e *Engine) compileShapes(x *Exec, args ...shapes.Shape) (time.Duration, error) {
	shs := make([]shapes.Shape, 0, len(e.Weights.Tensors)+len(args))
	for _, t := range e.Weights.Tensors {
		shs = append(shs, t.Shape())
	}
	shs = append(shs, args...)
	before, start := e.compiles.Load(), time.Now()
	if _, err := x.Compile(shs...); err != nil {
		return 0, err
	}
	if e.compiles.Load() == before {
		return 0, nil
	}
	return time.Since(start), nil
}

// builtKey names a graph of the executor registered under key for arguments of the shapes args
// (the weights' left out).
func builtKey(key string, args []shapes.Shape) string { return fmt.Sprint(key, args) }

// compileOverlapped compiles first (registered under key) for args and, at the same time, second
// for the argument shapes next derives from first's outputs: second's compilation starts as soon
// as first's graph is built, while the backend compiles first (two compilations of about the same
// cost take less than the time of two). It returns the wall time spent (0 when first was
// compiled already) and whether second was compiled here; when it was not, the caller compiles
// it once first has run, as before. A panic while building either graph reaches the caller.
func (e *Engine) compileOverlapped(first *Exec, key string, args []shapes.Shape, second *Exec, next func(outs []shapes.Shape) []shapes.Shape) (time.Duration, bool, error) {
	bk := builtKey(key, args)
	outs := make(chan []shapes.Shape, 1)
	e.mu.Lock()
	if e.waiting == nil {
		e.waiting = map[string][]chan []shapes.Shape{}
	}
	e.waiting[bk] = append(e.waiting[bk], outs)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.waiting[bk] = slices.DeleteFunc(e.waiting[bk], func(c chan []shapes.Shape) bool { return c == outs })
		if len(e.waiting[bk]) == 0 {
			delete(e.waiting, bk)
		}
		e.mu.Unlock()
	}()
	start := time.Now()
	done := make(chan error, 1)
	panicked := make(chan any, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				panicked <- r
				done <- nil
			}
		}()
		_, err := e.compileShapes(first, args...)
		done <- err
	}()
	var shs []shapes.Shape
	select {
	case shs = <-outs: // built by this call or by one alongside it
	case err := <-done:
		select {
		case r := <-panicked:
			panic(r)
		default:
		}
		select {
		case shs = <-outs: // built and compiled before this goroutine looked
			done <- err
		default: // compiled already, or failed before its graph was built
			return 0, false, err
		}
	}
	_, err2 := e.compileShapes(second, next(shs)...)
	err := <-done
	select {
	case r := <-panicked:
		panic(r)
	default:
	}
	if err != nil {
		return 0, false, err
	}
	if err2 != nil {
		return 0, false, err2
	}
	return time.Since(start), true, nil
}

// run executes x with the weights first, then args.
func (e *Engine) run(x *Exec, args ...any) ([]*tensors.Tensor, error) {
	return x.Call(e.Weights.args(args...)...)
}

// Score returns the logits for ids (row-major [B, T]) with the reference semantics (see
// arch.Config.Scoring): block models [B, T/L-1, L, V] (every token of blocks 1..n-1), vanilla
// [B, T, V] (position t predicts t+1).
func (e *Engine) Score(ids []int32, B, T int) ([]float32, []int, error) {
	if err := e.checkScore(ids, B, T); err != nil {
		return nil, nil, err
	}
	x, err := e.exec("score", func(b *builder, in []*Node) []*Node {
		if b.cfg.IsBlock() {
			return []*Node{b.scoreBlock(in[0])}
		}
		return []*Node{b.scoreVanilla(in[0])}
	})
	if err != nil {
		return nil, nil, err
	}
	out, err := e.run(x, tensors.FromFlatDataAndDimensions(ids, B, T))
	if err != nil {
		return nil, nil, err
	}
	defer out[0].FinalizeAll()
	v, err := tensors.CopyFlatData[float32](out[0])
	return v, out[0].Shape().Dimensions, err
}

// checkScore checks B windows of T ids for scoring.
func (e *Engine) checkScore(ids []int32, B, T int) error {
	if len(ids) != B*T || B < 1 || T < 1 {
		return fmt.Errorf("score: %d ids for batch %d x length %d", len(ids), B, T)
	}
	if e.Config.IsBlock() {
		if L := e.Config.BlockLength; T%L != 0 || T < 2*L {
			return errs.Option("Length", T, "must be a multiple of the block length %d and at least two blocks", L)
		}
	}
	return e.checkIDs(ids)
}

// checkIDs rejects ids outside the vocabulary (Gather would clamp them silently).
func (e *Engine) checkIDs(ids []int32) error {
	for i, id := range ids {
		if id < 0 || int(id) >= e.Config.VocabSize {
			return &errs.InputError{Msg: fmt.Sprintf("token id %d (position %d) is outside the vocabulary 0..%d", id, i, e.Config.VocabSize-1)}
		}
	}
	return nil
}

// Windows cuts tokens into non-overlapping windows of w (a trailing partial window is dropped).
func Windows(tokens []int32, w int) [][]int32 {
	var out [][]int32
	for i := 0; i+w <= len(tokens); i += w {
		out = append(out, tokens[i:i+w])
	}
	return out
}
