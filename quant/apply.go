package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/formats"
)

// Apply returns the quantized model the plan describes. Tensors are quantized lazily, one at a
// time, as the writer asks for them: each quantized tensor is computed once for its parts and
// dropped after its last part is read. cal (may be nil) carries the calibration statistics.
func Apply(m *formats.Model, p *Plan, cal *Calibration) *formats.Model {
	if cal == nil {
		// No calibration text: weight the search by what the weights' own LayerNorms say.
		cal = &Calibration{Importance: LayerNormImportance(m)}
	}
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
			F16Scales: s.F16Scales, Importance: cal.Importance[t.Key()]}, scaleDT: scaleDT, hessian: cal.Hessian[t.Key()]}
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
	hessian   []float64 // E[x x^T] for GPTQ, or nil
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
			if l.hessian != nil {
				if q, err = GPTQInt8(w, l.spec.Rows, l.spec.Cols, l.hessian, l.opts); err != nil {
					return nil, fmt.Errorf("%s: %w", l.src.Key(), err)
				}
			}
			codes := make([]byte, len(q.Codes))
			for i, c := range q.Codes {
				codes[i] = byte(c)
			}
			l.parts = [][]byte{codes, encodeScales(q.Scales, l.scaleDT)}
		} else {
			var q *Int4
			if l.hessian != nil {
				if q, err = GPTQInt4(w, l.spec.Rows, l.spec.Cols, l.hessian, l.opts); err != nil {
					return nil, fmt.Errorf("%s: %w", l.src.Key(), err)
				}
			} else {
				q = QuantizeInt4(w, l.spec.Rows, l.spec.Cols, l.opts)
			}
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

// Calibration is what a calibration run measured, per "component/name" weight key.
type Calibration struct {
	Importance map[string][]float32 // mean square of each input column
	Hessian    map[string][]float64 // E[x x^T], row-major [in, in] (GPTQ), or nil
}

// LayerNormImportance is the data-free stand-in for calibration: a Linear fed by a LayerNorm sees
// inputs y_j = g_j z_j + b_j with z_j of zero mean and unit variance, so column j's mean square is
// g_j^2 + b_j^2. Linears not fed by a LayerNorm get no weights (uniform).
func LayerNormImportance(m *formats.Model) map[string][]float32 {
	out := map[string][]float32{}
	for _, t := range m.Tensors {
		var ln string
		switch {
		case strings.HasSuffix(t.Name, "attention.query_key_value.weight"):
			ln = strings.TrimSuffix(t.Name, "attention.query_key_value.weight") + "input_layernorm"
		case strings.HasSuffix(t.Name, "mlp.dense_h_to_4h.weight"):
			ln = strings.TrimSuffix(t.Name, "mlp.dense_h_to_4h.weight") + "post_attention_layernorm"
		case t.Name == "embed_out.weight":
			ln = "final_layer_norm"
		default:
			continue
		}
		g, err1 := m.Tensor(t.Component, ln+".weight").Float32()
		b, err2 := m.Tensor(t.Component, ln+".bias").Float32()
		if err1 != nil || err2 != nil {
			continue // unreadable here means unreadable on write too, where it is reported
		}
		v := make([]float32, len(g))
		for i := range g {
			v[i] = g[i]*g[i] + b[i]*b[i]
		}
		out[t.Key()] = v
	}
	return out
}
