package quant

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/olekukonko/tablewriter"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Type is how a plan stores a tensor: a float dtype, or quantized.
type Type string

// The storage types.
const (
	F32  Type = "f32"
	BF16 Type = "bf16"
	F16  Type = "f16"
	Int8      = Type(arch.Int8)
	Int4      = Type(arch.Int4)
)

// Types are every storage type, for messages.
var Types = []Type{F32, BF16, F16, Int8, Int4}

// Quantized reports whether t is int8 or int4.
func (t Type) Quantized() bool { return t == Int8 || t == Int4 }

// DType is the safetensors dtype of a float type.
func (t Type) DType() safetensors.DType {
	d, _ := safetensors.ParseDType(string(t))
	return d
}

// floatType is the storage type of a float dtype.
func floatType(d safetensors.DType) Type { return Type(d.Lower()) }

// Override is one REGEX=TYPE rule (matched against "component/name").
type Override struct {
	Pattern *regexp.Regexp
	Type    Type
	Text    string
}

// ParseOverride parses REGEX=TYPE.
func ParseOverride(s string) (Override, error) {
	i := strings.LastIndex(s, "=")
	if i <= 0 {
		return Override{}, errs.Option("TensorType", s, "want REGEX=TYPE")
	}
	re, err := regexp.Compile(s[:i])
	if err != nil {
		return Override{}, errs.Option("TensorType", s, "bad regex: %v", err)
	}
	typ := Type(s[i+1:])
	if !slices.Contains(Types, typ) {
		return Override{}, errs.Option("TensorType", s, "type %q is not one of %s", typ, typeList())
	}
	return Override{re, typ, s}, nil
}

func typeList() string {
	var s []string
	for _, t := range Types {
		s = append(s, string(t))
	}
	return strings.Join(s, " ")
}

// GroupSizes are the int4 group sizes (each a whole number of bytes of codes, and a divisor of
// the usual widths).
var GroupSizes = []int{32, 64, 128}

// Settings say how to quantize.
type Settings struct {
	Type      Type // int8 or int4: for the tensors the policy quantizes
	GroupSize int  // int4 (0: DefaultGroupSize); int8 has no groups
	Symmetric bool // int4: q in -8..7 (else scale and minimum, q in 0..15)
	Search    bool // search the scales (else round-to-nearest)
	F16Scales bool
	Overrides []Override
}

// Validate checks the settings.
func (s *Settings) Validate() error {
	if !s.Type.Quantized() {
		return errs.Option("Type", string(s.Type), "want int8 or int4")
	}
	if s.GroupSize != 0 && !slices.Contains(GroupSizes, s.GroupSize) {
		return errs.Option("GroupSize", s.GroupSize, "want 32, 64 or 128 (0: %d)", DefaultGroupSize)
	}
	return nil
}

// DefaultGroupSize is the int4 group size when none is given (llama.cpp's q4 groups are 32; 64 is
// the measured balance of size and quality here: docs/QUANTIZATION.md).
const DefaultGroupSize = 64

// Entry is one tensor of the plan.
type Entry struct {
	Component   string  `json:"component"`
	Name        string  `json:"name"`
	Shape       []int   `json:"shape"`
	From        Type    `json:"from"`
	To          Type    `json:"to"`
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

// Quantizable is the default policy: every Linear weight of the decoders, the expansion layer and
// the output head (the embedder's projection and the embedding tables stay as stored).
func Quantizable(s arch.TensorSpec) bool {
	return s.Role == arch.RoleLinear && s.Component != arch.Embedder
}

// MakePlan decides the storage of every tensor of m (which must not be quantized already).
func MakePlan(m *formats.Model, s Settings) (*Plan, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.GroupSize == 0 {
		s.GroupSize = DefaultGroupSize
	}
	if len(m.Config.Quantization) > 0 {
		return nil, errs.File(m.Path, "is already quantized; quantize the float model it came from")
	}
	specs := map[string]arch.TensorSpec{}
	for _, sp := range arch.Tensors(m.Config) {
		specs[sp.Key()] = sp
	}
	used := make([]bool, len(s.Overrides))
	p := &Plan{Settings: s}
	for _, t := range m.Tensors {
		key := t.Key()
		spec := specs[key]
		to := floatType(t.DType)
		if Quantizable(spec) {
			to = s.Type
		}
		for i, o := range s.Overrides {
			if o.Pattern.MatchString(key) {
				to, used[i] = o.Type, true
			}
		}
		switch {
		case to.Quantized() && len(t.Shape) != 2:
			return nil, &errs.InputError{Msg: fmt.Sprintf("%s: a %dD tensor (LayerNorm or bias) cannot be %s; only 2D weights are quantized", key, len(t.Shape), to)}
		case to == Int4 && spec.Role == arch.RoleEmbedding:
			return nil, &errs.InputError{Msg: fmt.Sprintf("%s: embedding tables can be int8, not int4", key)}
		}
		e := Entry{Component: t.Component, Name: t.Name, Shape: t.Shape, From: floatType(t.DType), To: to, BytesBefore: t.Bytes()}
		n := t.NumElements()
		switch to {
		case Int8:
			e.BytesAfter = n + int64(t.Shape[0])*scaleBytes(s)
		case Int4:
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
			e.BytesAfter = n * int64(to.DType().Size())
		}
		e.BitsPerW = float64(e.BytesAfter*8) / float64(n)
		p.Entries = append(p.Entries, e)
	}
	for i, u := range used {
		if !u {
			return nil, errs.Option("TensorType", s.Overrides[i].Text, "matches no tensor (names look like %q)", m.Tensors[len(m.Tensors)/2].Key())
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
		t.Append(e.Component, e.Name, fmt.Sprint(e.Shape), string(e.From), string(e.To), fmt.Sprint(e.BytesBefore), fmt.Sprint(e.BytesAfter), fmt.Sprintf("%.2f", e.BitsPerW), e.Note)
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
	row("quantized linear weights", func(e Entry) bool { return e.To.Quantized() })
	row("total", func(Entry) bool { return true })
	return tot.Render()
}
