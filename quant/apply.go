package quant

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/formats"
)

// Apply returns the quantized model the plan describes. Tensors are quantized lazily, one at a
// time, as the writer asks for them: each quantized tensor is computed once for its parts and
// dropped after its last part is read. importance maps "component/name" to the calibration
// weight of each input column (may be nil).
func Apply(m *formats.Model, p *Plan, importance map[string][]float32) *formats.Model {
	cfg := *m.Config
	cfg.Quantization = map[string]formats.QuantSpec{}
	s := p.Settings
	scaleDT := formats.F32
	if s.F16Scales {
		scaleDT = formats.F16
	}
	var out []*formats.Tensor
	for i, t := range m.Tensors {
		e := p.Entries[i]
		if e.To != "int8" && e.To != "int4" {
			to, _ := formats.ParseDType(e.To)
			src := t
			out = append(out, formats.NewTensor(t.Component, t.Name, to, t.Shape, t.SrcFile, t.SrcName, func() ([]byte, error) {
				raw, err := src.Raw()
				if err != nil {
					return nil, err
				}
				return formats.ConvertRaw(src.DType, to, raw)
			}))
			continue
		}
		rows, cols := t.Shape[0], t.Shape[1]
		q := formats.QuantSpec{Type: e.To, Symmetric: e.To == "int8" || s.Symmetric, ScaleDType: string(scaleDT), Rows: rows, Cols: cols}
		if e.To == "int4" {
			q.GroupSize, q.PaddedCols = s.GroupSize, PaddedCols(cols, s.GroupSize)
		}
		cfg.Quantization[t.Key()] = q
		job := &lazyQuant{src: t, spec: q, opts: Options{GroupSize: s.GroupSize, Symmetric: q.Symmetric, Search: s.Search,
			F16Scales: s.F16Scales, Importance: importance[t.Key()]}, scaleDT: scaleDT}
		parts := q.Parts(t.Component, t.Name)
		job.remaining = len(parts)
		for k, part := range parts {
			k := k
			out = append(out, formats.NewTensor(t.Component, part.Name, part.DType, part.Shape, t.SrcFile, t.SrcName, func() ([]byte, error) {
				return job.part(k)
			}))
		}
	}
	return m.Derive(m.Format, &cfg, out)
}

// lazyQuant quantizes one tensor on first demand and serves its parts.
type lazyQuant struct {
	src       *formats.Tensor
	spec      formats.QuantSpec
	opts      Options
	scaleDT   formats.DType
	mu        sync.Mutex
	parts     [][]byte
	remaining int
}

func (l *lazyQuant) part(k int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parts == nil {
		w, err := l.src.Float32()
		if err != nil {
			return nil, err
		}
		if l.spec.Type == "int8" {
			q := QuantizeInt8(w, l.spec.Rows, l.spec.Cols, l.opts)
			codes := make([]byte, len(q.Codes))
			for i, c := range q.Codes {
				codes[i] = byte(c)
			}
			l.parts = [][]byte{codes, encodeScales(q.Scales, l.scaleDT)}
		} else {
			q := QuantizeInt4(w, l.spec.Rows, l.spec.Cols, l.opts)
			l.parts = [][]byte{q.Packed, encodeScales(q.Scales, l.scaleDT)}
			if !l.spec.Symmetric {
				l.parts = append(l.parts, encodeScales(q.Mins, l.scaleDT))
			}
		}
	}
	b := l.parts[k]
	if l.remaining--; l.remaining == 0 {
		l.parts = nil // all parts served: free the memory (a second pass recomputes)
		l.remaining = len(l.spec.Parts("", ""))
	}
	return b, nil
}

func encodeScales(v []float32, dt formats.DType) []byte {
	if dt == formats.F16 {
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
		}
		return out
	}
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}
