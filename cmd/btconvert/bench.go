package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/verify"
)

// runBench is `verify MODEL --bench [--against OTHER]`.
func runBench(c *cli.Context) error {
	batches, err := parseBatches(c.String("batch"))
	if err != nil {
		return err
	}
	o := verify.BenchOptions{Batches: batches, PromptLen: c.Int("prompt-len"), GenLen: c.Int("gen-len"),
		Reps: c.Int("reps"), Warmup: c.Int("warmup"), Seed: c.Uint64("seed"), Split: true}
	if o.PromptLen < 1 || o.GenLen < 2 || o.Reps < 1 || o.Warmup < 0 {
		return usagef("--bench: need --prompt-len >= 1, --gen-len >= 2, --reps >= 1, --warmup >= 0")
	}
	b, spec, err := openBackend(c, c.String("backend"))
	if err != nil {
		return err
	}
	paths := []string{c.Args().First()}
	if a := c.String("against"); a != "" {
		paths = append(paths, a)
	}
	var rows []verify.BenchResult
	for _, p := range paths {
		l, err := loadModel(c, p, b, spec)
		if err != nil {
			return err
		}
		warnLength(c, l.src.Config, o.PromptLen+o.GenLen, "prompt plus generation")
		mo := o
		if c.Bool("max-batch") {
			budget, err := memBudget(c.String("mem-budget"))
			if err != nil {
				return err
			}
			mb := maxBatch(l.model, o.PromptLen+o.GenLen, budget)
			if mb < 1 {
				l.Close()
				return fmt.Errorf("%s: even batch 1 does not fit %s", p, humanBytes(budget))
			}
			say(c, "%s: largest batch in %s: %d", p, humanBytes(budget), mb)
			mo.Batches = []int{mb}
		}
		prog, done := progress(c, int64(len(mo.Batches)*(o.Reps+o.Warmup)), "bench "+p)
		res, err := verify.Bench(l.model, modelName(p), spec, mo, func() { prog("", 1) })
		done()
		l.Close()
		if err != nil {
			return err
		}
		rows = append(rows, res...)
	}
	if out := c.String("json"); out != "" {
		js, _ := json.MarshalIndent(map[string]any{"bench": rows}, "", "  ")
		js = append(js, '\n')
		if out == "-" {
			c.App.Writer.Write(js)
		} else if _, err := formats.WriteFileAtomic(out, js); err != nil {
			return err
		}
	}
	if p := c.String("plot"); p != "" {
		if err := verify.PlotBench(p, rows); err != nil {
			return err
		}
		say(c, "plot: %s", p)
	}
	if c.String("json") == "-" {
		return nil
	}
	return verify.PrintBench(c.App.Writer, rows)
}

func modelName(p string) string {
	p = strings.TrimSuffix(strings.TrimRight(p, "/"), formats.BundleExt)
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

func parseBatches(s string) ([]int, error) {
	if s == "" {
		s = "1,16,64,256"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, usagef("--batch %q: want a comma-separated list of batch sizes", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// memBudget is --mem-budget, or 80 % of the available RAM.
func memBudget(flag string) (int64, error) {
	if flag != "" {
		n, err := parseSize(flag)
		if err != nil {
			return 0, usagef("--mem-budget %q: want a size like 16GiB", flag)
		}
		return n, nil
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, usagef("--max-batch: give --mem-budget (no /proc/meminfo here)")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemAvailable: %d kB", &kb); n == 1 {
			return kb * 1024 * 8 / 10, nil
		}
	}
	return 0, usagef("--max-batch: give --mem-budget (MemAvailable not found)")
}

// maxBatch is the largest batch (binary search over powers of two, then between them) whose
// estimated memory fits the budget.
func maxBatch(m *graph.Model, length int, budget int64) int {
	fits := func(B int) bool { return m.EstimateMemory(B, length) <= budget }
	if !fits(1) {
		return 0
	}
	lo, hi := 1, 2
	for fits(hi) && hi < 1<<20 {
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
