package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "prove numerical parity and measure quality",
		ArgsUsage: "MODEL",
		Description: `MODEL is a btconvert directory or anything import reads. With no other flag, verify runs the
self-check: logits of KV-cached generation against the full forward on seeded random prompts.

  --reference FILE   compare logits and greedy tokens with a reference.safetensors
  --eval-text FILE   perplexity of a text (byte vocabulary, or the model's tokenizer.json)
  --compare-backend  run the same scoring on a second backend and compare

Exit status 1 when a check fails.

Examples:
   btconvert verify fixtures/bt-tiny --reference fixtures/bt-tiny/reference.safetensors
   btconvert verify out/bt-tiny --eval-text /usr/share/common-licenses/GPL-3 --json report.json
   btconvert verify out/bt-tiny --compare-backend xla:cuda`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "reference", Usage: "reference.safetensors with input_ids, logits, prompt_ids, greedy_ids"},
			&cli.StringFlag{Name: "eval-text", Usage: "text file to measure perplexity on"},
			&cli.StringFlag{Name: "compare-backend", Usage: "second backend to compare scoring with"},
			&cli.StringFlag{Name: "against", Usage: "base model: with --eval-text, report ppl ratio, KL divergence, top-1 agreement"},
			&cli.Float64Flag{Name: "max-ppl-ratio", Usage: "with --against: largest ppl / ppl_base that passes (0: no check)"},
			&cli.Float64Flag{Name: "min-top1", Usage: "with --against: smallest top-1 agreement that passes (0: no check)"},
			&cli.StringFlag{Name: "json", Usage: "write the report as JSON to this file (- for stdout)"},
			&cli.BoolFlag{Name: "record", Usage: "write the report into the model directory (report.json, listed in the manifest) for export"},
			&cli.Float64Flag{Name: "max-rel-err", Value: 1e-4, Usage: "largest relative L2 error of the logits that passes"},
			&cli.Float64Flag{Name: "max-cache-err", Value: 1e-5, Usage: "largest relative L2 error of the self-check that passes"},
			&cli.IntFlag{Name: "window", Value: 256, Usage: "perplexity window in tokens"},
			&cli.StringFlag{Name: "batch", Usage: "perplexity: windows per executed graph (default 16); --bench: batch sizes (default 1,16,64,256)"},
			&cli.BoolFlag{Name: "bench", Usage: "measure prefill and decode throughput (random prompts, no EOS)"},
			&cli.IntFlag{Name: "prompt-len", Value: 128, Usage: "--bench: prompt tokens"},
			&cli.IntFlag{Name: "gen-len", Value: 256, Usage: "--bench: generated tokens"},
			&cli.IntFlag{Name: "reps", Value: 5, Usage: "--bench: measured repetitions"},
			&cli.IntFlag{Name: "warmup", Value: 1, Usage: "--bench: unmeasured repetitions first (compiles)"},
			&cli.BoolFlag{Name: "max-batch", Usage: "--bench: find the largest batch that fits --mem-budget (binary search) and measure there"},
			&cli.StringFlag{Name: "mem-budget", Usage: "--max-batch: device memory to fit in, e.g. 16GiB (default: 80 % of available RAM)"},
			&cli.StringFlag{Name: "plot", Usage: "--bench: write decode tokens/s against batch size to this PNG"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the self-check prompts"},
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
	pplBatch := 16
	if c.IsSet("batch") {
		n, err := strconv.Atoi(c.String("batch"))
		if err != nil || n < 1 {
			return usagef("--batch %q: want a number of windows per graph (at least 1)", c.String("batch"))
		}
		pplBatch = n
	}
	if c.Int("window") < 2 {
		return usagef("--window must be at least 2")
	}
	if c.Bool("record") && !formats.IsModelDir(c.Args().First()) {
		return usagef("verify: --record writes into a btconvert model directory; %s is not one (import it first)", c.Args().First())
	}
	b, spec, err := openBackend(c, c.String("backend"))
	if err != nil {
		return err
	}
	l, err := loadModel(c, c.Args().First(), b, spec)
	if err != nil {
		return err
	}
	defer l.Close()
	m := l.model
	rep := &verify.Report{Model: c.Args().First(), Backend: spec, Device: graph.Describe(b), DType: c.String("dtype"), WeightBytes: m.Weights.Bytes}
	ran := false
	if c.String("against") != "" && c.String("eval-text") == "" {
		return usagef("verify: --against needs --eval-text FILE")
	}
	if p := c.String("reference"); p != "" {
		ran = true
		ref, err := verify.ReadReference(p)
		if err != nil {
			return err
		}
		if rep.Parity, err = verify.AgainstReference(m, ref, p); err != nil {
			return err
		}
		rep.AtMost("rel_l2_err", rep.Parity.RelL2Err, c.Float64("max-rel-err"))
		rep.AtLeast("greedy_match", b2f(rep.Parity.GreedyMatch), 1)
	}
	if p := c.String("eval-text"); p != "" {
		ran = true
		text, err := os.ReadFile(p)
		if err != nil {
			return &formats.InputError{File: p, Msg: "cannot read: " + err.Error()}
		}
		tok, err := formats.TokenizerFor(l.src)
		if err != nil {
			return err
		}
		ids, err := tok.Encode(string(text))
		if err != nil {
			return err
		}
		w := c.Int("window")
		warnLength(c, l.src.Config, w, "--window")
		nWin := len(ids) / w
		prog, done := progress(c, int64(nWin), "perplexity")
		var q *verify.Quality
		if base := c.String("against"); base != "" {
			lb, err := loadModel(c, base, b, spec)
			if err != nil {
				return err
			}
			defer lb.Close()
			q, err = verify.CompareQuality(m, lb.model, base, ids, w, pplBatch, func(n int) { prog("", int64(n)) })
			if err != nil {
				done()
				return usagef("%s: %v", p, err)
			}
			if lim := c.Float64("max-ppl-ratio"); lim > 0 {
				rep.AtMost("ppl_ratio", q.PPLRatio, lim)
			}
			if lim := c.Float64("min-top1"); lim > 0 {
				rep.AtLeast("top1_agreement", q.Top1Agreement, lim)
			}
		} else if q, err = verify.Perplexity(m, ids, w, pplBatch, func(n int) { prog("", int64(n)) }); err != nil {
			done()
			return usagef("%s: %v", p, err)
		}
		done()
		q.Text = p
		rep.Quality = q
	}
	if spec2 := c.String("compare-backend"); spec2 != "" {
		ran = true
		b2, _, err := openBackend(c, spec2)
		if err != nil {
			return err
		}
		l2, err := loadModel(c, c.Args().First(), b2, spec2)
		if err != nil {
			return err
		}
		defer l2.Close()
		p, err := verify.BetweenModels(l2.model, m, c.Uint64("seed"))
		if err != nil {
			return err
		}
		rep.CompareBackend = &verify.BackendParity{Backend: spec2, Parity: *p}
		rep.AtMost("backend_rel_l2_err", p.RelL2Err, c.Float64("max-rel-err"))
	}
	if !ran {
		s, err := verify.RunSelfCheck(m, c.Uint64("seed"))
		if err != nil {
			return err
		}
		rep.SelfCheck = s
		rep.AtMost("cache_rel_l2_err", s.CacheRelL2Err, c.Float64("max-cache-err"))
	}
	pass := rep.Finish()
	js, _ := json.MarshalIndent(rep, "", "  ")
	js = append(js, '\n')
	if c.Bool("record") {
		if err := formats.RecordReport(c.Args().First(), js); err != nil {
			return err
		}
		say(c, "recorded the report in %s", c.Args().First())
	}
	if out := c.String("json"); out != "" {
		if out == "-" {
			c.App.Writer.Write(js)
		} else if _, err := formats.WriteFileAtomic(out, js); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
	}
	if c.String("json") != "-" {
		if err := rep.Print(c.App.Writer); err != nil {
			return err
		}
	}
	if !pass {
		return &checkFailed{"verification failed: a check is out of bounds"}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
