package quant

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/olekukonko/tablewriter"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Type is how a plan stores a tensor: a float dtype, or a quantization scheme (scheme.Scheme).
type Type string

// The storage types.
const (
	F32  Type = "f32"
	BF16 Type = "bf16"
	F16  Type = "f16"
	Int8      = Type(scheme.Int8)
	Int4      = Type(scheme.Int4)
)

// Types are every storage type: the floats, then every scheme.
func Types() []Type {
	t := []Type{F32, BF16, F16}
	for _, s := range scheme.All() {
		t = append(t, Type(s.Type))
	}
	return t
}

// Scheme is the quantization scheme of t, or nil for a float type.
func (t Type) Scheme() *scheme.Scheme {
	s, err := scheme.Of(scheme.Type(t))
	if err != nil {
		return nil
	}
	return s
}

// Quantized reports whether t is a quantization scheme.
func (t Type) Quantized() bool { return t.Scheme() != nil }

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
	typ := Type(strings.ToLower(s[i+1:])) // Q6_K as llama.cpp spells it
	if !slices.Contains(Types(), typ) {
		return Override{}, errs.Option("TensorType", s, "type %q is not one of %s", typ, typeList())
	}
	return Override{re, typ, s}, nil
}

func typeList() string {
	var s []string
	for _, t := range Types() {
		s = append(s, string(t))
	}
	return strings.Join(s, " ")
}

// Settings say how to quantize.
type Settings struct {
	// Type is the scheme for the tensors the policy quantizes: int8, int4, llama.cpp's q8_0, q4_0
	// or q4_1, or a preset name (Presets), which also sets GroupSize and Symmetric.
	Type      Type
	GroupSize int  // grouped schemes (0: the scheme's default); int8 has no groups
	Symmetric bool // int4: q in -8..7 (else scale and minimum, q in 0..15); int8 always is
	Search    bool // search the scales (else round-to-nearest)
	F16Scales bool
	Overrides []Override
}

// Resolve returns the settings with a preset name replaced by its scheme and settings and the
// defaults filled in, or says what is wrong with them.
func (s Settings) Resolve() (Settings, error) {
	if p, ok := presetOf(s.Type); ok {
		var err error
		if s, err = p.apply(s); err != nil {
			return s, err
		}
	}
	if t := Type(strings.ToLower(string(s.Type))); t.Quantized() {
		s.Type = t // Q8_0 as llama.cpp spells it
	}
	sc := s.Type.Scheme()
	if sc == nil {
		return s, errs.Option("Type", string(s.Type), "want %s", typeNames())
	}
	if err := sc.CheckGroupSize(s.GroupSize); err != nil {
		return s, errs.Option("GroupSize", s.GroupSize, "%v", err)
	}
	if sc.Grouped && s.GroupSize == 0 {
		s.GroupSize = sc.DefaultGroupSize
	}
	if !sc.Asymmetric {
		s.Symmetric = true
	}
	if sc.GGML != nil { // llama.cpp's blocks: its rounding, its scales
		if s.Symmetric && sc.Asymmetric {
			return s, errs.Option("Symmetric", true, "%s is asymmetric (a scale and a minimum per block)", sc.Type)
		}
		s.Search = false
	}
	return s, nil
}

// Validate checks the settings (see Resolve).
func (s Settings) Validate() error {
	_, err := s.Resolve()
	return err
}

// typeNames lists every scheme and preset, for messages.
func typeNames() string {
	var n []string
	for _, sc := range scheme.All() {
		n = append(n, string(sc.Type))
	}
	for _, p := range Presets {
		if p.Refuse == "" {
			n = append(n, p.Name)
		}
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}

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
	// Fallback: planned as the model's type, stored as its fallback (Scheme.Fallback).
	Fallback bool `json:"fallback,omitempty"`
}

// Plan lists what happens to every tensor.
type Plan struct {
	Settings Settings `json:"-"`
	Entries  []Entry  `json:"tensors"`
	asked    Settings // the settings as given, before the main scheme's own rules applied
}

// record is how a tensor planned as `to` is stored: the main scheme with the resolved settings,
// an override's scheme with the symmetry asked for (int8's always-symmetric rule is not int4's).
func (p *Plan) record(sc *scheme.Scheme, to Type, rows, cols int) scheme.Quantization {
	sym, group := p.Settings.Symmetric, p.Settings.GroupSize
	if to != p.Settings.Type {
		// Another scheme than the model's: the symmetry and group size asked for where it takes
		// them, else its defaults (q4_k's 256 is not an int4 group).
		sym, group = p.asked.Symmetric, p.asked.GroupSize
		if sc.CheckGroupSize(group) != nil {
			group = 0
		}
	}
	return sc.Record(rows, cols, group, sym, scaleDType(p.Settings))
}

// Quantizable is the default policy: every Linear weight of the decoders and of a RoBERTa
// embedder's layers, the expansion layer and the output head (the embedder's projection stays as
// stored, a T5 token decoder's tied head with its table; token tables: TableType).
func Quantizable(s arch.TensorSpec) bool {
	return s.Role == arch.RoleLinear && s.Part != arch.PartProjection
}

// TableType is the default for the token tables of a model quantized to t: int8 (a lookup
// unpacks only the rows it gathers, and int8 rows cost no measurable quality, docs/QUANTIZATION.md),
// as llama.cpp quantizes its token embeddings. A token decoder's table that is also its output head
// (T5's) stays as stored: it is read whole at every step.
func TableType(s arch.TensorSpec, c *arch.Config, t Type) (Type, bool) {
	if !t.Quantized() || s.Role != arch.RoleEmbedding || (s.Part != arch.PartEmbeddings && s.Part != arch.PartEmbedIn) {
		return "", false
	}
	if s.Component == arch.TokenDecoder && c.TokenDecoder != nil && c.TokenDecoder.Own != nil && c.TokenDecoder.Own.TableIsHead() {
		return "", false
	}
	return Int8, true
}

// MakePlan decides the storage of every tensor of m (which must not be quantized already).
func MakePlan(m *formats.Model, s Settings) (*Plan, error) {
	asked := s
	s, err := s.Resolve()
	if err != nil {
		return nil, err
	}
	if len(m.Config.Quantization) > 0 {
		return nil, errs.File(m.Path, "is already quantized; quantize the float model it came from")
	}
	specs := map[string]arch.TensorSpec{}
	for _, sp := range arch.Tensors(m.Config) {
		specs[sp.Key()] = sp
	}
	used := make([]bool, len(s.Overrides))
	p := &Plan{Settings: s, asked: asked}
	for _, t := range m.Tensors {
		key := t.Key()
		spec := specs[key]
		to, note, hint := floatType(t.DType), "", "give this tensor int8 or int4 with {TensorType}"
		if Quantizable(spec) {
			to = s.Type
			// A row that is not whole blocks takes the type's fallback, as in llama.cpp; an
			// explicit --tensor-type below is taken as said (and refused if it cannot be).
			if sc := to.Scheme(); sc.GGML != nil && sc.Fallback != "" && len(t.Shape) == 2 && t.Shape[1]%sc.GGML.Values != 0 {
				if fb := Type(sc.Fallback).Scheme(); t.Shape[1]%fb.GGML.Values == 0 {
					to, note = Type(sc.Fallback), fmt.Sprintf("rows of %d are not whole %s blocks of %d: %s", t.Shape[1], sc.Type, sc.GGML.Values, sc.Fallback)
				} else { // refused below, naming the type asked
					hint = fmt.Sprintf("nor whole blocks of %d for its fallback %s: %s", fb.GGML.Values, fb.Type, hint)
				}
			}
		} else if tt, ok := TableType(spec, m.Config, s.Type); ok {
			to = tt
		}
		for i, o := range s.Overrides {
			if o.Pattern.MatchString(key) {
				alt := "int8, int4 or a type with smaller blocks"
				if spec.Role == arch.RoleEmbedding {
					alt = "int8 for a table"
					if o.Type != Type(scheme.Q8_0) {
						alt += ", or q8_0 where its rows are whole blocks of 32"
					}
				}
				to, used[i], note, hint = o.Type, true, "", fmt.Sprintf("{TensorType} %q chose it: choose %s", o.Text, alt)
			}
		}
		switch {
		case to.Quantized() && len(t.Shape) != 2:
			return nil, &errs.InputError{Msg: fmt.Sprintf("%s: a %dD tensor (LayerNorm or bias) cannot be %s; only 2D weights are quantized", key, len(t.Shape), to)}
		case to.Quantized() && spec.Role == arch.RoleEmbedding && !to.Scheme().Embeddings:
			return nil, &errs.InputError{Msg: fmt.Sprintf("%s: embedding tables can be %s, not %s", key, embeddingTypes(), to)}
		}
		e := Entry{Component: t.Component, Name: t.Name, Shape: t.Shape, From: floatType(t.DType), To: to, BytesBefore: t.Bytes(), Note: note, Fallback: note != ""}
		n := t.NumElements()
		if sc := to.Scheme(); sc != nil {
			q := p.record(sc, to, t.Shape[0], t.Shape[1])
			if err := q.Validate(t.Shape); err != nil {
				if sc.GGML != nil && t.Shape[1]%sc.GGML.Values != 0 {
					err = fmt.Errorf("%v (%s)", err, hint)
				}
				return nil, &errs.InputError{Msg: fmt.Sprintf("%s: %v", key, err)}
			}
			for _, part := range arch.QuantParts(&q, t.Component, t.Name) {
				e.BytesAfter += part.Bytes()
			}
			if q.PaddedCols > q.Cols {
				e.Note = fmt.Sprintf("row of %d padded to %d (%d groups of %d)", q.Cols, q.PaddedCols, q.Groups(), q.GroupSize)
			}
		} else {
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

// Fallbacks counts the tensors planned as the model's type that went to its fallback, of all
// planned as that type.
func (p *Plan) Fallbacks() (n, of int) {
	for _, e := range p.Entries {
		if e.Fallback {
			n++
		}
		if e.Fallback || e.To == p.Settings.Type {
			of++
		}
	}
	return n, of
}

// scaleDType is the stored dtype of scales (and minimums) under s.
func scaleDType(s Settings) safetensors.DType {
	if s.F16Scales {
		return safetensors.F16
	}
	return safetensors.F32
}

// embeddingTypes are the schemes an embedding table may be stored with, for messages.
func embeddingTypes() string {
	var n []string
	for _, sc := range scheme.All() {
		if sc.Embeddings {
			n = append(n, string(sc.Type))
		}
	}
	return scheme.OrList(n)
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
	row("quantized weights", func(e Entry) bool { return e.To.Quantized() })
	row("total", func(Entry) bool { return true })
	return tot.Render()
}
