// Package scheme is the quantization schemes as data, the one leaf every other package asks: each
// scheme's storage (code width, groups, llama.cpp's blocks, the stored parts and their shapes),
// its code levels, its settings and defaults, and the record of one quantized tensor
// (Quantization) with its checks. The fitters (quant), the graphs (graph), the layouts (formats)
// and the domain model (arch) import it; it imports no btconvert package but the safetensors dtypes.
package scheme

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// Scheme is everything about one quantized type that is not an algorithm: how its codes are
// stored, how they are grouped, which settings it takes and their defaults, how it reads in a
// provenance line, and the quality a model quantized to it must keep. The record of a tensor
// (Quantization), the planner and quantizer (quant), the in-graph dequantization (graph) and the
// export gate all ask it; none of them names a type. A new scheme is one more entry in
// schemes (plus its fitting in quant and, for a new code width, unpacking in graph, which
// refuse a width they do not know).
type Scheme struct {
	Type Type
	// Bits is the code width: 8 (one code per I8 byte) or 4 (two per U8 byte, low nibble first,
	// stored as code+8 when symmetric); llama.cpp's blocks pack theirs as GGMLBlock says (Q6_K: 6).
	Bits int
	// Grouped schemes have scales per group of GroupSize input columns (rows padded to whole
	// groups); the others one scale per output row.
	Grouped          bool
	GroupSizes       []int // allowed group sizes (grouped only)
	DefaultGroupSize int   // when none is given (grouped only)
	// Asymmetric is whether a scale and a minimum per group may be stored (else symmetric only).
	Asymmetric bool
	// GGML, when set, stores the tensor in llama.cpp's own blocks (one U8 tensor, each row a run of
	// blocks holding their scale in f16 and their codes: GGMLBlock) rather than as separate codes,
	// scales and minimums; such a scheme is symmetric only, or asymmetric only when Asymmetric.
	GGML *GGMLBlock
	// Fallback, when set, is the type a row that is not a whole number of GGML blocks gets instead
	// when this type is the one asked for the whole model (llama.cpp falls back alike for its
	// k-quants, whose blocks are 256 wide); an explicit --tensor-type is refused instead.
	Fallback Type
	// Embeddings is whether an embedding table may be stored this way (the lookup dequantizes
	// rows of a table that is otherwise never multiplied; int4 tables lose too much).
	Embeddings bool
	// SymLevels and AsymLevels are the code ranges [lo, hi].
	SymLevels, AsymLevels [2]int
	// MaxPPLRatio and MinTop1 are the quality a model quantized to this type must keep against its
	// base to be exported when its recorded report set no limits of its own. They sit a margin past
	// what the fixtures measure (docs/QUANTIZATION.md: int8 ppl ratio <= 1.0005, top-1 >= 0.988;
	// int4 g64 <= 1.043 and >= 0.845 even with round-to-nearest), far from a broken model.
	MaxPPLRatio, MinTop1 float64
}

// The quantized types.
const (
	Int8 Type = "int8" // per output row, symmetric, q in -127..127
	Int4 Type = "int4" // per group of the input dim, asymmetric (scale, min) or symmetric
	Q8_0 Type = "q8_0" // llama.cpp's blocks of 32: f16 scale, 32 int8 codes
	Q4_0 Type = "q4_0" // llama.cpp's blocks of 32: f16 scale, 16 bytes of 4-bit codes
	Q4_1 Type = "q4_1" // llama.cpp's blocks of 32: f16 scale and minimum, 16 bytes of codes
	Q4_K Type = "q4_k" // llama.cpp's k-quant super-blocks of 256: 4-bit codes, 6-bit sub-block scales and minimums
	Q6_K Type = "q6_k" // llama.cpp's k-quant super-blocks of 256: 6-bit codes, int8 sub-block scales
)

// GGMLBlock is the layout of one of llama.cpp's blocks (ggml-common.h, block_q8_0 / block_q4_0 /
// block_q4_1 / block_q4_K / block_q6_K). q8_0, q4_0 and q4_1: a little-endian f16 scale, an f16
// minimum when the scheme is asymmetric, then the codes of Values weights; 4-bit codes pack weight
// j of the block in the low nibble of byte j and weight j+16 in its high nibble, stored as code+8
// when symmetric. The k-quants' layouts are in docs/FORMAT.md (and quant's encoders).
type GGMLBlock struct {
	Values int   // weights per block
	Bytes  int   // bytes per block
	F16At  []int // offsets of the block's f16 scale (and minimum) fields
}

// Scales calls f with each block's f16 fields (its scale, and minimum where it has one) in raw
// (whole blocks, row after row), until f returns false.
func (b *GGMLBlock) Scales(raw []byte, f func(block int, v float32) bool) {
	for i := 0; i+b.Bytes <= len(raw); i += b.Bytes {
		for _, at := range b.F16At {
			if !f(i/b.Bytes, float16.Frombits(binary.LittleEndian.Uint16(raw[i+at:])).Float32()) {
				return
			}
		}
	}
}

// schemes are every scheme: btconvert's own, then llama.cpp's; each width's finest first (a
// width's first scheme is what mlx-lm's --q-bits means).
var schemes = []*Scheme{
	{Type: Int8, Bits: 8, Embeddings: true, SymLevels: [2]int{-127, 127}, MaxPPLRatio: 1.01, MinTop1: 0.95},
	// Group sizes: each a whole number of bytes of codes and a divisor of the usual widths; 64 is
	// the measured balance of size and quality here (docs/QUANTIZATION.md), llama.cpp's q4 is 32.
	{Type: Int4, Bits: 4, Grouped: true, GroupSizes: []int{32, 64, 128}, DefaultGroupSize: 64, Asymmetric: true,
		SymLevels: [2]int{-8, 7}, AsymLevels: [2]int{0, 15}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	{Type: Q8_0, Bits: 8, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, GGML: &GGMLBlock{Values: 32, Bytes: 34, F16At: []int{0}}, Embeddings: true,
		SymLevels: [2]int{-127, 127}, MaxPPLRatio: 1.01, MinTop1: 0.95},
	{Type: Q4_0, Bits: 4, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, GGML: &GGMLBlock{Values: 32, Bytes: 18, F16At: []int{0}},
		SymLevels: [2]int{-8, 7}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	{Type: Q4_1, Bits: 4, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, Asymmetric: true, GGML: &GGMLBlock{Values: 32, Bytes: 20, F16At: []int{0, 2}},
		AsymLevels: [2]int{0, 15}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	// The k-quants fall back as llama.cpp's do where a row is not whole super-blocks: q6_k to
	// q8_0 as there, q4_k to q4_1 (llama.cpp takes q5_0, which btconvert does not write).
	{Type: Q4_K, Bits: 4, Grouped: true, GroupSizes: []int{256}, DefaultGroupSize: 256, Asymmetric: true, GGML: &GGMLBlock{Values: 256, Bytes: 144, F16At: []int{0, 2}},
		Fallback: Q4_1, AsymLevels: [2]int{0, 15}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	{Type: Q6_K, Bits: 6, Grouped: true, GroupSizes: []int{256}, DefaultGroupSize: 256, GGML: &GGMLBlock{Values: 256, Bytes: 210, F16At: []int{208}}, Embeddings: true,
		Fallback: Q8_0, SymLevels: [2]int{-32, 31}, MaxPPLRatio: 1.01, MinTop1: 0.95},
}

// All lists every scheme (see schemes).
func All() []*Scheme { return schemes }

// Of returns the scheme of type t, or an error naming the known ones.
func Of(t Type) (*Scheme, error) {
	for _, s := range schemes {
		if s.Type == t {
			return s, nil
		}
	}
	return nil, fmt.Errorf("type %q is not %s", t, schemeNames())
}

func schemeNames() string {
	var n []string
	for _, q := range schemes {
		n = append(n, string(q.Type))
	}
	return OrList(n)
}

// OrList is "a", "a or b", "a, b or c".
func OrList(v []string) string {
	if len(v) < 2 {
		return strings.Join(v, "")
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

// Levels are the code range of the symmetric or asymmetric variant.
func (s *Scheme) Levels(symmetric bool) (lo, hi int) {
	if symmetric {
		return s.SymLevels[0], s.SymLevels[1]
	}
	return s.AsymLevels[0], s.AsymLevels[1]
}

// CheckGroupSize says what is wrong with a group size for this scheme (0 is the default).
func (s *Scheme) CheckGroupSize(group int) error {
	switch {
	case s.GGML != nil && group != 0 && group != s.GGML.Values:
		return fmt.Errorf("%s is llama.cpp's blocks of %d weights", s.Type, s.GGML.Values)
	case !s.Grouped && group != 0:
		return fmt.Errorf("%s has one scale per output row, no groups (give 0)", s.Type)
	case s.Grouped && group != 0 && !slices.Contains(s.GroupSizes, group):
		return fmt.Errorf("want %s for %s (0: %d)", intList(s.GroupSizes), s.Type, s.DefaultGroupSize)
	}
	return nil
}

func intList(v []int) string {
	var n []string
	for _, x := range v {
		n = append(n, strconv.Itoa(x))
	}
	return OrList(n)
}

// Record is the quantization record of a [rows, cols] weight stored with this scheme (group 0:
// the default; symmetric is ignored by symmetric-only schemes).
func (s *Scheme) Record(rows, cols, group int, symmetric bool, scales safetensors.DType) Quantization {
	q := Quantization{Type: s.Type, Symmetric: symmetric || !s.Asymmetric, ScaleDType: scales, Rows: rows, Cols: cols}
	if s.GGML != nil { // its blocks fix all of it
		q.Symmetric, q.ScaleDType = !s.Asymmetric, safetensors.F16
	}
	if s.Grouped {
		q.GroupSize = group
		if q.GroupSize == 0 || s.GGML != nil {
			q.GroupSize = s.DefaultGroupSize
		}
		q.PaddedCols = PaddedCols(cols, q.GroupSize)
	}
	return q
}

// codes is the stored dtype and shape of the codes of q.
func (s *Scheme) codes(q *Quantization) (safetensors.DType, []int) {
	if s.GGML != nil {
		return safetensors.U8, []int{q.Rows, q.Cols / s.GGML.Values * s.GGML.Bytes}
	}
	if s.Bits == 8 {
		return safetensors.I8, []int{q.Rows, q.cols()}
	}
	return safetensors.U8, []int{q.Rows, q.cols() * s.Bits / 8}
}

// Describe is the provenance line of a quantization with this scheme ("int4 g64 symmetric").
func (s *Scheme) Describe(group int, symmetric bool) string {
	d := string(s.Type)
	if s.Grouped && s.GGML == nil {
		d += " g" + strconv.Itoa(group)
	}
	if s.Asymmetric && s.GGML == nil {
		if symmetric {
			d += " symmetric"
		} else {
			d += " asymmetric"
		}
	}
	return d
}

// Type is how a quantized tensor stores its values.
type Type string

// Quantization records how one tensor is quantized (docs/FORMAT.md).
type Quantization struct {
	Type       Type              `json:"type"`
	GroupSize  int               `json:"group_size,omitempty"` // grouped schemes: elements per group along the input dim
	Symmetric  bool              `json:"symmetric"`
	ScaleDType safetensors.DType `json:"scale_dtype"`           // F32 or F16
	Rows       int               `json:"rows"`                  // logical shape [rows, cols]
	Cols       int               `json:"cols"`                  //
	PaddedCols int               `json:"padded_cols,omitempty"` // grouped schemes: cols rounded up to a whole group
}

// How a quantized tensor NAME is stored in its component file (docs/FORMAT.md):
//
//	NAME.qweight  int8: I8 [rows, cols]           int4: U8 [rows, padded_cols/2], low nibble first
//	NAME.scales   F32|F16 [rows] (int8)           F32|F16 [rows, groups] (int4)
//	NAME.mins     asymmetric only: F32|F16, the shape of the scales
//
// llama.cpp's types (q8_0, q4_0, q4_1, q4_k, q6_k) are NAME.qweight alone: U8 [rows, cols/block * block bytes],
// each row its blocks (GGMLBlock).
//
// (Scheme.codes and Parts produce these from the scheme.)
const (
	QWeightSuffix = ".qweight"
	ScalesSuffix  = ".scales"
	MinsSuffix    = ".mins"
)

// Scheme is the scheme of q's type (nil for a type Validate refuses).
func (q *Quantization) Scheme() *Scheme {
	s, _ := Of(q.Type)
	return s
}

// Groups is the number of groups per row (1 for a scheme with a scale per row).
func (q *Quantization) Groups() int {
	if q.GroupSize == 0 {
		return 1
	}
	return q.PaddedCols / q.GroupSize
}

// GroupCols is the number of columns a scale covers: the group size, or the whole row.
func (q *Quantization) GroupCols() int {
	if q.GroupSize == 0 {
		return q.Cols
	}
	return q.GroupSize
}

// cols is the stored row length: padded to whole groups.
func (q *Quantization) cols() int {
	if q.GroupSize == 0 {
		return q.Cols
	}
	return q.PaddedCols
}

// Validate checks a recorded quantization against its scheme and the tensor it stands for
// (shape [rows, cols]).
func (q *Quantization) Validate(shape []int) error {
	s, err := Of(q.Type)
	if err != nil {
		return err
	}
	switch {
	case q.ScaleDType != safetensors.F32 && q.ScaleDType != safetensors.F16:
		return fmt.Errorf("scale_dtype %q is not F32 or F16", q.ScaleDType)
	case len(shape) != 2:
		return fmt.Errorf("only 2-D weights are quantized; this tensor has shape %v", shape)
	case q.Rows != shape[0] || q.Cols != shape[1]:
		return fmt.Errorf("rows x cols %d x %d disagree with the tensor's shape %v", q.Rows, q.Cols, shape)
	case !s.Grouped && (q.GroupSize != 0 || q.PaddedCols != 0):
		return fmt.Errorf("%s has a scale per row, without group_size or padded_cols", q.Type)
	case !s.Asymmetric && !q.Symmetric:
		return fmt.Errorf("%s is symmetric only", q.Type)
	case s.GGML != nil && q.Symmetric == s.Asymmetric:
		return fmt.Errorf("%s is asymmetric only", q.Type)
	case s.GGML != nil && q.GroupSize != s.GGML.Values:
		return fmt.Errorf("%s is llama.cpp's blocks of %d weights, not group_size %d", q.Type, s.GGML.Values, q.GroupSize)
	case s.GGML != nil && q.ScaleDType != safetensors.F16:
		return fmt.Errorf("%s stores its scales as F16, not %s", q.Type, q.ScaleDType)
	case s.GGML != nil && q.Cols%s.GGML.Values != 0:
		return fmt.Errorf("%s needs rows of whole blocks of %d weights; a row here has %d", q.Type, s.GGML.Values, q.Cols)
	case s.Grouped && q.GroupSize < 2:
		return fmt.Errorf("group_size %d must be at least 2", q.GroupSize)
	case s.Grouped && q.GroupSize*s.Bits%8 != 0:
		return fmt.Errorf("group_size %d must fill whole bytes of %d-bit codes", q.GroupSize, s.Bits)
	case s.Grouped && q.PaddedCols != PaddedCols(q.Cols, q.GroupSize):
		return fmt.Errorf("padded_cols %d, want cols %d rounded up to a whole group of %d (%d)", q.PaddedCols, q.Cols, q.GroupSize, PaddedCols(q.Cols, q.GroupSize))
	case s.Grouped && s.GGML == nil && !slices.Contains(s.GroupSizes, q.GroupSize):
		return fmt.Errorf("group_size %d is not one of %s's (%s)", q.GroupSize, q.Type, intList(s.GroupSizes))
	}
	return nil
}

// MaxScale bounds a stored quantization scale or minimum: weights are far smaller than this times
// the largest code, and a larger one (or Inf, NaN) is a broken or hostile file, or weights no
// quantized type here holds.
const MaxScale = 1e4

// BadScale reports whether x may not be a stored scale or minimum (NaN, or past MaxScale in size).
func BadScale(x float32) bool { return x != x || x > MaxScale || x < -MaxScale }

// PaddedCols is cols rounded up to a whole number of groups.
func PaddedCols(cols, group int) int { return (cols + group - 1) / group * group }

// Part is one stored tensor of a quantized tensor: its name's suffix, dtype and shape.
type Part struct {
	Suffix string
	DType  safetensors.DType
	Shape  []int
}

// Parts lists the stored tensors of a quantized tensor: codes, scales ([rows] for a scale per
// row, else [rows, groups]) and, asymmetric only, minimums; llama.cpp's blocks are one tensor.
func (q *Quantization) Parts() []Part {
	s := q.Scheme()
	cdt, cshape := s.codes(q)
	if s.GGML != nil { // the blocks hold the scales
		return []Part{{QWeightSuffix, cdt, cshape}}
	}
	scales := []int{q.Rows}
	if s.Grouped {
		scales = []int{q.Rows, q.Groups()}
	}
	out := []Part{{QWeightSuffix, cdt, cshape}, {ScalesSuffix, q.ScaleDType, scales}}
	if !q.Symmetric {
		out = append(out, Part{MinsSuffix, q.ScaleDType, scales})
	}
	return out
}

// IsPart reports whether name ends in the suffix of a stored part, and returns the quantized
// tensor's name.
func IsPart(name string) (base string, ok bool) {
	for _, suf := range []string{QWeightSuffix, ScalesSuffix, MinsSuffix} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			return b, true
		}
	}
	return "", false
}

// 4-bit codes are stored two to a byte, the first of a pair in the low nibble: ours in order
// along a row (code c in byte c/2), llama.cpp's q4 blocks weight j with weight j+16. The graph
// unpacks them with its own ops (graph/dequant.go); every host reader and writer uses these.

// PackNibbles is the byte holding the stored 4-bit values lo (low nibble) and hi.
func PackNibbles(lo, hi int) byte { return byte(lo&15) | byte(hi&15)<<4 }

// Nibbles are the two stored 4-bit values of b: low nibble, high nibble.
func Nibbles(b byte) (lo, hi int) { return int(b & 15), int(b >> 4) }
