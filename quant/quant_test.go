package quant

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/btconvert/btconvert/formats"
)

func randWeights(rows, cols int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

func sqErr(a, b []float32) float64 {
	var e float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		e += d * d
	}
	return e
}

func TestInt8Exact(t *testing.T) {
	// Row max 1.27 -> scale 0.01; 0.005 is a tie and rounds away from zero to 1, -0.015 to -2.
	w := []float32{1.27, 0.005, -0.015, 0, -1.27, 0.635}
	q := QuantizeInt8(w, 1, 6, Options{})
	if math.Abs(float64(q.Scales[0])-0.01) > 1e-9 {
		t.Fatalf("scale %v", q.Scales[0])
	}
	want := []int8{127, 1, -2, 0, -127, 64}
	for i := range want {
		if q.Codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", q.Codes, want)
		}
	}
}

func TestInt4PackingAndPadding(t *testing.T) {
	// 3 columns with group 2 -> padded to 4; values chosen so the asymmetric codes are exact.
	w := []float32{0, 15, 3, 1, 2, 14}
	q := QuantizeInt4(w, 2, 3, Options{GroupSize: 2})
	if q.PaddedCols != 4 || len(q.Packed) != 4 || len(q.Scales) != 4 {
		t.Fatalf("layout: %+v", q)
	}
	// Row 0, group 0 is [0, 15]: scale 1, min 0 -> codes 0 and 15 in one byte, low nibble first.
	if q.Packed[0] != 0xF0 {
		t.Fatalf("first byte %#x, want 0xf0 (0 low, 15 high)", q.Packed[0])
	}
	got := q.Dequantize(2, 3, 2, false)
	if e := sqErr(got, w); e > 1e-10 {
		t.Fatalf("dequantized %v from %v", got, w)
	}
	// Symmetric round-to-nearest: scale = amax / 7, so -8 -> q -7 (code 1) and 7 -> q 6.125 -> 6
	// (code 14); codes are q + 8.
	sym := QuantizeInt4([]float32{-8, 7, 1, -1}, 1, 4, Options{GroupSize: 4, Symmetric: true})
	if sym.Packed[0] != 0xE1 {
		t.Fatalf("symmetric packing %#x, want 0xe1", sym.Packed[0])
	}
}

func TestSearchBeatsRoundToNearest(t *testing.T) {
	w := randWeights(64, 256, 7)
	for _, sym := range []bool{false, true} {
		o := Options{GroupSize: 64, Symmetric: sym}
		rtn := QuantizeInt4(w, 64, 256, o).Dequantize(64, 256, 64, sym)
		o.Search = true
		srch := QuantizeInt4(w, 64, 256, o).Dequantize(64, 256, 64, sym)
		if a, b := sqErr(srch, w), sqErr(rtn, w); a >= b {
			t.Errorf("sym=%v: search error %.4g not below round-to-nearest %.4g", sym, a, b)
		}
	}
	rtn8 := QuantizeInt8(w, 64, 256, Options{}).Dequantize(64, 256)
	srch8 := QuantizeInt8(w, 64, 256, Options{Search: true}).Dequantize(64, 256)
	if sqErr(srch8, w) > sqErr(rtn8, w) {
		t.Errorf("int8 search worse than round-to-nearest")
	}
}

// GPTQ lowers the output error on correlated inputs, the error it is built to minimise.
func TestGPTQLowersOutputError(t *testing.T) {
	rows, cols, n := 32, 128, 2048
	w := randWeights(rows, cols, 3)
	r := rand.New(rand.NewPCG(5, 5))
	x := make([]float64, n*cols)
	for i := 0; i < n; i++ {
		base := r.NormFloat64()
		for j := 0; j < cols; j++ {
			x[i*cols+j] = base + 0.3*r.NormFloat64() // strongly correlated columns
		}
	}
	h := make([]float64, cols*cols)
	for i := 0; i < n; i++ {
		for a := 0; a < cols; a++ {
			for b := 0; b < cols; b++ {
				h[a*cols+b] += x[i*cols+a] * x[i*cols+b] / float64(n)
			}
		}
	}
	outErr := func(dq []float32) float64 {
		var e float64
		for i := 0; i < 256; i++ {
			for o := 0; o < rows; o++ {
				var d float64
				for j := 0; j < cols; j++ {
					d += (float64(dq[o*cols+j]) - float64(w[o*cols+j])) * x[i*cols+j]
				}
				e += d * d
			}
		}
		return e
	}
	o := Options{GroupSize: 64, Search: true}
	plain := QuantizeInt4(w, rows, cols, o).Dequantize(rows, cols, 64, false)
	g, err := GPTQInt4(w, rows, cols, h, o)
	if err != nil {
		t.Fatal(err)
	}
	gptq := g.Dequantize(rows, cols, 64, false)
	if a, b := outErr(gptq), outErr(plain); a >= 0.8*b {
		t.Fatalf("GPTQ output error %.4g vs %.4g without", a, b)
	}
}

func TestPlanPolicyAndOverrides(t *testing.T) {
	m, err := formats.Open(filepath.Join("..", "fixtures", "pythia-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ov, err := ParseOverride(`embed_in\.weight$=int8`)
	if err != nil {
		t.Fatal(err)
	}
	late, _ := ParseOverride(`layers\.3\..*=f32`)
	p, err := MakePlan(m, Settings{Type: "int4", GroupSize: 64, Overrides: []Override{ov, late}})
	if err != nil {
		t.Fatal(err)
	}
	to := map[string]string{}
	for _, e := range p.Entries {
		to[e.Component+"/"+e.Name] = e.To
	}
	for k, want := range map[string]string{
		"decoder/embed_in.weight":                           "int8",
		"decoder/embed_out.weight":                          "int4",
		"decoder/layers.0.mlp.dense_4h_to_h.weight":         "int4",
		"decoder/layers.0.mlp.dense_4h_to_h.bias":           "f16",
		"decoder/layers.0.input_layernorm.weight":           "f16",
		"decoder/layers.3.attention.query_key_value.weight": "f32",
	} {
		if to[k] != want {
			t.Errorf("%s -> %s, want %s", k, to[k], want)
		}
	}
	if _, err := MakePlan(m, Settings{Type: "int4", GroupSize: 50}); err == nil || err.Error() != "--group-size 50: want 32, 64 or 128" {
		t.Errorf("group size: %v", err)
	}
}
