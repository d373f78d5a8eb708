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

	"gonum.org/v1/gonum/stat"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/graph"
)

// Options controls Run.
type Options struct {
	Batches    []int
	PromptLens []int // llama-bench -p: every prompt length is measured with every generation length
	GenLens    []int // llama-bench -n
	Reps       int
	Warmup     int
	Seed       uint64
	Split      bool // time each component of a block model separately
	// MemBudget (> 0) refuses a measurement whose estimated memory exceeds it, before allocating.
	MemBudget int64
}

// Validate checks the options.
func (o *Options) Validate() error {
	for _, l := range []struct {
		name string
		v    []int
		min  int
	}{{"Batches", o.Batches, 1}, {"PromptLens", o.PromptLens, 1}, {"GenLens", o.GenLens, 2}} {
		if len(l.v) == 0 {
			return errs.Option(l.name, nil, "give at least one")
		}
		for _, x := range l.v {
			if x < l.min || x > 1<<24 {
				return errs.Option(l.name, x, "must be between %d and %d", l.min, 1<<24)
			}
		}
	}
	if o.Reps < 1 {
		return errs.Option("Reps", o.Reps, "must be at least 1")
	}
	if o.Warmup < 0 {
		return errs.Option("Warmup", o.Warmup, "must not be negative")
	}
	return nil
}

// Result is one model at one batch size and length (the JSON of `verify --bench`).
type Result struct {
	Model     string `json:"model"`
	Params    int64  `json:"params"`
	Backend   string `json:"backend"`
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
	// StepMs is the median time of one executed decode graph (a block, or a token for vanilla).
	StepMs        float64 `json:"step_ms"`
	WeightBytes   int64   `json:"weight_bytes"`
	EstimateBytes int64   `json:"estimate_bytes"`
	// PeakMemBytes is the process's peak resident memory while this model ran (the pure-Go
	// backend's device memory is the process's memory; for XLA it is the host side only).
	PeakMemBytes int64 `json:"peak_mem_bytes"`
	// Split is the share of a block's time in each component (block models with Split).
	Split map[string]float64 `json:"split,omitempty"`
}

// Run measures prefill and decode throughput of e at each batch size and length, calling onResult
// (if set) as each row is finished. Prompts are seeded random ids; generation always runs GenLen
// tokens (no EOS). Prefill tokens/s counts the prompt tokens over the prefill graph (which also
// emits the first block or token); decode tokens/s counts the tokens generated after it over the
// time of the generation loop. progress (if set) is told generated tokens as they are generated,
// against the total of the whole run.
func Run(e *graph.Engine, name, backend string, o Options, onResult func(Result), progress func(done, total int64)) ([]Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg := e.Config
	var total, done int64
	for _, B := range o.Batches {
		for _, P := range o.PromptLens {
			for _, G := range o.GenLens {
				total += int64(B) * int64(P+G) * int64(o.Reps+o.Warmup)
			}
		}
	}
	var out []Result
	for _, P := range o.PromptLens {
		for _, G := range o.GenLens {
			for _, B := range o.Batches {
				est := Estimate(cfg, e.Weights.Bytes, e.DType.Size(), B, P+G)
				if o.MemBudget > 0 && est > o.MemBudget {
					return out, errs.Option("Batches", B, "at prompt %d + generation %d needs about %s, over the memory budget of %s",
						P, G, bytesStr(est), bytesStr(o.MemBudget))
				}
				r, err := runOne(e, name, backend, o, B, P, G, func(n int64) {
					done += n
					if progress != nil {
						progress(done, total)
					}
				})
				if err != nil {
					return out, fmt.Errorf("batch %d: %w", B, err)
				}
				r.EstimateBytes = est
				out = append(out, *r)
				if onResult != nil {
					onResult(*r)
				}
			}
		}
	}
	return out, nil
}

func runOne(e *graph.Engine, name, backend string, o Options, B, P, G int, progress func(n int64)) (*Result, error) {
	cfg := e.Config
	r := rand.New(rand.NewPCG(o.Seed, uint64(B)))
	prompts := make([][]int32, B)
	for b := range prompts {
		prompts[b] = make([]int32, P)
		for i := range prompts[b] {
			prompts[b][i] = int32(1 + r.IntN(cfg.VocabSize-1))
		}
	}
	first := 1
	if cfg.IsBlock() {
		first = cfg.BlockLength
	}
	var pre, dec, steps []float64
	for rep := 0; rep < o.Warmup+o.Reps; rep++ {
		g, err := e.Generate(prompts, graph.GenerateOptions{MaxNewTokens: G, OnTokens: func(rows [][]int32) {
			progress(int64(len(rows) * len(rows[0])))
		}})
		if err != nil {
			return nil, err
		}
		progress(int64(B * P))
		if rep < o.Warmup {
			continue
		}
		pre = append(pre, float64(B*len(g.Prompt[0]))/g.PrefillTime.Seconds())
		if g.Steps > 0 {
			dec = append(dec, float64(B*(G-first))/g.DecodeTime.Seconds())
			steps = append(steps, g.DecodeTime.Seconds()*1e3/float64(g.Steps))
		}
	}
	res := &Result{Model: name, Params: arch.ParamCount(cfg), Backend: backend, Batch: B, PromptLen: P, GenLen: G, Reps: o.Reps,
		WeightBytes: e.Weights.Bytes}
	res.PrefillTokS, res.PrefillTokMean, res.PrefillTokStd, res.PrefillTokMin, res.PrefillTokMax = stats(pre)
	res.DecodeTokS, res.DecodeTokSMean, res.DecodeTokSStd, res.DecodeTokSMin, res.DecodeTokSMax = stats(dec)
	res.StepMs, _, _, _, _ = stats(steps)
	if o.Split && cfg.IsBlock() {
		n := (P + G + cfg.BlockLength - 1) / cfg.BlockLength
		ct, err := e.TimeComponents(B, n, max(o.Reps, 3))
		if err != nil {
			return nil, err
		}
		tot := (ct.Embedder + ct.BlockDecoder + ct.TokenDecoder).Seconds()
		res.Split = map[string]float64{"embedder": ct.Embedder.Seconds() / tot,
			"block_decoder": ct.BlockDecoder.Seconds() / tot, "token_decoder": ct.TokenDecoder.Seconds() / tot}
	}
	res.PeakMemBytes = PeakRSS()
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
