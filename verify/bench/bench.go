// Package bench measures generation throughput the way llama-bench does (prefill and decode
// tokens/s over repeated runs, per batch size and length), splits a Block Transformer's step time
// between its components, estimates the memory a run needs and finds the largest batch that fits,
// and draws the results.
package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/sysmem"
)

// JSONFile is the kind of file the bench's rows are saved to ({"bench": rows}): --force replaces
// a JSON file only when it is such a save.
var JSONFile = fsio.JSONKind("bench JSON", "bench")

// Options controls Run.
type Options struct {
	Batches    []int
	PromptLens []int // llama-bench -p: every prompt length is measured with every generation length
	GenLens    []int // llama-bench -n
	// Pairs are prompt and generation lengths measured as one test each (llama-bench -pg), besides
	// the PromptLens x GenLens grid (which may then be empty).
	Pairs  [][2]int
	Reps   int
	Warmup int
	Seed   uint64
	Split  bool // time each component of a block model separately
	// MemBudget (> 0) refuses a measurement whose estimated memory exceeds it, before allocating.
	MemBudget int64
}

// MaxReps bounds the measured (and the warm-up) repetitions of one test.
const MaxReps = 1000

// Validate checks the options.
func (o *Options) Validate() error {
	if len(o.Pairs) == 0 || len(o.PromptLens)+len(o.GenLens) > 0 {
		for _, l := range []struct {
			name string
			v    []int
			min  int
		}{{"PromptLens", o.PromptLens, 1}, {"GenLens", o.GenLens, 2}} {
			if len(l.v) == 0 {
				return errs.Option(l.name, nil, "give at least one")
			}
			for _, x := range l.v {
				if x < l.min || x > 1<<24 {
					return errs.Option(l.name, x, "must be between %d and %d", l.min, 1<<24)
				}
			}
		}
	}
	for _, p := range o.Pairs {
		if p[0] < 1 || p[1] < 2 || p[0] > 1<<24 || p[1] > 1<<24 {
			return errs.Option("Pairs", fmt.Sprintf("%d,%d", p[0], p[1]), "want a prompt of at least 1 token and a generation of at least 2")
		}
	}
	if len(o.Batches) == 0 {
		return errs.Option("Batches", nil, "give at least one")
	}
	for _, b := range o.Batches {
		if b < 1 || b > 1<<24 {
			return errs.Option("Batches", b, "must be between 1 and %d", 1<<24)
		}
	}
	// A median needs a few repetitions, not millions: past MaxReps a run would not end.
	if o.Reps < 1 || o.Reps > MaxReps {
		return errs.Option("Reps", o.Reps, "must be between 1 and %d", MaxReps)
	}
	if o.Warmup < 0 || o.Warmup > MaxReps {
		return errs.Option("Warmup", o.Warmup, "must be between 0 and %d", MaxReps)
	}
	return nil
}

// tests are the (prompt, generation) lengths to measure: the grid, then the pairs.
func (o *Options) tests() []test {
	var out []test
	for _, P := range o.PromptLens {
		for _, G := range o.GenLens {
			out = append(out, test{P, G, false})
		}
	}
	for _, p := range o.Pairs {
		out = append(out, test{p[0], p[1], true})
	}
	return out
}

// Lengths are the (prompt, generation) lengths of each test, in the order Run measures them.
func (o *Options) Lengths() [][2]int {
	var out [][2]int
	for _, t := range o.tests() {
		out = append(out, [2]int{t.P, t.G})
	}
	return out
}

type test struct {
	P, G int
	pair bool // measured as one test (prompt then generation)
}

// Result is one model at one batch size and length (the JSON of `verify --bench`).
type Result struct {
	Model     string `json:"model"`
	Params    int64  `json:"params"`
	Backend   string `json:"backend"`
	Threads   int    `json:"threads"`
	Batch     int    `json:"batch"`
	PromptLen int    `json:"prompt_len"`
	GenLen    int    `json:"gen_len"`
	Reps      int    `json:"reps"`
	// Tokens/s: median, mean, standard deviation, min and max over the measured repetitions.
	PrefillTokS    float64 `json:"prefill_tok_s"`
	PrefillTokMean float64 `json:"prefill_tok_s_mean"`
	PrefillTokStd  float64 `json:"prefill_tok_s_std"`
	PrefillTokMin  float64 `json:"prefill_tok_s_min"`
	PrefillTokMax  float64 `json:"prefill_tok_s_max"`
	DecodeTokS     float64 `json:"decode_tok_s"`
	DecodeTokSMean float64 `json:"decode_tok_s_mean"`
	DecodeTokSStd  float64 `json:"decode_tok_s_std"`
	DecodeTokSMin  float64 `json:"decode_tok_s_min"`
	DecodeTokSMax  float64 `json:"decode_tok_s_max"`
	// Pair is a -pg test: TotalTokS is its prompt and generated tokens over the whole run.
	Pair         bool    `json:"pair,omitempty"`
	TotalTokS    float64 `json:"total_tok_s,omitempty"`
	TotalTokSStd float64 `json:"total_tok_s_std,omitempty"`
	// StepMs is the median time of one executed decode graph (a block, or a token for vanilla).
	StepMs float64 `json:"step_ms"`
	// CompileS is what the first warm-up run took beyond a measured one: building and compiling
	// this batch's graphs (0 without a warm-up).
	CompileS      float64 `json:"compile_s"`
	WeightBytes   int64   `json:"weight_bytes"`
	EstimateBytes int64   `json:"estimate_bytes"`
	// PeakMemBytes is the process's peak resident memory during this model's warm-up, less the
	// weights of the other models loaded beside it (the pure-Go backend's device memory is the
	// process's memory; for XLA it is the host side only).
	PeakMemBytes int64 `json:"peak_mem_bytes"`
	// Split is the share of a block's time in each component (block models with Split).
	Split map[string]float64 `json:"split,omitempty"`
}

// Model is one model to measure.
type Model struct {
	Name   string
	Engine *graph.Engine
}

// Run measures prefill and decode throughput of each model at each batch size and length. The
// models are measured interleaved (A B A B ... for each repetition), so that a change of load on
// the machine hits all of them alike and cannot flip their ratio. onResult (if set) receives each
// row as it is finished. Prompts are seeded random ids; generation always runs GenLen tokens (no
// EOS). Prefill tokens/s counts the prompt tokens over the prefill graph (which also emits the
// first block or token); decode tokens/s counts the tokens generated after it over the time of
// the generation loop. progress (if set) is told generated tokens as they are generated, against
// the total of the whole run.
func Run(models []Model, backend string, threads int, o Options, onResult func(Result), progress func(done, total int64)) ([]Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	tests := o.tests()
	for _, m := range models {
		cfg := m.Engine.Config
		for _, t := range tests {
			if cfg.IsBlock() && t.G < 2*cfg.BlockLength {
				return nil, errs.Option("GenLens", t.G, "%s generates whole blocks of %d tokens: measure decode with at least %d (two blocks)", m.Name, cfg.BlockLength, 2*cfg.BlockLength)
			}
		}
	}
	var total, done int64
	for _, B := range o.Batches {
		for _, t := range tests {
			total += int64(B) * int64(t.P+t.G) * int64(o.Reps+o.Warmup) * int64(len(models))
		}
	}
	tick := func(n int64) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}
	var weights int64
	for _, m := range models {
		weights += m.Engine.Weights.Bytes
	}
	var out []Result
	for _, t := range tests {
		for _, B := range o.Batches {
			ms := make([]*measure, len(models))
			for i, m := range models {
				est := m.Engine.Estimate(B, t.P+t.G)
				if o.MemBudget > 0 && est > o.MemBudget {
					return out, errs.Option("Batches", B, "at prompt %d + generation %d needs about %s, over the memory budget of %s",
						t.P, t.G, bytesStr(est), bytesStr(o.MemBudget))
				}
				ms[i] = newMeasure(m, B, t, o.Seed)
				ms[i].est = est
			}
			// Warm-up (compiles), each model alone, for its own peak memory.
			for i, m := range models {
				sysmem.ResetPeakRSS()
				for rep := 0; rep < o.Warmup; rep++ {
					if err := ms[i].run(false, tick); err != nil {
						return out, fmt.Errorf("%s, batch %d: %w", m.Name, B, err)
					}
				}
				ms[i].peak = sysmem.PeakRSS() - (weights - m.Engine.Weights.Bytes)
			}
			for rep := 0; rep < o.Reps; rep++ {
				for i, m := range models {
					if err := ms[i].run(true, tick); err != nil {
						return out, fmt.Errorf("%s, batch %d: %w", m.Name, B, err)
					}
				}
			}
			for i, m := range models {
				r, err := ms[i].result(backend, threads, o)
				if err != nil {
					return out, fmt.Errorf("%s, batch %d: %w", m.Name, B, err)
				}
				out = append(out, *r)
				if onResult != nil {
					onResult(*r)
				}
			}
		}
	}
	return out, nil
}

// measure is one model's repetitions of one test at one batch size.
type measure struct {
	m               Model
	B               int
	t               test
	prompts         [][]int32
	pre, dec, steps []float64
	tot, wall       []float64
	first           float64 // seconds of the first warm-up run
	est, peak       int64
}

func newMeasure(m Model, B int, t test, seed uint64) *measure {
	cfg := m.Engine.Config
	r := rand.New(rand.NewPCG(seed, uint64(B)))
	prompts := make([][]int32, B)
	for b := range prompts {
		prompts[b] = make([]int32, t.P)
		for i := range prompts[b] {
			prompts[b][i] = int32(1 + r.IntN(cfg.VocabSize-1))
		}
	}
	return &measure{m: m, B: B, t: t, prompts: prompts}
}

func (ms *measure) run(keep bool, tick func(int64)) error {
	cfg := ms.m.Engine.Config
	first := 1
	if cfg.IsBlock() {
		first = cfg.BlockLength
	}
	start := time.Now()
	g, err := ms.m.Engine.Generate(ms.prompts, graph.GenerateOptions{MaxNewTokens: ms.t.G, OnTokens: func(rows [][]int32) {
		tick(int64(len(rows) * len(rows[0])))
	}})
	if err != nil {
		return err
	}
	wall := time.Since(start).Seconds()
	tick(int64(ms.B * ms.t.P))
	if !keep {
		if ms.first == 0 {
			ms.first = wall
		}
		return nil
	}
	ms.wall = append(ms.wall, wall)
	ms.pre = append(ms.pre, float64(ms.B*len(g.Prompt[0]))/g.PrefillTime.Seconds())
	if g.Steps > 0 {
		ms.dec = append(ms.dec, float64(ms.B*(ms.t.G-first))/g.DecodeTime.Seconds())
		ms.steps = append(ms.steps, g.DecodeTime.Seconds()*1e3/float64(g.Steps))
	}
	ms.tot = append(ms.tot, float64(ms.B*(len(g.Prompt[0])+ms.t.G))/(g.PrefillTime+g.DecodeTime).Seconds())
	return nil
}

func (ms *measure) result(backend string, threads int, o Options) (*Result, error) {
	e, cfg := ms.m.Engine, ms.m.Engine.Config
	res := &Result{Model: ms.m.Name, Params: arch.ParamCount(cfg), Backend: backend, Threads: threads, Batch: ms.B, PromptLen: ms.t.P, GenLen: ms.t.G,
		Reps: o.Reps, WeightBytes: e.Weights.Bytes, EstimateBytes: ms.est, PeakMemBytes: ms.peak, Pair: ms.t.pair}
	res.PrefillTokS, res.PrefillTokMean, res.PrefillTokStd, res.PrefillTokMin, res.PrefillTokMax = stats(ms.pre)
	res.DecodeTokS, res.DecodeTokSMean, res.DecodeTokSStd, res.DecodeTokSMin, res.DecodeTokSMax = stats(ms.dec)
	res.StepMs, _, _, _, _ = stats(ms.steps)
	if wall, _, _, _, _ := stats(ms.wall); ms.first > 0 {
		res.CompileS = max(0, ms.first-wall)
	}
	if ms.t.pair {
		res.TotalTokS, _, res.TotalTokSStd, _, _ = stats(ms.tot)
	}
	if o.Split && cfg.IsBlock() {
		n := (ms.t.P + ms.t.G + cfg.BlockLength - 1) / cfg.BlockLength
		ct, err := e.TimeComponents(ms.B, n, max(o.Reps, 3))
		if err != nil {
			return nil, err
		}
		tot := (ct.Embedder + ct.BlockDecoder + ct.TokenDecoder).Seconds()
		res.Split = map[string]float64{"embedder": ct.Embedder.Seconds() / tot,
			"block_decoder": ct.BlockDecoder.Seconds() / tot, "token_decoder": ct.TokenDecoder.Seconds() / tot}
	}
	return res, nil
}

// stats returns median, mean, standard deviation, min and max (zeros for no samples).
func stats(v []float64) (med, mean, std, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0, 0, 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	mean, std = stat.MeanStdDev(s, nil)
	if len(s) < 2 {
		std = 0
	}
	return median(s), mean, std, s[0], s[len(s)-1]
}

// median of sorted values: the middle one, or the mean of the middle two.
func median(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Noisy is the coefficient of variation (sd / mean) over which repetitions are taken to disagree:
// the machine was busy, and the figures are not to be trusted as they are.
const Noisy = 0.10

// CV is the larger coefficient of variation of the prefill and decode figures.
func (r Result) CV() float64 {
	cv := func(mean, std float64) float64 {
		if mean <= 0 {
			return 0
		}
		return std / mean
	}
	return max(cv(r.PrefillTokMean, r.PrefillTokStd), cv(r.DecodeTokSMean, r.DecodeTokSStd))
}
