package quant

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/quant/scheme"
)

// llama.cpp's block types, quantized as its reference quantizers do (ggml-quants.c,
// quantize_row_q8_0_ref / q4_0_ref / q4_1_ref, and the k-quants in kquants.go: what llama-quantize runs without an importance
// matrix), so that the same weights give the same bytes; fixtures/ggml holds bytes made by
// llama.cpp's own Python package to prove it (ggml_test.go). Every step is float32 as there,
// except Q4_0's x*id + 8.5, which the reference's build contracts into one multiply-add: the
// product is exact in float64, then rounded once to float32.

// ggmlEncode quantizes a row-major [rows, cols] weight (cols a whole number of blocks) to q's blocks.
func ggmlEncode(w []float32, q *scheme.Quantization) []byte {
	b := q.Scheme().GGML
	per := q.Cols / b.Values // blocks per row
	out := make([]byte, q.Rows*per*b.Bytes)
	parallel(q.Rows, func(r int) {
		for i := r * per; i < (r+1)*per; i++ {
			x, blk := w[i*b.Values:(i+1)*b.Values], out[i*b.Bytes:(i+1)*b.Bytes]
			switch q.Type {
			case scheme.Q8_0:
				encodeQ8_0(x, blk)
			case scheme.Q4_0:
				encodeQ4_0(x, blk)
			case scheme.Q4_1:
				encodeQ4_1(x, blk)
			case scheme.Q4_K:
				encodeQ4K(x, blk)
			case scheme.Q6_K:
				encodeQ6K(x, blk)
			}
		}
	})
	return out
}

func putF16(b []byte, v float32) { binary.LittleEndian.PutUint16(b, float16.Fromfloat32(v).Bits()) }

func getF16(b []byte) float32 { return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32() }

// roundAway is C's roundf: half away from zero.
func roundAway(v float32) float32 { return float32(math.Round(float64(v))) }

func inverse(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

func encodeQ8_0(x []float32, blk []byte) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	id := inverse(d)
	putF16(blk, d)
	for j, v := range x {
		blk[2+j] = byte(int8(roundAway(v * id)))
	}
}

func encodeQ4_0(x []float32, blk []byte) {
	var amax, mx float32 // the value of largest magnitude, the first one on a tie
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, mx = a, v
		}
	}
	d := mx / -8
	id := inverse(d)
	putF16(blk, d)
	code := func(v float32) int {
		return int(min(15, int8(float32(float64(v)*float64(id)+8.5))))
	}
	h := len(x) / 2
	for j := range h {
		blk[2+j] = scheme.PackNibbles(code(x[j]), code(x[j+h]))
	}
}

func encodeQ4_1(x []float32, blk []byte) {
	mn, mx := x[0], x[0]
	for _, v := range x {
		mn, mx = min(mn, v), max(mx, v)
	}
	d := (mx - mn) / 15
	id := inverse(d)
	putF16(blk, d)
	putF16(blk[2:], mn)
	code := func(v float32) int {
		return int(min(15, int8(float32((v-mn)*id)+0.5))) // rounded before the add, as there
	}
	h := len(x) / 2
	for j := range h {
		blk[4+j] = scheme.PackNibbles(code(x[j]), code(x[j+h]))
	}
}

// ggmlDecode rebuilds the row-major float weight of q's blocks.
func ggmlDecode(q *scheme.Quantization, codes []byte) []float32 {
	b := q.Scheme().GGML
	out := make([]float32, q.Rows*q.Cols)
	for i := range len(out) / b.Values {
		blk, x := codes[i*b.Bytes:(i+1)*b.Bytes], out[i*b.Values:(i+1)*b.Values]
		switch q.Type {
		case scheme.Q4_K:
			decodeQ4K(blk, x)
			continue
		case scheme.Q6_K:
			decodeQ6K(blk, x)
			continue
		}
		d := getF16(blk)
		h := b.Values / 2
		switch q.Type {
		case scheme.Q8_0:
			for j := range x {
				x[j] = float32(int8(blk[2+j])) * d
			}
		case scheme.Q4_0:
			for j := range h {
				lo, hi := scheme.Nibbles(blk[2+j])
				x[j], x[j+h] = float32(lo-8)*d, float32(hi-8)*d
			}
		case scheme.Q4_1:
			m := getF16(blk[2:])
			for j := range h {
				lo, hi := scheme.Nibbles(blk[4+j])
				x[j], x[j+h] = float32(lo)*d+m, float32(hi)*d+m
			}
		}
	}
	return out
}

// ggmlCodec is the codec of every llama.cpp type: its reference rounding only, whatever the
// options and statistics (the scale search, GPTQ or an importance would give other bytes than
// llama-quantize; Settings.Resolve turns the search off and Quantize refuses calibration for them).
var ggmlCodec = codec{
	encode: func(w []float32, q *scheme.Quantization, _ []float64, _ Options) (Stored, error) {
		return Stored{Codes: ggmlEncode(w, q)}, nil
	},
	decode: func(q *scheme.Quantization, s Stored) []float32 { return ggmlDecode(q, s.Codes) },
}
