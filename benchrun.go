package btconvert

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/verify/bench"
)

// BenchOptions controls Bench.
type BenchOptions struct {
	// Models are measured one after the other (the first one with Open); two models also get
	// their throughput ratio.
	Models []string
	Open   formats.OpenOptions
	Runtime
	// Options are the batches, lengths and repetitions; empty lists and zero counts take the
	// defaults of the backend (Defaults).
	bench.Options
	// MaxBatch measures each model at the largest batch whose estimated memory fits MemBudget.
	MaxBatch bool
	// MemBudget bounds the memory a measurement may need (0: 80 % of the available memory).
	MemBudget int64
	// OnResult, if set, receives each result as soon as it is measured.
	OnResult func(bench.Result)
	UI       UI
}

// Defaults fills what o leaves unset, sized for the backend: a few minutes on a 2-core CPU with
// the pure-Go backend, the paper's sizes on an accelerator.
func Defaults(o bench.Options, spec string) bench.Options {
	cpu := strings.HasPrefix(spec, "go") || strings.Contains(spec, "cpu")
	if len(o.Batches) == 0 {
		o.Batches = []int{16, 64, 256}
		if cpu {
			o.Batches = []int{1, 4}
		}
	}
	if len(o.PromptLens) == 0 {
		o.PromptLens = []int{128}
	}
	if len(o.GenLens) == 0 {
		o.GenLens = []int{256}
		if cpu {
			o.GenLens = []int{64}
		}
	}
	if o.Reps == 0 {
		o.Reps = 5
		if cpu {
			o.Reps = 2
		}
	}
	return o
}

// Bench measures generation throughput of each model.
func Bench(o BenchOptions) ([]bench.Result, error) {
	ui := orSilent(o.UI)
	if len(o.Models) == 0 {
		return nil, errs.Option("Models", nil, "give at least one model")
	}
	dev, err := o.Runtime.start(ui)
	if err != nil {
		return nil, err
	}
	spec := dev.spec
	opts := Defaults(o.Options, spec)
	budget := o.MemBudget
	if budget == 0 {
		budget = memoryFor() * 8 / 10
	}
	opts.MemBudget = budget
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var rows []bench.Result
	for i, p := range o.Models {
		open := formats.OpenOptions{}
		if i == 0 {
			open = o.Open
		}
		runtime.GC()
		debug.FreeOSMemory()
		bench.ResetPeakRSS() // each model's peak is its own
		l, err := dev.load(p, open)
		if err != nil {
			return rows, err
		}
		mo := opts
		for _, P := range opts.PromptLens {
			for _, G := range opts.GenLens {
				if mt := l.eng.Config.MaxTokens(); mt > 0 && P+G > mt {
					ui.Note("warning: " + p + ": prompt plus generation is " + humanize.Comma(int64(P+G)) + " tokens, past the " + humanize.Comma(int64(mt)) + " the model was built for")
				}
			}
		}
		if o.MaxBatch {
			longest := 0
			for _, P := range opts.PromptLens {
				for _, G := range opts.GenLens {
					longest = max(longest, P+G)
				}
			}
			mb := bench.MaxBatch(l.eng.Config, l.eng.Weights.Bytes, dev.dt.Size(), longest, budget)
			if mb < 1 {
				l.Close()
				return rows, errs.Option("MemBudget", humanize.IBytes(uint64(budget)), "%s does not fit even at batch 1", p)
			}
			ui.Note(p + ": largest batch in " + humanize.IBytes(uint64(budget)) + ": " + humanize.Comma(int64(mb)))
			mo.Batches = []int{mb}
		}
		var bar Bar
		var last int64
		res, err := bench.Run(l.eng, modelName(p), spec, mo, o.OnResult, func(done, total int64) {
			if bar == nil {
				bar = ui.Progress("bench "+modelName(p), total, "tokens")
			}
			bar.Add(done-last, "")
			last = done
		})
		if bar != nil {
			bar.Done()
		}
		l.Close()
		rows = append(rows, res...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}
