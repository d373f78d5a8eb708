//go:build goexperiment.simd && amd64

package quant

import "simd/archsimd"

// evalCodes is evalCodesScalar four values at a time where the CPU has AVX2: the scale search
// evaluates every candidate scale over every row, most of whole-model quantization's time. The
// codes are the same; the sums add in four lanes, so they can differ from the scalar ones in
// their last bits.
func evalCodes(xs, wt []float64, cand []int8, m, inv, lo, hi float64) (swq, swqq, swqx float64) {
	if !archsimd.X86.AVX2() || len(xs) < 8 {
		return evalCodesScalar(xs, wt, cand, m, inv, lo, hi)
	}
	vm, vinv := archsimd.BroadcastFloat64x4(m), archsimd.BroadcastFloat64x4(inv)
	vlo, vhi, half := archsimd.BroadcastFloat64x4(lo), archsimd.BroadcastFloat64x4(hi), archsimd.BroadcastFloat64x4(0.5)
	var sq, sqq, sqx archsimd.Float64x4
	var codes [4]int32
	n := len(xs) &^ 3
	for j := 0; j < n; j += 4 {
		x := archsimd.LoadFloat64x4Slice(xs[j:])
		q := x.Sub(vm).Mul(vinv).Max(vlo).Min(vhi).Add(half).Floor()
		q.ConvertToInt32().StoreSlice(codes[:])
		cand[j], cand[j+1], cand[j+2], cand[j+3] = int8(codes[0]), int8(codes[1]), int8(codes[2]), int8(codes[3])
		a := q.Mul(archsimd.LoadFloat64x4Slice(wt[j:]))
		sq = sq.Add(a)
		sqq = sqq.Add(a.Mul(q))
		sqx = sqx.Add(a.Mul(x))
	}
	var l [3][4]float64
	sq.StoreSlice(l[0][:])
	sqq.StoreSlice(l[1][:])
	sqx.StoreSlice(l[2][:])
	archsimd.ClearAVXUpperBits() // the scalar tail and the caller run legacy-SSE code
	swq, swqq, swqx = evalCodesScalar(xs[n:], wt[n:], cand[n:], m, inv, lo, hi)
	swq += (l[0][0] + l[0][1]) + (l[0][2] + l[0][3])
	swqq += (l[1][0] + l[1][1]) + (l[1][2] + l[1][3])
	swqx += (l[2][0] + l[2][1]) + (l[2][2] + l[2][3])
	return swq, swqq, swqx
}
