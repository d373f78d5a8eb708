package safetensors

import (
	"math"
	"testing"
)

// NonFinite finds the first NaN or infinity of every float dtype, and nothing in finite data
// (the largest finite values included).
func TestNonFinite(t *testing.T) {
	for _, d := range []DType{F64, F32, F16, BF16} {
		big := float32(65504) // the largest f16; finite in every dtype
		vals := []float32{0, -big, big, 1e-8}
		raw, err := FromFloat32(d, vals)
		if err != nil {
			t.Fatal(err)
		}
		if i, _ := NonFinite(d, raw); i != -1 {
			t.Errorf("%s: finite data reported non-finite at %d", d, i)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			v := append(append([]float32(nil), vals...), 2, bad, 3)
			raw, _ := FromFloat32(d, v)
			i, got := NonFinite(d, raw)
			if i != 5 || (math.IsNaN(float64(bad)) != math.IsNaN(got)) || (math.IsInf(float64(bad), -1) != math.IsInf(got, -1)) {
				t.Errorf("%s: %v reported as %v at %d", d, bad, got, i)
			}
		}
	}
	if i, _ := NonFinite(I32, []byte{0xff, 0xff, 0xff, 0xff}); i != -1 {
		t.Error("integer data checked as floats")
	}
}
