package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The search's inner loop gives the same codes as the scalar one, and the same sums but for their
// rounding, for every length (tails included), clamped values and ties.
func TestEvalCodesMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 3, 4, 7, 8, 9, 64, 257, 1000} {
		xs, wt := make([]float64, n), make([]float64, n)
		for i := range xs {
			xs[i], wt[i] = r.NormFloat64(), r.Float64()
			if i%17 == 0 {
				xs[i] = 0.25 // an exact tie at scale 0.5
			}
		}
		for _, c := range []struct{ m, s, lo, hi float64 }{{0, 0.5, -127, 127}, {-1, 0.02, 0, 15}, {0.3, 0.5, -8, 7}} {
			got, want := make([]int8, n), make([]int8, n)
			a, b, d := evalCodes(xs, wt, got, c.m, 1/c.s, c.lo, c.hi)
			ea, eb, ed := evalCodesScalar(xs, wt, want, c.m, 1/c.s, c.lo, c.hi)
			if !slices.Equal(got, want) {
				t.Fatalf("n %d %+v: codes differ", n, c)
			}
			for _, p := range [][2]float64{{a, ea}, {b, eb}, {d, ed}} {
				if math.Abs(p[0]-p[1]) > 1e-12*(1+math.Abs(p[1])) {
					t.Fatalf("n %d %+v: sum %v, scalar %v", n, c, p[0], p[1])
				}
			}
		}
	}
}
