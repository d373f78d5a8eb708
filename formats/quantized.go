package formats

import (
	"strings"
)

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

// storedSpec is a tensor as stored: DType "" means any float type.
type storedSpec struct {
	Spec
	DType DType
}

// Groups is the number of int4 groups per row.
func (q *QuantSpec) Groups() int {
	if q.Type != "int4" {
		return 1
	}
	return q.PaddedCols / q.GroupSize
}

// Parts lists the stored tensors of a quantized tensor.
func (q *QuantSpec) Parts(component, name string) []storedSpec {
	sd := DType(q.ScaleDType)
	if q.Type == "int8" {
		return []storedSpec{
			{Spec{Component: component, Name: name + QWeightSuffix, Shape: []int{q.Rows, q.Cols}}, I8},
			{Spec{Component: component, Name: name + ScalesSuffix, Shape: []int{q.Rows}}, sd},
		}
	}
	g := q.Groups()
	out := []storedSpec{
		{Spec{Component: component, Name: name + QWeightSuffix, Shape: []int{q.Rows, q.PaddedCols / 2}}, U8},
		{Spec{Component: component, Name: name + ScalesSuffix, Shape: []int{q.Rows, g}}, sd},
	}
	if !q.Symmetric {
		out = append(out, storedSpec{Spec{Component: component, Name: name + MinsSuffix, Shape: []int{q.Rows, g}}, sd})
	}
	return out
}

// storedSpecs is ExpectedTensors with each quantized tensor replaced by its parts (when quantized
// is true; a checkpoint source never holds quantized tensors).
func storedSpecs(c *Config, quantized bool) []storedSpec {
	var out []storedSpec
	for _, s := range ExpectedTensors(c) {
		if q, ok := c.Quantization[s.Component+"/"+s.Name]; ok && quantized {
			out = append(out, q.Parts(s.Component, s.Name)...)
			continue
		}
		out = append(out, storedSpec{Spec: s})
	}
	return out
}

// QuantOf returns the quantization of a logical tensor, or nil.
func (c *Config) QuantOf(component, name string) *QuantSpec {
	if q, ok := c.Quantization[component+"/"+name]; ok {
		return &q
	}
	return nil
}

// isQuantPart reports whether t is a part of a quantized tensor (never converted on write).
func (c *Config) isQuantPart(t *Tensor) bool {
	for _, suf := range []string{QWeightSuffix, ScalesSuffix, MinsSuffix} {
		if base, ok := strings.CutSuffix(t.Name, suf); ok {
			if _, q := c.Quantization[t.Component+"/"+base]; q {
				return true
			}
		}
	}
	return false
}
