package backend

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Work is what a run will compute, for auto to weigh XLA's compile against what it saves on a
// CPU. The zero Work says nothing: auto then picks the fastest backend installed.
type Work struct {
	WeightBytes int64 // the weights of every model the run loads
	Tokens      int64 // positions the run puts through its models (a decode step counts once)
	Graphs      int   // distinct generation graphs (prefill, step) the run compiles
	// Forwards are distinct graphs that are one forward pass over a batch of windows (scoring,
	// calibration): no unrolled token decoder, so about half a generation graph's compile.
	Forwards int
	// Throughput marks a run that measures the backend's pace (a bench): XLA keeps its full
	// optimization whatever the run's length.
	Throughput bool
}

// The rule's figures, measured on a 2-core x86-64 (docs/BENCHMARKS.md, "What auto picks"): XLA's
// CPU plugin compiles one of btconvert's generation graphs in 1 - 4 s (the larger the model, the
// longer) and a scoring forward in 0.6 - 0.9 s, then runs about twice the go backend's pace; the
// go backend gets through about 30 GB of weights times tokens a second (decode at batch 1, the
// slowest case per token).
const (
	compileSecondsPerGraph   = 1.5
	compileSecondsPerForward = 0.75
	goWeightTokensPerS       = 30e9
	xlaSpeedup               = 2.0
)

// estimate is the go backend's time for the work and what XLA's compile would cost, in seconds.
func (w Work) estimate() (goS, compileS float64) {
	goS = float64(w.WeightBytes) * float64(w.Tokens) / goWeightTokensPerS
	compileS = compileSecondsPerGraph*float64(w.Graphs) + compileSecondsPerForward*float64(w.Forwards)
	return goS, max(compileS, compileSecondsPerForward)
}

// xlaPays reports whether XLA's CPU plugin finishes the work sooner than the go backend, compile
// included; true for a zero Work.
func (w Work) xlaPays() bool {
	if w == (Work{}) {
		return true
	}
	goS, compileS := w.estimate()
	return goS-goS/xlaSpeedup > compileS
}

// quickCompile reports whether XLA's CPU plugin finishes the work sooner at optimization level 0:
// it compiles in about half the time, and runs a third to half slower (a small model's decode as
// fast; docs/BENCHMARKS.md, "What auto picks"), which pays where the run on XLA would take less
// than its compile. False for a zero Work.
func (w Work) quickCompile() bool {
	if w == (Work{}) || w.Throughput {
		return false
	}
	goS, compileS := w.estimate()
	return goS/xlaSpeedup < compileS
}

// quickFlag is the XLA flag of the quick compile.
const quickFlag = "--xla_backend_optimization_level=0"

// quick records whether this process asked XLA for the quick compile, and whether a plugin was
// loaded before it could: the plugin reads XLA_FLAGS once, so the level is the process's.
var quick struct {
	sync.Mutex
	allowed, set, loaded bool
}

// AllowQuickCompile lets a short run on XLA's CPU plugin ask for its quick compile, which sets
// XLA_FLAGS in this process's environment (the command line allows it; a Go program decides).
func AllowQuickCompile() {
	quick.Lock()
	defer quick.Unlock()
	quick.allowed = true
}

// useQuickCompile puts the quick compile into XLA_FLAGS for this process unless the user's
// XLA_FLAGS choose a level or a plugin is already loaded; it returns the note for the backend
// line ("" when it did not).
func useQuickCompile() string {
	quick.Lock()
	defer quick.Unlock()
	flags := os.Getenv("XLA_FLAGS")
	if !quick.allowed || quick.loaded || strings.Contains(flags, "xla_backend_optimization_level") {
		return ""
	}
	if !quick.set {
		os.Setenv("XLA_FLAGS", strings.TrimSpace(flags+" "+quickFlag))
		quick.set = true
	}
	return "a short run: XLA compiles at optimization level 0, in about half the time (XLA_FLAGS=--xla_backend_optimization_level=3, its default, for its full optimization)"
}

// QuickCompile reports whether this process's XLA compiles at optimization level 0 because a
// short run asked for it (useQuickCompile).
func QuickCompile() bool {
	quick.Lock()
	defer quick.Unlock()
	return quick.set && strings.Contains(os.Getenv("XLA_FLAGS"), quickFlag)
}

// ChooseFor is Choose for a run of the given work: where auto would pick XLA's CPU plugin and its
// compile would take longer than it saves, the run goes to the go backend, and why says so. A
// GPU plugin and an explicit spec are kept as Choose gives them.
func ChooseFor(spec string, w Work) (chosen, why string) {
	chosen, why = Choose(spec)
	if spec != Auto || chosen != "xla:cpu" || w.xlaPays() {
		return chosen, why
	}
	_, compileS := w.estimate()
	return "go", fmt.Sprintf("auto: too short a run for XLA's compile (about %.0f s); --backend xla:cpu forces it", compileS)
}

// AutoRule says in words how auto weighs the work (for `btconvert backends`).
const AutoRule = "auto runs a command on XLA's CPU plugin only where its compile (about 1.5 s a generation graph, 0.75 s a scoring one) takes less than it saves: " +
	"XLA runs about twice the go backend's pace, and the go backend gets through about 30 GB of weights (a quantized model's counted as float32) times tokens a second; " +
	"small models and short runs stay on go. A short run asked of XLA's CPU plugin (--backend xla:cpu) compiles at XLA's optimization level 0, " +
	"in about half the time, unless XLA_FLAGS choose a level"
