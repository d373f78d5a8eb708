package quant

import "math"

// evalCodesScalar gives each x its code for scale 1/inv and offset m (clamped to lo..hi, rounded
// half up rather than away from zero: a tie costs the same error either way) into cand, and
// returns the weighted sums of the codes the least-squares refit needs: sum w q, sum w q q and
// sum w q x.
func evalCodesScalar(xs, wt []float64, cand []int8, m, inv, lo, hi float64) (swq, swqq, swqx float64) {
	for j, x := range xs {
		v := (x - m) * inv
		if v < lo { // branches rarely taken, so well predicted
			v = lo
		} else if v > hi {
			v = hi
		}
		q := math.Floor(v + 0.5)
		cand[j] = int8(q)
		a := q * wt[j]
		swq += a
		swqq += a * q
		swqx += a * x
	}
	return swq, swqq, swqx
}
