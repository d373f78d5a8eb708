package verify

import (
	"fmt"
	"io"

	"github.com/olekukonko/tablewriter"
)

// Report is what `btconvert verify --json` writes.
type Report struct {
	Model          string         `json:"model"`
	Backend        string         `json:"backend"`
	Device         string         `json:"device"`
	DType          string         `json:"dtype"`
	WeightBytes    int64          `json:"weight_bytes"`
	Parity         *Parity        `json:"parity,omitempty"`
	SelfCheck      *SelfCheck     `json:"self_check,omitempty"`
	CompareBackend *BackendParity `json:"compare_backend,omitempty"`
	Quality        *Quality       `json:"quality,omitempty"`
	Checks         []Check        `json:"checks"`
	Pass           bool           `json:"pass"`
}

// BackendParity is Parity between this backend and another one.
type BackendParity struct {
	Backend string `json:"backend"`
	Parity
}

// Check is one threshold test.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Op    string  `json:"op"` // "<=" or ">="
	Pass  bool    `json:"pass"`
}

// AtMost records value <= limit.
func (r *Report) AtMost(name string, value, limit float64) {
	r.Checks = append(r.Checks, Check{name, value, limit, "<=", value <= limit})
}

// AtLeast records value >= limit.
func (r *Report) AtLeast(name string, value, limit float64) {
	r.Checks = append(r.Checks, Check{name, value, limit, ">=", value >= limit})
}

// Finish sets Pass from the checks.
func (r *Report) Finish() bool {
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	r.Pass = true
	for _, c := range r.Checks {
		r.Pass = r.Pass && c.Pass
	}
	return r.Pass
}

// Print writes the human table.
func (r *Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "model %s on %s (%s), weights on device %s\n", r.Model, r.Backend, r.DType, bytesStr(r.WeightBytes))
	t := tablewriter.NewWriter(w)
	t.Header("measure", "value", "check")
	row := func(name string, v any) {
		check := ""
		for _, c := range r.Checks {
			if c.Name == name {
				mark := "ok"
				if !c.Pass {
					mark = "FAIL"
				}
				check = fmt.Sprintf("%s %s %.3g", mark, c.Op, c.Limit)
			}
		}
		t.Append(name, fmtValue(v), check)
	}
	if p := r.Parity; p != nil {
		row("rel_l2_err", p.RelL2Err)
		row("max_abs_err", p.MaxAbsErr)
		row("top1_agreement", p.Top1Agreement)
		row("greedy_token_agreement", p.GreedyTokenAgreement)
		row("greedy_match", p.GreedyMatch)
	}
	if s := r.SelfCheck; s != nil {
		row("cache_rel_l2_err", s.CacheRelL2Err)
		row("cache_max_abs_err", s.CacheMaxAbsErr)
		row("cache_top1_agreement", s.Top1Agreement)
	}
	if c := r.CompareBackend; c != nil {
		t.Append("compared with backend", c.Backend, "")
		row("backend_rel_l2_err", c.RelL2Err)
		row("backend_max_abs_err", c.MaxAbsErr)
		row("backend_top1_agreement", c.Top1Agreement)
		row("backend_greedy_match", c.GreedyMatch)
	}
	if q := r.Quality; q != nil {
		row("ppl", q.PPL)
		row("nll", q.NLL)
		row("tokens_scored", q.TokensScored)
		row("tokens_per_s", q.TokensPerS)
		if d := q.Divergence; d != nil {
			row("ppl_base", d.PPLBase)
			row("ppl_ratio", d.PPLRatio)
			row("mean_kld", d.MeanKLD)
			row("p99_kld", d.P99KLD)
			row("max_kld", d.MaxKLD)
			row("top1_agreement", d.Top1Agreement)
			row("rms_delta_p", d.RMSDeltaP)
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	if r.Pass {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
	return nil
}

func fmtValue(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.6g", x)
	}
	return fmt.Sprint(v)
}

func bytesStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
