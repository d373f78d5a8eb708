package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/verify/bench"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "prove numerical parity, measure quality, or benchmark throughput",
		ArgsUsage: "MODEL",
		Description: `MODEL is a btconvert folder, a .btz bundle or anything import reads. With no other flag, verify
runs the self-check: logits of KV-cached generation against the full forward on seeded random prompts.

  --reference FILE   compare logits and greedy tokens with a reference.safetensors
  --eval-text FILE   perplexity of a text (± standard error); with --against BASE, the KL divergence
                     from the base model, top-1 agreement and the ppl ratio
  --compare-backend  run the same scoring on a second backend and compare (never the one running)
  --bench            prefill and decode tokens/s (llama-bench style; --against adds a second model)

Exit status 1 when a check fails; a run with no threshold to check reports MEASURED.

Examples:
   ./btconvert verify fixtures/bt-tiny --reference fixtures/bt-tiny/reference.safetensors
   ./btconvert verify out/bt-tiny-q4 --against out/bt-tiny --eval-text /usr/share/common-licenses/GPL-3 --max-ppl-ratio 1.03 --record
   ./btconvert verify out/b4_5 --bench --against out/v31 -p 128 -n 64 --batch 1,4 --plot out/b4_5-v31.png`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "reference", Usage: "reference.safetensors with input_ids, logits, prompt_ids, greedy_ids"},
			&cli.StringFlag{Name: "eval-text", Usage: "text file to measure perplexity on"},
			&cli.StringFlag{Name: "compare-backend", Usage: "second backend to compare scoring with"},
			&cli.StringFlag{Name: "against", Usage: "base model: with --eval-text, ppl ratio, KL divergence, top-1 agreement; with --bench, a second model"},
			&cli.Float64Flag{Name: "max-ppl-ratio", DefaultText: "no check", Usage: "with --against: largest ppl / ppl_base that passes"},
			&cli.Float64Flag{Name: "min-top1", DefaultText: "no check", Usage: "with --against: smallest top-1 agreement that passes"},
			&cli.BoolFlag{Name: "json", Usage: "print the report (or the bench results) as JSON on stdout"},
			&cli.StringFlag{Name: "json-file", Usage: "also write the JSON to this file (the bench rewrites it after every row)"},
			&cli.BoolFlag{Name: "record", Usage: "write the report into the model folder (report.json, listed in the manifest) for export"},
			&cli.Float64Flag{Name: "max-rel-err", Value: btconvert.DefaultMaxRelErr, Usage: "largest relative L2 error of the logits that passes"},
			&cli.Float64Flag{Name: "max-cache-err", Value: btconvert.DefaultMaxCacheErr, Usage: "largest relative L2 error of the self-check that passes"},
			&cli.IntFlag{Name: "window", Value: 256, Usage: "perplexity window in tokens"},
			&cli.IntFlag{Name: "window-batch", Value: btconvert.DefaultWindowBatch, Usage: "perplexity: windows per executed graph"},
			&cli.IntFlag{Name: "chunks", Usage: "perplexity: score at most this many windows of the text (llama-perplexity --chunks)", DefaultText: "all"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the self-check and bench prompts"},
			&cli.BoolFlag{Name: "bench", Usage: "measure prefill and decode throughput (random prompts, no EOS)"},
			&cli.StringFlag{Name: "batch", Usage: "--bench: batch sizes, e.g. 1,4,16 (default: 1,4 on CPU, 16,64,256 on a GPU)"},
			&cli.StringFlag{Name: "prompt-len", Aliases: []string{"p"}, Usage: "--bench: prompt lengths, e.g. 128,512 (default: 128)"},
			&cli.StringFlag{Name: "gen-len", Aliases: []string{"n"}, Usage: "--bench: generated lengths (default: 64 on CPU, 256 on a GPU)"},
			&cli.IntFlag{Name: "reps", Usage: "--bench: measured repetitions (default: 2 on CPU, 5 on a GPU)"},
			&cli.IntFlag{Name: "warmup", Value: 1, Usage: "--bench: unmeasured repetitions first (compiles)"},
			&cli.BoolFlag{Name: "max-batch", Usage: "--bench: measure at the largest batch whose estimated memory fits --mem-budget"},
			&cli.StringFlag{Name: "mem-budget", Usage: "--bench: memory a measurement may need, e.g. 16GiB (default: 80 % of the available memory)"},
			&cli.StringFlag{Name: "plot", Usage: "--bench: draw tokens/s against batch size to this PNG"},
			&cli.StringFlag{Name: "pg", Usage: "--bench: prompt and generation lengths measured as one test, e.g. 128,128 (several: 128,128;512,64; llama-bench -pg)"},
			&cli.StringFlag{Name: "output-format", Value: "md", Usage: "--bench: md, csv, json or jsonl (llama-bench -o)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --json-file or --plot"},
			quietFlag,
		}, runFlags...),
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	if c.Bool("bench") {
		return runBench(c)
	}
	for _, f := range []string{"batch", "prompt-len", "gen-len", "pg", "reps", "max-batch", "mem-budget", "plot", "output-format"} {
		if c.IsSet(f) {
			return usagef("--%s applies with --bench", f)
		}
	}
	o := btconvert.VerifyOptions{Model: c.Args().First(), Open: openOptions(c), Runtime: runtimeOf(c), Reference: c.String("reference"),
		EvalText: c.String("eval-text"), Against: c.String("against"), CompareBackend: c.String("compare-backend"),
		Window: c.Int("window"), WindowBatch: c.Int("window-batch"), Chunks: c.Int("chunks"), Seed: c.Uint64("seed"), MaxRelErr: c.Float64("max-rel-err"),
		MaxCacheErr: c.Float64("max-cache-err"), MaxPPLRatio: c.Float64("max-ppl-ratio"), MinTop1: c.Float64("min-top1"),
		Record: c.Bool("record"), JSONFile: c.String("json-file"), Force: c.Bool("force"), Version: btconvert.Version().Version, UI: uiOf(c)}
	rep, err := btconvert.Verify(o)
	if rep == nil {
		return err
	}
	if c.Bool("json") {
		if perr := printJSON(c, rep); perr != nil {
			return perr
		}
	} else if perr := rep.Print(c.App.Writer); perr != nil {
		return perr
	}
	return err
}

// runBench is `verify MODEL --bench [--against OTHER]`: the library measures (and writes
// --json-file after every row, and --plot); this prints each row as it comes.
func runBench(c *cli.Context) error {
	var o btconvert.BenchOptions
	var err error
	o.Models = []string{c.Args().First()}
	if a := c.String("against"); a != "" {
		o.Models = append(o.Models, a)
	}
	if o.Batches, err = intList("batch", c.String("batch")); err != nil {
		return err
	}
	if o.PromptLens, err = intList("prompt-len", c.String("prompt-len")); err != nil {
		return err
	}
	if o.GenLens, err = intList("gen-len", c.String("gen-len")); err != nil {
		return err
	}
	if o.Pairs, err = pairList("pg", c.String("pg")); err != nil {
		return err
	}
	if o.MemBudget, err = parseSize("mem-budget", c.String("mem-budget")); err != nil {
		return err
	}
	format := c.String("output-format")
	if c.Bool("json") {
		format = "json"
	}
	if format != "md" && format != "csv" && format != "json" && format != "jsonl" {
		return usagef("--output-format %q: want md, csv, json or jsonl", format)
	}
	for _, f := range []string{"reference", "eval-text", "compare-backend", "record", "max-ppl-ratio", "min-top1"} {
		if c.IsSet(f) {
			return usagef("--%s does not apply with --bench", f)
		}
	}
	o.Reps, o.Warmup, o.Seed, o.Split = c.Int("reps"), c.Int("warmup"), c.Uint64("seed"), true
	o.Open, o.Runtime, o.MaxBatch, o.UI = openOptions(c), runtimeOf(c), c.Bool("max-batch"), uiOf(c)
	o.JSONFile, o.Plot, o.Force = c.String("json-file"), c.String("plot"), c.Bool("force")
	w := c.App.Writer
	n := 0
	var mu sync.Mutex // the rows are read by the interrupt hook as well
	var finished []bench.Result
	interrupted := false // then nothing more is printed: the summary was the last word
	o.OnResult = func(r bench.Result) {
		mu.Lock()
		defer mu.Unlock()
		if interrupted {
			return
		}
		finished = append(finished, r)
		switch format {
		case "md":
			bench.PrintRow(w, r, n == 0)
		case "csv":
			if n == 0 {
				bench.CSVHeader(w)
			}
			bench.CSVRow(w, r)
		case "jsonl":
			if b, err := json.Marshal(r); err == nil {
				fmt.Fprintf(w, "%s\n", b)
			}
		}
		n++
	}
	// summary prints what a finished (or interrupted) run prints after its rows.
	summary := func(rows []bench.Result) error {
		switch format {
		case "json":
			return printJSON(c, map[string]any{"bench": rows})
		case "md":
			return bench.PrintSummary(w, rows)
		}
		return nil
	}
	// Interrupted: the rows finished so far get their summary and their plot (--json-file holds
	// them already), and the last line says what was kept.
	remove := atInterrupt(func() string {
		mu.Lock()
		defer mu.Unlock()
		interrupted = true
		if len(finished) == 0 {
			return ""
		}
		summary(finished)
		var kept []string
		if o.JSONFile != "" {
			kept = append(kept, o.JSONFile)
		}
		if o.Plot != "" && btconvert.PlotBench(o.Plot, finished) == nil {
			kept = append(kept, o.Plot)
		}
		what := fmt.Sprintf("kept the %d finished rows", len(finished))
		if len(finished) == 1 {
			what = "kept the finished row"
		}
		if len(kept) > 0 {
			what += " in " + strings.Join(kept, " and ")
		}
		return what
	})
	rows, err := btconvert.Bench(o)
	remove()
	if len(rows) > 0 {
		if perr := summary(rows); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}
