package arch

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// QuantScheme is everything about one quantized type that is not an algorithm: how its codes are
// stored, how they are grouped, which settings it takes and their defaults, how it reads in a
// provenance line, and the quality a model quantized to it must keep. The record of a tensor
// (Quantization), the planner and quantizer (quant), the in-graph dequantization (graph) and the
// export gate all ask it; none of them names a type. A new scheme is one more entry in
// quantSchemes (plus its fitting in quant and, for a new code width, unpacking in graph, which
// refuse a width they do not know).
type QuantScheme struct {
	Type QuantType
	// Bits is the code width: 8 (one code per I8 byte) or 4 (two per U8 byte, low nibble first,
	// stored as code+8 when symmetric).
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
	Int8 QuantType = "int8" // per output row, symmetric, q in -127..127
	Int4 QuantType = "int4" // per group of the input dim, asymmetric (scale, min) or symmetric
	Q8_0 QuantType = "q8_0" // llama.cpp's blocks of 32: f16 scale, 32 int8 codes
	Q4_0 QuantType = "q4_0" // llama.cpp's blocks of 32: f16 scale, 16 bytes of 4-bit codes
	Q4_1 QuantType = "q4_1" // llama.cpp's blocks of 32: f16 scale and minimum, 16 bytes of codes
)

// GGMLBlock is the layout of one of llama.cpp's blocks (ggml-common.h, block_q8_0 / block_q4_0 /
// block_q4_1): a little-endian f16 scale, an f16 minimum when the scheme is asymmetric, then the
// codes of Values weights. 4-bit codes pack weight j of the block in the low nibble of byte j
// and weight j+16 in its high nibble, stored as code+8 when symmetric.
type GGMLBlock struct {
	Values int // weights per block
	Bytes  int // bytes per block
}

// Scales calls f with each block's f16 scale and, with minimum, f16 minimum, in raw (whole
// blocks, row after row), until f returns false.
func (b *GGMLBlock) Scales(raw []byte, minimum bool, f func(block int, v float32) bool) {
	fields := []int{0}
	if minimum {
		fields = append(fields, 2)
	}
	for i := 0; i+b.Bytes <= len(raw); i += b.Bytes {
		for _, at := range fields {
			if !f(i/b.Bytes, float16.Frombits(binary.LittleEndian.Uint16(raw[i+at:])).Float32()) {
				return
			}
		}
	}
}

// quantSchemes are every scheme: btconvert's own, then llama.cpp's; each width's finest first (a
// width's first scheme is what mlx-lm's --q-bits means).
var quantSchemes = []*QuantScheme{
	{Type: Int8, Bits: 8, Embeddings: true, SymLevels: [2]int{-127, 127}, MaxPPLRatio: 1.01, MinTop1: 0.95},
	// Group sizes: each a whole number of bytes of codes and a divisor of the usual widths; 64 is
	// the measured balance of size and quality here (docs/QUANTIZATION.md), llama.cpp's q4 is 32.
	{Type: Int4, Bits: 4, Grouped: true, GroupSizes: []int{32, 64, 128}, DefaultGroupSize: 64, Asymmetric: true,
		SymLevels: [2]int{-8, 7}, AsymLevels: [2]int{0, 15}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	{Type: Q8_0, Bits: 8, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, GGML: &GGMLBlock{Values: 32, Bytes: 34}, Embeddings: true,
		SymLevels: [2]int{-127, 127}, MaxPPLRatio: 1.01, MinTop1: 0.95},
	{Type: Q4_0, Bits: 4, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, GGML: &GGMLBlock{Values: 32, Bytes: 18},
		SymLevels: [2]int{-8, 7}, MaxPPLRatio: 1.06, MinTop1: 0.80},
	{Type: Q4_1, Bits: 4, Grouped: true, GroupSizes: []int{32}, DefaultGroupSize: 32, Asymmetric: true, GGML: &GGMLBlock{Values: 32, Bytes: 20},
		AsymLevels: [2]int{0, 15}, MaxPPLRatio: 1.06, MinTop1: 0.80},
}

// QuantSchemes lists every scheme (see quantSchemes).
func QuantSchemes() []*QuantScheme { return quantSchemes }

// SchemeOf returns the scheme of type t, or an error naming the known ones.
func SchemeOf(t QuantType) (*QuantScheme, error) {
	for _, s := range quantSchemes {
		if s.Type == t {
			return s, nil
		}
	}
	return nil, fmt.Errorf("type %q is not %s", t, schemeNames())
}

func schemeNames() string {
	var n []string
	for _, q := range quantSchemes {
		n = append(n, string(q.Type))
	}
	return orList(n)
}

// orList is "a", "a or b", "a, b or c".
func orList(v []string) string {
	if len(v) < 2 {
		return strings.Join(v, "")
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

// Levels are the code range of the symmetric or asymmetric variant.
func (s *QuantScheme) Levels(symmetric bool) (lo, hi int) {
	if symmetric {
		return s.SymLevels[0], s.SymLevels[1]
	}
	return s.AsymLevels[0], s.AsymLevels[1]
}

// CheckGroupSize says what is wrong with a group size for this scheme (0 is the default).
func (s *QuantScheme) CheckGroupSize(group int) error {
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
	return orList(n)
}

// Record is the quantization record of a [rows, cols] weight stored with this scheme (group 0:
// the default; symmetric is ignored by symmetric-only schemes).
func (s *QuantScheme) Record(rows, cols, group int, symmetric bool, scales safetensors.DType) Quantization {
	q := Quantization{Type: s.Type, Symmetric: symmetric || !s.Asymmetric, ScaleDType: scales, Rows: rows, Cols: cols}
	if s.GGML != nil { // its blocks fix all of it
		q.Symmetric, q.ScaleDType = !s.Asymmetric, safetensors.F16
	}
	if s.Grouped {
		q.GroupSize = group
		if q.GroupSize == 0 {
			q.GroupSize = s.DefaultGroupSize
		}
		q.PaddedCols = PaddedCols(cols, q.GroupSize)
	}
	return q
}

// codes is the stored dtype and shape of the codes of q.
func (s *QuantScheme) codes(q *Quantization) (safetensors.DType, []int) {
	if s.GGML != nil {
		return safetensors.U8, []int{q.Rows, q.Cols / s.GGML.Values * s.GGML.Bytes}
	}
	if s.Bits == 8 {
		return safetensors.I8, []int{q.Rows, q.cols()}
	}
	return safetensors.U8, []int{q.Rows, q.cols() * s.Bits / 8}
}

// Describe is the provenance line of a quantization with this scheme ("int4 g64 symmetric").
func (s *QuantScheme) Describe(group int, symmetric bool) string {
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

// Bytes is the stored size of a tensor of this spec (a float one at its fixed DType only).
func (s TensorSpec) Bytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		n *= int64(d)
	}
	return n
}
