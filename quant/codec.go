package quant

import (
	"fmt"

	"github.com/btconvert/btconvert/quant/scheme"
)

// Stored is a quantized weight as its scheme stores it: the code bytes (scheme.Scheme says
// their layout), the scales and, asymmetric only, the minimums.
type Stored struct {
	Codes        []byte
	Scales, Mins []float32
}

// codec is one scheme's algorithms: fitting a float weight to the codes (round-to-nearest or the
// scale search, or GPTQ when a Hessian is given) and rebuilding the floats from them. There is one
// per scheme.Scheme (a test checks it); everything in this package reaches a scheme's
// algorithms through codecOf.
type codec struct {
	encode func(w []float32, q *scheme.Quantization, h []float64, o Options) (Stored, error)
	decode func(q *scheme.Quantization, s Stored) []float32
}

var codecs = map[scheme.Type]codec{
	scheme.Int8: {
		encode: func(w []float32, q *scheme.Quantization, h []float64, o Options) (Stored, error) {
			var x *Int8Weight
			if h != nil {
				var err error
				if x, err = GPTQInt8(w, q.Rows, q.Cols, h, o); err != nil {
					return Stored{}, err
				}
			} else {
				x = QuantizeInt8(w, q.Rows, q.Cols, o)
			}
			codes := make([]byte, len(x.Codes))
			for i, c := range x.Codes {
				codes[i] = byte(c)
			}
			return Stored{Codes: codes, Scales: x.Scales}, nil
		},
		decode: func(q *scheme.Quantization, s Stored) []float32 {
			codes := make([]int8, len(s.Codes))
			for i, b := range s.Codes {
				codes[i] = int8(b)
			}
			return (&Int8Weight{Codes: codes, Scales: s.Scales}).Dequantize(q.Rows, q.Cols)
		},
	},
	scheme.Int4: {
		encode: func(w []float32, q *scheme.Quantization, h []float64, o Options) (Stored, error) {
			var x *Int4Weight
			if h != nil {
				var err error
				if x, err = GPTQInt4(w, q.Rows, q.Cols, h, o); err != nil {
					return Stored{}, err
				}
			} else {
				x = QuantizeInt4(w, q.Rows, q.Cols, o)
			}
			return Stored{Codes: x.Packed, Scales: x.Scales, Mins: x.Mins}, nil
		},
		decode: func(q *scheme.Quantization, s Stored) []float32 {
			return (&Int4Weight{Packed: s.Codes, Scales: s.Scales, Mins: s.Mins, PaddedCols: q.PaddedCols}).Dequantize(q.Rows, q.Cols, q.GroupSize, q.Symmetric)
		},
	},
}

func init() {
	for _, t := range []scheme.Type{scheme.Q8_0, scheme.Q4_0, scheme.Q4_1, scheme.Q4_K, scheme.Q6_K} {
		codecs[t] = ggmlCodec
	}
}

// codecOf returns the algorithms of q's scheme.
func codecOf(t scheme.Type) (codec, error) {
	c, ok := codecs[t]
	if !ok {
		return codec{}, fmt.Errorf("btconvert cannot quantize to %s: no algorithm for that scheme", t)
	}
	return c, nil
}

// Encode quantizes a row-major [rows, cols] weight to the record q (made by its scheme's Record):
// round-to-nearest or the scale search as o says, GPTQ when the Hessian h (E[x x^T], [cols, cols])
// is not nil.
func Encode(w []float32, q *scheme.Quantization, h []float64, o Options) (Stored, error) {
	c, err := codecOf(q.Type)
	if err != nil {
		return Stored{}, err
	}
	o.GroupSize, o.Symmetric = q.GroupSize, q.Symmetric
	return c.encode(w, q, h, o)
}

// Decode rebuilds the row-major [rows, cols] float weight s stands for.
func Decode(q *scheme.Quantization, s Stored) ([]float32, error) {
	c, err := codecOf(q.Type)
	if err != nil {
		return nil, err
	}
	return c.decode(q, s), nil
}

// options are the algorithm options of a tensor recorded as q, quantized under settings s with
// column importance imp.
func (s Settings) options(q *scheme.Quantization, imp []float32) Options {
	return Options{GroupSize: q.GroupSize, Symmetric: q.Symmetric, Search: s.Search, F16Scales: s.F16Scales, Importance: imp}
}
