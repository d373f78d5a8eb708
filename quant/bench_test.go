package quant

import (
	"testing"
)

// The quantization benchmarks run on one b4_85-sized weight (an MLP down projection, 768 x 4096,
// f32) with LayerNorm-like importance; MB/s counts the f32 input.
//
//	go test ./quant -run XXX -bench Quantize -benchtime 3x
const benchRows, benchCols = 768, 4096

func benchWeights() ([]float32, []float32) {
	w := randWeights(benchRows, benchCols, 21)
	imp := randWeights(1, benchCols, 22)
	for i := range imp {
		imp[i] = 1 + 50*imp[i]*imp[i]
	}
	return w, imp
}

func BenchmarkQuantizeInt8RTN(b *testing.B)    { benchInt8(b, Options{}) }
func BenchmarkQuantizeInt8Search(b *testing.B) { benchInt8(b, Options{Search: true}) }
func BenchmarkQuantizeInt4RTN(b *testing.B)    { benchInt4(b, Options{GroupSize: 64}) }
func BenchmarkQuantizeInt4Search(b *testing.B) { benchInt4(b, Options{GroupSize: 64, Search: true}) }

func benchInt8(b *testing.B, o Options) {
	benchScheme(b, o, func(w []float32, o Options) { QuantizeInt8(w, benchRows, benchCols, o) })
}

func benchInt4(b *testing.B, o Options) {
	benchScheme(b, o, func(w []float32, o Options) { QuantizeInt4(w, benchRows, benchCols, o) })
}

func benchScheme(b *testing.B, o Options, quantize func([]float32, Options)) {
	w, imp := benchWeights()
	o.Importance = imp
	b.SetBytes(int64(4 * len(w)))
	for i := 0; i < b.N; i++ {
		quantize(w, o)
	}
}

// BenchmarkGPTQSolve is the per-layer GPTQ solve (int4 g64) of that weight with a 4096 x 4096
// second moment, calibration excluded.
func BenchmarkGPTQSolve(b *testing.B) {
	w, _ := benchWeights()
	// E[x x^T] of strongly correlated inputs x_j = z + 0.3 e_j (z, e_j standard normal).
	h := make([]float64, benchCols*benchCols)
	for i := range h {
		h[i] = 1
	}
	for j := 0; j < benchCols; j++ {
		h[j*benchCols+j] += 0.09
	}
	b.SetBytes(int64(4 * len(w)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := GPTQInt4(w, benchRows, benchCols, h, Options{GroupSize: 64, Search: true}); err != nil {
			b.Fatal(err)
		}
	}
}
