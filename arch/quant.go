package arch

import (
	"fmt"

	"github.com/btconvert/btconvert/quant/scheme"
)

// QualityLimits are the limits of the coarsest scheme c's tensors are quantized to (see
// scheme.Scheme); ok is false for a model that is not quantized.
func (c *Config) QualityLimits() (maxPPLRatio, minTop1 float64, ok bool) {
	for _, q := range c.Quantization {
		s, err := scheme.Of(q.Type)
		if err != nil {
			continue // Validate refuses it
		}
		if !ok || s.MaxPPLRatio > maxPPLRatio {
			maxPPLRatio, minTop1, ok = s.MaxPPLRatio, s.MinTop1, true
		}
	}
	return maxPPLRatio, minTop1, ok
}

// QuantParts lists the stored tensors of the quantized tensor component/name (scheme's Parts), as
// specs with no identity of their own.
func QuantParts(q *scheme.Quantization, component, name string) []TensorSpec {
	var out []TensorSpec
	for _, p := range q.Parts() {
		out = append(out, TensorSpec{Component: component, Name: name + p.Suffix, Layer: NoLayer, Shape: p.Shape, DType: p.DType, Role: RoleQuantPart})
	}
	return out
}

// QuantOf returns the quantization of a logical tensor, or nil.
func (c *Config) QuantOf(component, name string) *scheme.Quantization {
	if q, ok := c.Quantization[component+"/"+name]; ok {
		return &q
	}
	return nil
}

// IsQuantPart reports whether the stored tensor component/name is a part of a quantized tensor
// (written as it is, never converted).
func (c *Config) IsQuantPart(component, name string) bool {
	base, ok := scheme.IsPart(name)
	_, q := c.Quantization[component+"/"+base]
	return ok && q
}

// String is the provenance line of a quantized model: "int4 g64 asymmetric, gptq, calibrated on
// GPL-2 (sha256 0123456789ab, 18176 tokens), btconvert v0.3.0".
func (p *QuantProvenance) String() string {
	d := string(p.Type)
	if s, err := scheme.Of(p.Type); err == nil {
		d = s.Describe(p.GroupSize, p.Symmetric)
	}
	d += ", " + p.Method
	if p.Calibration != "" {
		d += fmt.Sprintf(", calibrated on %s (sha256 %s, %d tokens)", p.Calibration, p.CalibrationSHA256[:min(12, len(p.CalibrationSHA256))], p.CalibrationTokens)
	}
	return d + ", btconvert " + p.Tool
}

// Bytes is the stored size of a tensor of this spec (a float one at its fixed DType only).
func (s TensorSpec) Bytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		n *= int64(d)
	}
	return n
}
