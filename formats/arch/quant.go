package arch

import (
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// QuantType is how a quantized tensor stores its values.
type QuantType string

// The quantized types.
const (
	Int8 QuantType = "int8" // per output row, symmetric, q in -127..127
	Int4 QuantType = "int4" // per group of the input dim, asymmetric (scale, min) or symmetric
)

// QualityLimits are the quality a model quantized to this type must keep against its base to be
// exported when its report was recorded without limits of its own: a perplexity ratio at most
// maxPPLRatio and a top-1 agreement at least minTop1. They sit a margin past what the fixtures
// measure (docs/QUANTIZATION.md: int8 ppl ratio <= 1.0005, top-1 >= 0.988; int4 g64 <= 1.043
// and >= 0.845 even with round-to-nearest), far from a broken model.
func (t QuantType) QualityLimits() (maxPPLRatio, minTop1 float64) {
	if t == Int8 {
		return 1.01, 0.95
	}
	return 1.06, 0.80
}

// QualityLimits are the limits of the coarsest type c's tensors are quantized to (see
// QuantType.QualityLimits); ok is false for a model that is not quantized.
func (c *Config) QualityLimits() (maxPPLRatio, minTop1 float64, ok bool) {
	coarsest := QuantType("")
	for _, q := range c.Quantization {
		if coarsest == "" || q.Type == Int4 {
			coarsest = q.Type
		}
	}
	if coarsest == "" {
		return 0, 0, false
	}
	maxPPLRatio, minTop1 = coarsest.QualityLimits()
	return maxPPLRatio, minTop1, true
}

// Quantization records how one tensor is quantized (docs/FORMAT.md).
type Quantization struct {
	Type       QuantType         `json:"type"`
	GroupSize  int               `json:"group_size,omitempty"` // int4: elements per group along the input dim
	Symmetric  bool              `json:"symmetric"`
	ScaleDType safetensors.DType `json:"scale_dtype"`           // F32 or F16
	Rows       int               `json:"rows"`                  // logical shape [rows, cols]
	Cols       int               `json:"cols"`                  //
	PaddedCols int               `json:"padded_cols,omitempty"` // int4: cols rounded up to a whole group
}

// How a quantized tensor NAME is stored in its component file (docs/FORMAT.md):
//
//	NAME.qweight  int8: I8 [rows, cols]           int4: U8 [rows, padded_cols/2], low nibble first
//	NAME.scales   F32|F16 [rows] (int8)           F32|F16 [rows, groups] (int4)
//	NAME.mins     int4 asymmetric only: F32|F16 [rows, groups]
const (
	QWeightSuffix = ".qweight"
	ScalesSuffix  = ".scales"
	MinsSuffix    = ".mins"
)

// Groups is the number of int4 groups per row.
func (q *Quantization) Groups() int {
	if q.Type != Int4 {
		return 1
	}
	return q.PaddedCols / q.GroupSize
}

// Validate checks a recorded quantization against the tensor it stands for (shape [rows, cols]).
func (q *Quantization) Validate(shape []int) error {
	switch {
	case q.Type != Int8 && q.Type != Int4:
		return fmt.Errorf("type %q is not int8 or int4", q.Type)
	case q.ScaleDType != safetensors.F32 && q.ScaleDType != safetensors.F16:
		return fmt.Errorf("scale_dtype %q is not F32 or F16", q.ScaleDType)
	case len(shape) != 2:
		return fmt.Errorf("only 2-D weights are quantized; this tensor has shape %v", shape)
	case q.Rows != shape[0] || q.Cols != shape[1]:
		return fmt.Errorf("rows x cols %d x %d disagree with the tensor's shape %v", q.Rows, q.Cols, shape)
	case q.Type == Int8 && (q.GroupSize != 0 || q.PaddedCols != 0 || !q.Symmetric):
		return fmt.Errorf("int8 is symmetric per row, without group_size or padded_cols")
	case q.Type == Int4 && q.GroupSize < 2:
		return fmt.Errorf("group_size %d must be at least 2", q.GroupSize)
	case q.Type == Int4 && q.GroupSize%2 != 0:
		return fmt.Errorf("group_size %d must be even (two codes per byte)", q.GroupSize)
	case q.Type == Int4 && q.PaddedCols != PaddedCols(q.Cols, q.GroupSize):
		return fmt.Errorf("padded_cols %d, want cols %d rounded up to a whole group of %d (%d)", q.PaddedCols, q.Cols, q.GroupSize, PaddedCols(q.Cols, q.GroupSize))
	}
	return nil
}

// PaddedCols is cols rounded up to a whole number of groups.
func PaddedCols(cols, group int) int { return (cols + group - 1) / group * group }

// Parts lists the stored tensors of a quantized tensor.
func (q *Quantization) Parts(component, name string) []TensorSpec {
	sd := q.ScaleDType
	part := func(suffix string, dt safetensors.DType, shape ...int) TensorSpec {
		return TensorSpec{Component: component, Name: name + suffix, Layer: NoLayer, Shape: shape, DType: dt, Role: RoleQuantPart}
	}
	if q.Type == Int8 {
		return []TensorSpec{part(QWeightSuffix, safetensors.I8, q.Rows, q.Cols), part(ScalesSuffix, sd, q.Rows)}
	}
	g := q.Groups()
	out := []TensorSpec{part(QWeightSuffix, safetensors.U8, q.Rows, q.PaddedCols/2), part(ScalesSuffix, sd, q.Rows, g)}
	if !q.Symmetric {
		out = append(out, part(MinsSuffix, sd, q.Rows, g))
	}
	return out
}

// QuantOf returns the quantization of a logical tensor, or nil.
func (c *Config) QuantOf(component, name string) *Quantization {
	if q, ok := c.Quantization[component+"/"+name]; ok {
		return &q
	}
	return nil
}

// IsQuantPart reports whether the stored tensor component/name is a part of a quantized tensor
// (written as it is, never converted).
func (c *Config) IsQuantPart(component, name string) bool {
	for _, suf := range []string{QWeightSuffix, ScalesSuffix, MinsSuffix} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if _, q := c.Quantization[component+"/"+base]; q {
				return true
			}
		}
	}
	return false
}
