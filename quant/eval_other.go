//go:build !(goexperiment.simd && amd64)

package quant

// evalCodes is evalCodesScalar in a build without the SIMD kernels.
func evalCodes(xs, wt []float64, cand []int8, m, inv, lo, hi float64) (swq, swqq, swqx float64) {
	return evalCodesScalar(xs, wt, cand, m, inv, lo, hi)
}
