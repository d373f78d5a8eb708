package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"

	"github.com/btconvert/btconvert/internal/fsio"
)

// ReportFile is the kind of file a report is written to (--json-file): --force replaces a JSON
// file only when it holds keys only a report has (never, say, a model's config.json).
var ReportFile = fsio.JSONKind("verify report", "checks", "status")

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
	// Pass is true when no check failed; Status says PASS, FAIL, or MEASURED when nothing was
	// checked against a threshold.
	Pass   bool   `json:"pass"`
	Status string `json:"status"`
	// RecordedBy is set when verify --record wrote the report into the model folder.
	RecordedBy string `json:"recorded_by,omitempty"`
	// NonFinite lists measures that were not finite numbers (written as null).
	NonFinite []string `json:"non_finite,omitempty"`
}

// The statuses of a report.
const (
	StatusPass     = "PASS"
	StatusFail     = "FAIL"
	StatusMeasured = "MEASURED"
)

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

// Finish sets Pass and Status from the checks. A measure that is not a finite number is a failed
// check of its own.
func (r *Report) Finish() bool {
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	if q := r.Quality; q != nil && !q.Finite() {
		r.Checks = append(r.Checks, Check{Name: "quality_finite", Value: 0, Limit: 1, Op: ">=", Pass: false})
	}
	r.Pass = true
	for _, c := range r.Checks {
		r.Pass = r.Pass && c.Pass
	}
	switch {
	case !r.Pass:
		r.Status = StatusFail
	case len(r.Checks) == 0:
		r.Status = StatusMeasured
	default:
		r.Status = StatusPass
	}
	return r.Pass
}

// Print writes the human table.
func (r *Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "model %s on %s (%s), weights on device %s\n", r.Model, r.Backend, r.DType, humanize.IBytes(uint64(r.WeightBytes)))
	t := tablewriter.NewWriter(w)
	t.Header("measure", "value", "check")
	checkOf := func(name string) string {
		for _, c := range r.Checks {
			if c.Name == name {
				mark := "ok"
				if !c.Pass {
					mark = "FAIL"
				}
				return fmt.Sprintf("%s %s %.3g", mark, c.Op, c.Limit)
			}
		}
		return ""
	}
	row := func(name string, v any) { t.Append(name, fmtValue(v), checkOf(name)) }
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
		t.Append("ppl", fmt.Sprintf("%.6g ± %.3g", q.PPL, q.PPLStdErr), "")
		row("nll", q.NLL)
		row("tokens_scored", q.TokensScored)
		row("tokens_per_s", q.TokensPerS)
		row("compile_s", q.CompileS)
		if d := q.Divergence; d != nil {
			row("ppl_base", d.PPLBase)
			row("ppl_ratio", d.PPLRatio)
			t.Append("mean_kld", fmt.Sprintf("%.6g ± %.3g", d.MeanKLD, d.MeanKLDStdErr), checkOf("mean_kld"))
			row("p99_kld", d.P99KLD)
			row("max_kld", d.MaxKLD)
			row("top1_agreement", d.Top1Agreement)
			row("rms_delta_p", d.RMSDeltaP)
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	switch r.Status {
	case StatusMeasured:
		fmt.Fprintln(w, "MEASURED (no threshold was checked)")
	default:
		fmt.Fprintln(w, r.Status)
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

// EncodeJSON is v as indented JSON without HTML escaping. Go's encoder refuses NaN and infinities;
// here they become null and their paths are listed under "non_finite" (v must encode as an
// object), so a report with a failed measure is still valid JSON.
func EncodeJSON(v any) ([]byte, error) {
	b, err := encode(v)
	if err == nil {
		return b, nil
	}
	var ue *json.UnsupportedValueError
	if !errors.As(err, &ue) {
		return nil, err
	}
	tree, bad := finiteTree(reflect.ValueOf(v), "")
	if m, ok := tree.(map[string]any); ok {
		m["non_finite"] = bad
	}
	return encode(tree)
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// finiteTree is v as generic JSON values (through its JSON encoding, field by field), non-finite
// floats replaced by nil; it returns their paths too.
func finiteTree(v reflect.Value, path string) (any, []string) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, []string{path}
		}
		return f, nil
	case reflect.Struct:
		out := map[string]any{}
		var bad []string
		addFields(v, path, out, &bad)
		return out, bad
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil, nil
		}
		out := make([]any, v.Len())
		var bad []string
		for i := range out {
			var b []string
			out[i], b = finiteTree(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			bad = append(bad, b...)
		}
		return out, bad
	case reflect.Map:
		out := map[string]any{}
		var bad []string
		for _, k := range v.MapKeys() {
			var b []string
			out[fmt.Sprint(k.Interface())], b = finiteTree(v.MapIndex(k), join(path, fmt.Sprint(k.Interface())))
			bad = append(bad, b...)
		}
		return out, bad
	}
	return v.Interface(), nil
}

// addFields puts a struct's JSON fields into out (embedded structs inline, as encoding/json does).
func addFields(v reflect.Value, path string, out map[string]any, bad *[]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && name == "" {
			for fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					break
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				addFields(fv, path, out, bad)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(opts, "omitempty") && fv.IsZero() {
			continue
		}
		val, b := finiteTree(fv, join(path, name))
		out[name] = val
		*bad = append(*bad, b...)
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
