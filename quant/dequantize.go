package quant

import (
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Dequantized returns m with every quantized tensor rebuilt as a float tensor of dtype to (lazily,
// one at a time), for layouts that have no quantized tensors (export --format official).
func Dequantized(m *formats.Model, to safetensors.DType) (*formats.Model, error) {
	if len(m.Config.Quantization) == 0 {
		return m, nil
	}
	cfg := *m.Config
	cfg.Quantization = nil
	parts := map[string]*formats.Tensor{}
	for _, t := range m.Tensors {
		parts[t.Key()] = t
	}
	var out []*formats.Tensor
	for _, spec := range arch.Tensors(&cfg) {
		key := spec.Key()
		q := m.Config.QuantOf(spec.Component, spec.Name)
		if q == nil {
			t := parts[key]
			if t == nil {
				return nil, errs.Tensor(m.Path, key, "missing")
			}
			out = append(out, t)
			continue
		}
		q2 := *q
		get := func(suffix string) *formats.Tensor { return parts[key+suffix] }
		qw, sc, mn := get(scheme.QWeightSuffix), get(scheme.ScalesSuffix), get(scheme.MinsSuffix)
		out = append(out, formats.NewTensor(spec.Component, spec.Name, to, spec.Shape, qw.SrcFile, strings.TrimSuffix(qw.SrcName, scheme.QWeightSuffix), func() ([]byte, error) {
			w, err := dequantizeParts(&q2, qw, sc, mn)
			if err != nil {
				return nil, err
			}
			return safetensors.FromFloat32(to, w)
		}))
	}
	return m.Derive(m.Format, &cfg, out), nil
}

func floats(t *formats.Tensor) ([]float32, error) {
	if t == nil {
		return nil, nil
	}
	return t.Float32()
}

func dequantizeParts(q *scheme.Quantization, qw, sc, mn *formats.Tensor) ([]float32, error) {
	raw, err := qw.Raw()
	if err != nil {
		return nil, err
	}
	scales, err := floats(sc)
	if err != nil {
		return nil, err
	}
	mins, err := floats(mn)
	if err != nil {
		return nil, err
	}
	return Decode(q, Stored{Codes: raw, Scales: scales, Mins: mins})
}
