package quant

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/olekukonko/tablewriter"

	"github.com/btconvert/btconvert/formats"
)

// Types a tensor can be stored as.
var Types = []string{"f32", "bf16", "f16", "int8", "int4"}

// Override is one --tensor-type REGEX=TYPE (matched against "component/name").
type Override struct {
	Pattern *regexp.Regexp
	Type    string
	Text    string
}

// ParseOverride parses REGEX=TYPE.
func ParseOverride(s string) (Override, error) {
	i := strings.LastIndex(s, "=")
	if i <= 0 {
		return Override{}, fmt.Errorf("--tensor-type %q: want REGEX=TYPE", s)
	}
	re, err := regexp.Compile(s[:i])
	if err != nil {
		return Override{}, fmt.Errorf("--tensor-type %q: bad regex: %v", s, err)
	}
	typ := s[i+1:]
	if !validType(typ) {
		return Override{}, fmt.Errorf("--tensor-type %q: type %q is not one of %s", s, typ, strings.Join(Types, " "))
	}
	return Override{re, typ, s}, nil
}

func validType(t string) bool {
	for _, x := range Types {
		if x == t {
			return true
		}
	}
	return false
}

// Settings are the flags of a quantization run.
type Settings struct {
	Type      string // int8 or int4: the default for quantizable tensors
	GroupSize int
	Symmetric bool
	Search    bool
	F16Scales bool
	Overrides []Override
}

// Validate checks the settings.
func (s *Settings) Validate() error {
	if s.Type != "int8" && s.Type != "int4" {
		return fmt.Errorf("--type %q: want int8 or int4", s.Type)
	}
	if s.GroupSize != 32 && s.GroupSize != 64 && s.GroupSize != 128 {
		return fmt.Errorf("--group-size %d: want 32, 64 or 128", s.GroupSize)
	}
	return nil
}

// Entry is one tensor of the plan.
type Entry struct {
	Component   string  `json:"component"`
	Name        string  `json:"name"`
	Shape       []int   `json:"shape"`
	From        string  `json:"from"`
	To          string  `json:"to"`
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
	BitsPerW    float64 `json:"bits_per_weight"`
	Note        string  `json:"note,omitempty"`
}

// Plan lists what happens to every tensor.
type Plan struct {
	Settings Settings `json:"-"`
	Entries  []Entry  `json:"tensors"`
}

// isLinear reports whether a tensor is one the default policy quantizes: every Linear weight of
// the decoders, the expansion layer and the output head.
func isLinear(component, name string) bool {
	if component == formats.Embedder {
		return false
	}
	for _, suf := range []string{"attention.query_key_value.weight", "attention.dense.weight", "mlp.dense_h_to_4h.weight", "mlp.dense_4h_to_h.weight"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return name == "expansion_layer.weight" || name == "embed_out.weight"
}

func isEmbedding(name string) bool {
	return name == "embeddings.weight" || name == "embed_in.weight"
}

// MakePlan decides the storage of every tensor of m (which must not be quantized already).
func MakePlan(m *formats.Model, s Settings) (*Plan, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(m.Config.Quantization) > 0 {
		return nil, &formats.InputError{File: m.Path, Msg: "is already quantized; quantize the float model it came from"}
	}
	used := make([]bool, len(s.Overrides))
	p := &Plan{Settings: s}
	for _, t := range m.Tensors {
		to := t.DType.Lower()
		if isLinear(t.Component, t.Name) {
			to = s.Type
		}
		key := t.Key()
		for i, o := range s.Overrides {
			if o.Pattern.MatchString(key) {
				to, used[i] = o.Type, true
			}
		}
		isInt := to == "int8" || to == "int4"
		switch {
		case isInt && len(t.Shape) != 2:
			return nil, fmt.Errorf("%s: a %dD tensor (LayerNorm or bias) cannot be %s; only 2D weights are quantized", key, len(t.Shape), to)
		case isInt && isEmbedding(t.Name) && to == "int4":
			return nil, fmt.Errorf("%s: embedding tables can be int8, not int4", key)
		}
		e := Entry{Component: t.Component, Name: t.Name, Shape: t.Shape, From: t.DType.Lower(), To: to, BytesBefore: t.Bytes()}
		n := t.NumElements()
		switch to {
		case "int8":
			e.BytesAfter = n + int64(t.Shape[0])*scaleBytes(s)
		case "int4":
			rows, cols := t.Shape[0], t.Shape[1]
			pc := PaddedCols(cols, s.GroupSize)
			parts := int64(1)
			if !s.Symmetric {
				parts = 2
			}
			e.BytesAfter = int64(rows)*int64(pc)/2 + int64(rows)*int64(pc/s.GroupSize)*scaleBytes(s)*parts
			if pc != cols {
				e.Note = fmt.Sprintf("row of %d padded to %d (%d groups of %d)", cols, pc, pc/s.GroupSize, s.GroupSize)
			}
		default:
			dt, _ := formats.ParseDType(to)
			e.BytesAfter = n * int64(dt.Size())
		}
		e.BitsPerW = float64(e.BytesAfter*8) / float64(n)
		p.Entries = append(p.Entries, e)
	}
	for i, u := range used {
		if !u {
			return nil, fmt.Errorf("--tensor-type %q matches no tensor (names look like %q)", s.Overrides[i].Text, m.Tensors[len(m.Tensors)/2].Key())
		}
	}
	return p, nil
}

func scaleBytes(s Settings) int64 {
	if s.F16Scales {
		return 2
	}
	return 4
}

// Total sums bytes over entries matching keep.
func (p *Plan) Total(keep func(Entry) bool) (before, after, params int64) {
	for _, e := range p.Entries {
		if keep(e) {
			before += e.BytesBefore
			after += e.BytesAfter
			n := int64(1)
			for _, d := range e.Shape {
				n *= int64(d)
			}
			params += n
		}
	}
	return
}

// Print writes the plan: one row per tensor, then totals per component and overall.
func (p *Plan) Print(w io.Writer) error {
	t := tablewriter.NewWriter(w)
	t.Header("component", "tensor", "shape", "from", "to", "bytes before", "bytes after", "bits/w", "note")
	for _, e := range p.Entries {
		t.Append(e.Component, e.Name, fmt.Sprint(e.Shape), e.From, e.To, fmt.Sprint(e.BytesBefore), fmt.Sprint(e.BytesAfter), fmt.Sprintf("%.2f", e.BitsPerW), e.Note)
	}
	if err := t.Render(); err != nil {
		return err
	}
	tot := tablewriter.NewWriter(w)
	tot.Header("component", "params", "bytes before", "bytes after", "ratio", "bits/w")
	var comps []string
	seen := map[string]bool{}
	for _, e := range p.Entries {
		if !seen[e.Component] {
			seen[e.Component] = true
			comps = append(comps, e.Component)
		}
	}
	row := func(name string, keep func(Entry) bool) {
		b, a, n := p.Total(keep)
		tot.Append(name, fmt.Sprint(n), fmt.Sprint(b), fmt.Sprint(a), fmt.Sprintf("%.3f", float64(a)/float64(b)), fmt.Sprintf("%.2f", float64(8*a)/float64(n)))
	}
	for _, c := range comps {
		row(c, func(e Entry) bool { return e.Component == c })
	}
	row("quantized linear weights", func(e Entry) bool { return e.To == "int8" || e.To == "int4" })
	row("total", func(Entry) bool { return true })
	return tot.Render()
}
