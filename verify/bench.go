package verify

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"syscall"

	"github.com/olekukonko/tablewriter"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
)

// BenchOptions controls Bench.
type BenchOptions struct {
	Batches   []int
	PromptLen int
	GenLen    int
	Reps      int
	Warmup    int
	Seed      uint64
	Split     bool // time each component of a block model separately
}

// BenchResult is one model at one batch size (the JSON of `verify --bench`).
type BenchResult struct {
	Model         string  `json:"model"`
	Params        int64   `json:"params"`
	Backend       string  `json:"backend"`
	Batch         int     `json:"batch"`
	PromptLen     int     `json:"prompt_len"`
	GenLen        int     `json:"gen_len"`
	PrefillTokS   float64 `json:"prefill_tok_s"`
	PrefillTokMin float64 `json:"prefill_tok_s_min"`
	PrefillTokMax float64 `json:"prefill_tok_s_max"`
	DecodeTokS    float64 `json:"decode_tok_s"`
	DecodeTokSMin float64 `json:"decode_tok_s_min"`
	DecodeTokSMax float64 `json:"decode_tok_s_max"`
	// StepMs is the median time of one executed decode graph (a block, or a token for vanilla).
	StepMs       float64 `json:"step_ms"`
	WeightBytes  int64   `json:"weight_bytes"`
	PeakMemBytes int64   `json:"peak_mem_bytes"`
	// Split is the share of a block's time in each component (block models with Split).
	Split map[string]float64 `json:"split,omitempty"`
}

// Bench measures prefill and decode throughput of m at each batch size. Prompts are seeded random
// ids; generation always runs GenLen tokens (no EOS). Prefill tokens/s counts the prompt tokens
// over the prefill graph (which also emits the first block or token); decode tokens/s counts the
// tokens generated after it over the time of the generation loop.
func Bench(m *graph.Model, name, backend string, o BenchOptions, progress func()) ([]BenchResult, error) {
	cfg := m.Config
	var out []BenchResult
	for _, B := range o.Batches {
		r := rand.New(rand.NewPCG(o.Seed, uint64(B)))
		prompts := make([][]int32, B)
		for b := range prompts {
			prompts[b] = make([]int32, o.PromptLen)
			for i := range prompts[b] {
				prompts[b][i] = int32(1 + r.IntN(cfg.VocabSize-1))
			}
		}
		var pre, dec, steps []float64
		for rep := 0; rep < o.Warmup+o.Reps; rep++ {
			g, err := m.Generate(prompts, graph.GenerateOptions{MaxNewTokens: o.GenLen})
			if err != nil {
				return nil, fmt.Errorf("batch %d: %w", B, err)
			}
			if progress != nil {
				progress()
			}
			if rep < o.Warmup {
				continue
			}
			first := 1
			if cfg.IsBlock() {
				first = cfg.BlockLength
			}
			pre = append(pre, float64(B*len(g.Prompt[0]))/g.PrefillTime.Seconds())
			if g.Steps > 0 {
				dec = append(dec, float64(B*(o.GenLen-first))/g.DecodeTime.Seconds())
				steps = append(steps, g.DecodeTime.Seconds()*1e3/float64(g.Steps))
			}
		}
		res := BenchResult{Model: name, Params: formats.ParamCount(cfg), Backend: backend, Batch: B, PromptLen: o.PromptLen,
			GenLen: o.GenLen, WeightBytes: m.Weights.Bytes}
		res.PrefillTokS, res.PrefillTokMin, res.PrefillTokMax = stats(pre)
		res.DecodeTokS, res.DecodeTokSMin, res.DecodeTokSMax = stats(dec)
		res.StepMs, _, _ = stats(steps)
		if o.Split && cfg.IsBlock() {
			n := (o.PromptLen + o.GenLen + cfg.BlockLength - 1) / cfg.BlockLength
			ct, err := m.TimeComponents(B, n, max(o.Reps, 3))
			if err != nil {
				return nil, err
			}
			tot := (ct.Embedder + ct.BlockDecoder + ct.TokenDecoder).Seconds()
			res.Split = map[string]float64{"embedder": ct.Embedder.Seconds() / tot,
				"block_decoder": ct.BlockDecoder.Seconds() / tot, "token_decoder": ct.TokenDecoder.Seconds() / tot}
		}
		res.PeakMemBytes = peakRSS()
		out = append(out, res)
	}
	return out, nil
}

// stats returns median, min and max (zeros for no samples).
func stats(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

// peakRSS is the process's peak resident memory so far (the pure-Go backend's device memory is the
// process's memory; for XLA it is the host side only).
func peakRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

// PrintBench writes the llama-bench style table, and the Block/vanilla ratio per batch when two
// models were measured.
func PrintBench(w io.Writer, rows []BenchResult) error {
	t := tablewriter.NewWriter(w)
	t.Header("model", "params", "backend", "batch", "test", "t/s", "min - max")
	for _, r := range rows {
		t.Append(r.Model, fmtParams(r.Params), r.Backend, fmt.Sprint(r.Batch), fmt.Sprintf("pp%d", r.PromptLen),
			fmt.Sprintf("%.1f", r.PrefillTokS), fmt.Sprintf("%.1f - %.1f", r.PrefillTokMin, r.PrefillTokMax))
		t.Append(r.Model, fmtParams(r.Params), r.Backend, fmt.Sprint(r.Batch), fmt.Sprintf("tg%d", r.GenLen),
			fmt.Sprintf("%.1f", r.DecodeTokS), fmt.Sprintf("%.1f - %.1f", r.DecodeTokSMin, r.DecodeTokSMax))
	}
	if err := t.Render(); err != nil {
		return err
	}
	var splits []BenchResult
	for _, r := range rows {
		if r.Split != nil {
			splits = append(splits, r)
		}
	}
	if len(splits) > 0 {
		s := tablewriter.NewWriter(w)
		s.Header("model", "batch", "embedder", "block decoder", "token decoder", "decode step ms", "weights", "peak mem")
		for _, r := range splits {
			s.Append(r.Model, fmt.Sprint(r.Batch), pct(r.Split["embedder"]), pct(r.Split["block_decoder"]), pct(r.Split["token_decoder"]),
				fmt.Sprintf("%.2f", r.StepMs), bytesStr(r.WeightBytes), bytesStr(r.PeakMemBytes))
		}
		if err := s.Render(); err != nil {
			return err
		}
	}
	models := map[string][]BenchResult{}
	var names []string
	for _, r := range rows {
		if models[r.Model] == nil {
			names = append(names, r.Model)
		}
		models[r.Model] = append(models[r.Model], r)
	}
	if len(names) == 2 {
		fmt.Fprintf(w, "throughput ratio %s / %s:\n", names[0], names[1])
		rt := tablewriter.NewWriter(w)
		rt.Header("batch", "decode ratio", "prefill ratio")
		for _, a := range models[names[0]] {
			for _, b := range models[names[1]] {
				if a.Batch == b.Batch && b.DecodeTokS > 0 && b.PrefillTokS > 0 {
					rt.Append(fmt.Sprint(a.Batch), fmt.Sprintf("%.2fx", a.DecodeTokS/b.DecodeTokS), fmt.Sprintf("%.2fx", a.PrefillTokS/b.PrefillTokS))
				}
			}
		}
		return rt.Render()
	}
	return nil
}

func pct(x float64) string { return fmt.Sprintf("%.1f %%", 100*x) }

func fmtParams(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f B", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f K", float64(n)/1e3)
}
