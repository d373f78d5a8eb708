package btconvert

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
	"github.com/btconvert/btconvert/internal/runner"
	"github.com/btconvert/btconvert/verify"
	"github.com/btconvert/btconvert/verify/bench"
)

// BenchOptions controls Bench.
type BenchOptions struct {
	// Models are measured interleaved (the first one opened with Open); two models also get their
	// throughput ratio.
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
	// JSONFile, when set, is rewritten with every row measured so far after each row (so an
	// interrupted run keeps them); Plot, when set, is drawn at the end. Both are checked before
	// anything is measured; Force replaces what btconvert wrote there before.
	JSONFile, Plot string
	Force          bool
	// OnResult, if set, receives each result as soon as it is measured.
	OnResult func(bench.Result)
	UI       UI
}

// Defaults fills what o leaves unset, sized for the backend: a few minutes on a 2-core CPU with
// the pure-Go backend, the paper's sizes on an accelerator.
func Defaults(o bench.Options, spec string) bench.Options {
	cpu := onCPU(spec)
	if len(o.Batches) == 0 {
		o.Batches = []int{16, 64, 256}
		if cpu {
			o.Batches = []int{1, 4}
		}
	}
	if len(o.PromptLens) == 0 && len(o.Pairs) == 0 {
		o.PromptLens = []int{128}
	}
	if len(o.GenLens) == 0 && len(o.Pairs) == 0 {
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

// onCPU reports a backend spec that runs on this machine's processors and memory.
func onCPU(spec string) bool { return strings.HasPrefix(spec, "go") || strings.Contains(spec, "cpu") }

// work is what the bench will run (for auto), sized with the CPU defaults: every model, batch
// and length, warm-up and repetitions, a prefill and a step graph each.
func (o *BenchOptions) work() backend.Work {
	opts := Defaults(o.Options, "go")
	runs := int64(opts.Reps + max(opts.Warmup, 0))
	w := backend.Work{WeightBytes: runner.WeightsOnDisk(o.Models...)}
	tests := opts.Lengths()
	for _, t := range tests {
		w.Tokens += int64(len(opts.Batches)) * int64(t[0]+t[1]) * runs
	}
	w.Graphs, w.Throughput = 2*len(tests)*len(opts.Batches)*len(o.Models), true
	return w
}

// Bench measures generation throughput of each model.
func Bench(o BenchOptions) ([]bench.Result, error) {
	ui := orSilent(o.UI)
	if len(o.Models) == 0 {
		return nil, errs.Option("Models", nil, "give at least one model")
	}
	if o.Plot != "" && filepath.Ext(o.Plot) != ".png" {
		return nil, errs.Option("Plot", o.Plot, "must end in .png")
	}
	in := []string{o.Open.Config}
	for _, m := range o.Models {
		in = append(in, outputs.ModelInputs(m)...)
	}
	if err := outputs.CheckFiles(o.Force, in, outputs.Output{Path: o.JSONFile, Kind: bench.JSONFile}, outputs.Output{Path: o.Plot, Kind: bench.PlotFile}); err != nil {
		return nil, err
	}
	dev, err := o.Runtime.start(ui, o.work())
	if err != nil {
		return nil, err
	}
	spec := dev.Spec
	opts := Defaults(o.Options, spec)
	budget := o.MemBudget
	if budget == 0 {
		budget = runner.MemoryFor() * 8 / 10
	}
	// On a CPU the budget is this machine's memory: more than is available would let a run
	// allocate until the system kills it. (A GPU's memory is its own; its runtime refuses what
	// does not fit.)
	if avail := runner.MemoryFor(); onCPU(spec) && avail > 0 && budget > avail {
		return nil, errs.Option("MemBudget", humanize.IBytes(uint64(budget)), "more than the %s of memory available on this machine", humanize.IBytes(uint64(avail)))
	}
	opts.MemBudget = budget
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var models []bench.Model
	defer func() {
		for _, m := range models {
			m.Engine.Close()
		}
	}()
	runtime.GC()
	debug.FreeOSMemory()
	longest := 0
	for _, P := range opts.PromptLens {
		for _, G := range opts.GenLens {
			longest = max(longest, P+G)
		}
	}
	for _, p := range opts.Pairs {
		longest = max(longest, p[0]+p[1])
	}
	for i, p := range o.Models {
		open := formats.OpenOptions{}
		if i == 0 {
			open = o.Open
		}
		l, err := dev.Load(p, open)
		if err != nil {
			return nil, err
		}
		l.Src.Close() // the engine holds the weights
		models = append(models, bench.Model{Name: outputs.ModelName(p), Engine: l.Eng})
		if mt := l.Eng.Config.MaxTokens(); mt > 0 && longest > mt {
			ui.Note("warning: " + p + ": prompt plus generation is " + humanize.Comma(int64(longest)) + " tokens, past the " + humanize.Comma(int64(mt)) + " the model was built for")
		}
		if o.MaxBatch {
			mb := l.Eng.MaxBatch(longest, budget)
			if mb < 1 {
				return nil, errs.Option("MemBudget", humanize.IBytes(uint64(budget)), "%s does not fit even at batch 1", p)
			}
			ui.Note(p + ": largest batch in " + humanize.IBytes(uint64(budget)) + ": " + humanize.Comma(int64(mb)))
			if i == 0 || mb < opts.Batches[0] {
				opts.Batches = []int{mb} // interleaved models share the batch: the one that fits both
			}
		}
	}
	// The bar starts with the first warm-up, which compiles (seconds on XLA before any token).
	steps := benchSteps(opts, len(models), dev)
	bar := ui.Progress("bench", steps[len(steps)-1].end, "tokens")
	bar.Add(0, steps[0].item)
	var last int64
	var rows []bench.Result
	var saveErr error
	res, err := bench.Run(models, spec, runtime.GOMAXPROCS(0), opts, func(r bench.Result) {
		rows = append(rows, r)
		if cv := r.CV(); cv > bench.Noisy {
			ui.Note(fmt.Sprintf("warning: %s, batch %d: the repetitions disagree by %.0f %% (coefficient of variation): the machine was busy, the figures are not reliable",
				r.Model, r.Batch, 100*cv))
		}
		if o.JSONFile != "" && saveErr == nil {
			saveErr = saveRows(o.JSONFile, rows)
		}
		if o.OnResult != nil {
			o.OnResult(r)
		}
	}, func(done, _ int64) {
		bar.Add(done-last, "")
		last = done
		// What runs next: the item changes as a test's last token is counted, before the next
		// test's warm-up compiles.
		for _, s := range steps {
			if done < s.end {
				bar.Add(0, s.item)
				break
			}
		}
	})
	bar.Done()
	if err == nil {
		err = saveErr
	}
	if err == nil && o.Plot != "" && len(res) > 0 {
		if err = PlotBench(o.Plot, res); err == nil {
			ui.Note("plot: " + o.Plot)
		}
	}
	return res, err
}

// benchStep is a stretch of the bench's tokens (bench.Run's order: each length, each batch, the
// warm-ups then each repetition of every model) and what the bar calls it.
type benchStep struct {
	end  int64 // the tokens counted when it ends
	item string
}

// benchSteps lists the stretches of a bench of models with opts, with the total at the end.
func benchSteps(opts bench.Options, models int, dev *runner.Device) []benchStep {
	tests := opts.Lengths()
	var steps []benchStep
	var end int64
	for _, t := range tests {
		for _, B := range opts.Batches {
			name := fmt.Sprintf("batch %d", B)
			if len(tests) > 1 {
				name = fmt.Sprintf("pp%d tg%d, %s", t[0], t[1], name)
			}
			run := int64(B) * int64(t[0]+t[1]) * int64(models)
			if opts.Warmup > 0 {
				end += run * int64(opts.Warmup)
				item := name + ", warm-up"
				if c := runner.Compiling(dev); c != "" {
					item += ", " + c
				}
				steps = append(steps, benchStep{end, item})
			}
			for r := 1; r <= opts.Reps; r++ {
				end += run
				item := fmt.Sprintf("%s, rep %d/%d", name, r, opts.Reps)
				if c := runner.Compiling(dev); c != "" && r == 1 && opts.Warmup == 0 {
					item += ", " + c
				}
				steps = append(steps, benchStep{end, item})
			}
		}
	}
	return steps
}

// PlotBench draws rows as Bench does at its end (an interrupted bench draws what it finished),
// replacing a plot of its own at path.
func PlotBench(path string, rows []bench.Result) error {
	device := "CPU"
	if len(rows) > 0 && strings.Contains(rows[0].Backend, "cuda") {
		device = "GPU"
	}
	return bench.Plot(path, rows, device, true)
}

// saveRows writes the rows measured so far as the bench's JSON ({"bench": rows}), replacing the
// previous save.
func saveRows(path string, rows []bench.Result) error {
	js, err := verify.EncodeJSON(map[string]any{"bench": rows})
	if err == nil {
		_, err = fsio.WriteOutput(path, js, true, bench.JSONFile)
	}
	return err
}
