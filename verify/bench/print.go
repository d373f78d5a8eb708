package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"
)

// rowCells is one printed line of the llama-bench style table (a prefill or a decode figure).
func rowCells(r Result, decode bool) []string {
	test, med, mean, std, lo, hi := fmt.Sprintf("pp%d", r.PromptLen), r.PrefillTokS, r.PrefillTokMean, r.PrefillTokStd, r.PrefillTokMin, r.PrefillTokMax
	if decode {
		test, med, mean, std, lo, hi = fmt.Sprintf("tg%d", r.GenLen), r.DecodeTokS, r.DecodeTokSMean, r.DecodeTokSStd, r.DecodeTokSMin, r.DecodeTokSMax
	}
	return []string{r.Model, params(r.Params), r.Backend, strconv.Itoa(r.Threads), strconv.Itoa(r.Batch), test,
		fmt.Sprintf("%.1f", med), fmt.Sprintf("%.1f ± %.1f", mean, std), fmt.Sprintf("%.1f - %.1f", lo, hi), bytesStr(r.PeakMemBytes)}
}

var header = []string{"model", "params", "backend", "threads", "batch", "test", "t/s (median)", "mean ± sd", "min - max", "peak mem"}

// PrintRow writes one result as table rows without borders, for printing each result as it
// finishes (header first when first is true).
func PrintRow(w io.Writer, r Result, first bool) {
	if first {
		fmt.Fprintf(w, "| %s |\n", join(header))
		fmt.Fprintf(w, "|%s\n", repeat("---|", len(header)))
	}
	if r.Pair {
		fmt.Fprintf(w, "| %s |\n", join(pairCells(r)))
		return
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", join(rowCells(r, false)), join(rowCells(r, true)))
}

// pairCells is the one line of a -pg test: prompt and generated tokens over the whole run.
func pairCells(r Result) []string {
	return []string{r.Model, params(r.Params), r.Backend, strconv.Itoa(r.Threads), strconv.Itoa(r.Batch), fmt.Sprintf("pp%d+tg%d", r.PromptLen, r.GenLen),
		fmt.Sprintf("%.1f", r.TotalTokS), fmt.Sprintf("sd %.1f", r.TotalTokSStd), "", bytesStr(r.PeakMemBytes)}
}

func join(cells []string) string {
	out := ""
	for i, c := range cells {
		if i > 0 {
			out += " | "
		}
		out += c
	}
	return out
}

func repeat(s string, n int) string {
	out := ""
	for i := 0; i < n; i++ {
		out += s
	}
	return out
}

// PrintSummary writes the component split of block models and, when exactly two models were
// measured, their throughput ratio per batch and length.
func PrintSummary(w io.Writer, rows []Result) error {
	var splits []Result
	for _, r := range rows {
		if r.Split != nil {
			splits = append(splits, r)
		}
	}
	if len(splits) > 0 {
		s := tablewriter.NewWriter(w)
		s.Header("model", "batch", "test", "embedder", "block decoder", "token decoder", "decode step ms", "compile s", "weights", "estimate")
		for _, r := range splits {
			s.Append(r.Model, strconv.Itoa(r.Batch), fmt.Sprintf("pp%d+tg%d", r.PromptLen, r.GenLen), pct(r.Split["embedder"]),
				pct(r.Split["block_decoder"]), pct(r.Split["token_decoder"]), fmt.Sprintf("%.2f", r.StepMs), fmt.Sprintf("%.1f", r.CompileS), bytesStr(r.WeightBytes), bytesStr(r.EstimateBytes))
		}
		if err := s.Render(); err != nil {
			return err
		}
	}
	var names []string
	for _, r := range rows {
		if !slices.Contains(names, r.Model) {
			names = append(names, r.Model)
		}
	}
	if len(names) != 2 {
		return nil
	}
	fmt.Fprintf(w, "throughput ratio %s / %s:\n", names[0], names[1])
	rt := tablewriter.NewWriter(w)
	rt.Header("batch", "test", "decode ratio", "prefill ratio", "compile s (each)")
	for _, a := range rows {
		if a.Model != names[0] {
			continue
		}
		for _, b := range rows {
			if b.Model == names[1] && a.Batch == b.Batch && a.PromptLen == b.PromptLen && a.GenLen == b.GenLen && b.DecodeTokS > 0 && b.PrefillTokS > 0 {
				rt.Append(strconv.Itoa(a.Batch), fmt.Sprintf("pp%d+tg%d", a.PromptLen, a.GenLen),
					fmt.Sprintf("%.2fx", a.DecodeTokS/b.DecodeTokS), fmt.Sprintf("%.2fx", a.PrefillTokS/b.PrefillTokS), fmt.Sprintf("%.1f / %.1f", a.CompileS, b.CompileS))
			}
		}
	}
	return rt.Render()
}

// CSVHeader and CSVRow write results as CSV (one line per result, llama-bench -o csv style).
func CSVHeader(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"model", "params", "backend", "threads", "batch", "prompt_len", "gen_len", "reps", "prefill_tok_s", "prefill_tok_s_mean", "prefill_tok_s_std",
		"decode_tok_s", "decode_tok_s_mean", "decode_tok_s_std", "total_tok_s", "step_ms", "compile_s", "weight_bytes", "estimate_bytes", "peak_mem_bytes"})
	cw.Flush()
	return cw.Error()
}

// CSVRow writes one result.
func CSVRow(w io.Writer, r Result) error {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	// Only a -pg test measures prompt and generation as one: other rows leave total_tok_s empty
	// (their JSON omits it), not 0, which reads as a measured rate.
	total := ""
	if r.Pair {
		total = f(r.TotalTokS)
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{r.Model, strconv.FormatInt(r.Params, 10), r.Backend, strconv.Itoa(r.Threads), strconv.Itoa(r.Batch), strconv.Itoa(r.PromptLen), strconv.Itoa(r.GenLen),
		strconv.Itoa(r.Reps), f(r.PrefillTokS), f(r.PrefillTokMean), f(r.PrefillTokStd), f(r.DecodeTokS), f(r.DecodeTokSMean), f(r.DecodeTokSStd),
		total, f(r.StepMs), f(r.CompileS), strconv.FormatInt(r.WeightBytes, 10), strconv.FormatInt(r.EstimateBytes, 10), strconv.FormatInt(r.PeakMemBytes, 10)})
	cw.Flush()
	return cw.Error()
}

func pct(x float64) string { return fmt.Sprintf("%.1f %%", 100*x) }

func params(n int64) string {
	s := humanize.SIWithDigits(float64(n), 2, "")
	return s
}

func bytesStr(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}
