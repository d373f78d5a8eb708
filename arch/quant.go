package arch

import (
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// QuantType is how a quantized tensor stores its values.
type QuantType string

// QualityLimits are the limits of the coarsest scheme c's tensors are quantized to (see
// QuantScheme); ok is false for a model that is not quantized.
func (c *Config) QualityLimits() (maxPPLRatio, minTop1 float64, ok bool) {
	for _, q := range c.Quantization {
		s, err := SchemeOf(q.Type)
		if err != nil {
			continue // Validate refuses it
		}
		if !ok || s.MaxPPLRatio > maxPPLRatio {
			maxPPLRatio, minTop1, ok = s.MaxPPLRatio, s.MinTop1, true
		}
	}
	return maxPPLRatio, minTop1, ok
}

// Quantization records how one tensor is quantized (docs/FORMAT.md).
type Quantization struct {
	Type       QuantType         `json:"type"`
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
// llama.cpp's types (q8_0, q4_0, q4_1) are NAME.qweight alone: U8 [rows, cols/32 * block bytes],
// each row its blocks (GGMLBlock).
//
// (QuantScheme.codes and Parts produce these from the scheme.)
const (
	QWeightSuffix = ".qweight"
	ScalesSuffix  = ".scales"
	MinsSuffix    = ".mins"
)

// Scheme is the scheme of q's type (nil for a type Validate refuses).
func (q *Quantization) Scheme() *QuantScheme {
	s, _ := SchemeOf(q.Type)
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
	s, err := SchemeOf(q.Type)
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
		return fmt.Errorf("%s needs rows of whole blocks of %d weights; a row here has %d (quantize this tensor to int8 or int4 with --tensor-type)", q.Type, s.GGML.Values, q.Cols)
	case s.Grouped && q.GroupSize < 2:
		return fmt.Errorf("group_size %d must be at least 2", q.GroupSize)
	case s.Grouped && q.GroupSize*s.Bits%8 != 0:
		return fmt.Errorf("group_size %d must fill whole bytes of %d-bit codes", q.GroupSize, s.Bits)
	case s.Grouped && q.PaddedCols != PaddedCols(q.Cols, q.GroupSize):
		return fmt.Errorf("padded_cols %d, want cols %d rounded up to a whole group of %d (%d)", q.PaddedCols, q.Cols, q.GroupSize, PaddedCols(q.Cols, q.GroupSize))
	}
	return nil
}

// PaddedCols is cols rounded up to a whole number of groups.
func PaddedCols(cols, group int) int { return (cols + group - 1) / group * group }

// Parts lists the stored tensors of a quantized tensor: codes, scales ([rows] for a scale per
// row, else [rows, groups]) and, asymmetric only, minimums.
func (q *Quantization) Parts(component, name string) []TensorSpec {
	s := q.Scheme()
	sd := q.ScaleDType
	part := func(suffix string, dt safetensors.DType, shape ...int) TensorSpec {
		return TensorSpec{Component: component, Name: name + suffix, Layer: NoLayer, Shape: shape, DType: dt, Role: RoleQuantPart}
	}
	cdt, cshape := s.codes(q)
	if s.GGML != nil { // the blocks hold the scales
		return []TensorSpec{part(QWeightSuffix, cdt, cshape...)}
	}
	scales := []int{q.Rows}
	if s.Grouped {
		scales = []int{q.Rows, q.Groups()}
	}
	out := []TensorSpec{part(QWeightSuffix, cdt, cshape...), part(ScalesSuffix, sd, scales...)}
	if !q.Symmetric {
		out = append(out, part(MinsSuffix, sd, scales...))
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

// String is the provenance line of a quantized model: "int4 g64 asymmetric, gptq, calibrated on
// GPL-2 (sha256 0123456789ab, 18176 tokens), btconvert v0.3.0".
func (p *QuantProvenance) String() string {
	d := string(p.Type)
	if s, err := SchemeOf(p.Type); err == nil {
		d = s.Describe(p.GroupSize, p.Symmetric)
	}
	d += ", " + p.Method
	if p.Calibration != "" {
		d += fmt.Sprintf(", calibrated on %s (sha256 %s, %d tokens)", p.Calibration, p.CalibrationSHA256[:min(12, len(p.CalibrationSHA256))], p.CalibrationTokens)
	}
	return d + ", btconvert " + p.Tool
}
