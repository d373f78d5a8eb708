package quant

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// GPTQ (Frantar et al., 2022) quantizes a weight column by column and pushes each column's error
// onto the columns not yet quantized, weighted by the inverse of the calibration Hessian
// H = E[x x^T] of the layer's inputs, so the layer's outputs on the calibration text move as
// little as possible. Group scales (and minimums) are fitted, with the same search as without
// calibration, on the error-corrected weights when a group starts.

// gptqDamp is added to H's diagonal, as a fraction of its mean, to keep it invertible.
const gptqDamp = 0.01

// hinvUpper returns the upper Cholesky factor of H^-1 (row-major [n, n]) after damping; dead
// columns (never seen non-zero) are marked in dead.
func hinvUpper(h []float64, n int) ([]float64, []bool, error) {
	a := append([]float64(nil), h...)
	dead := make([]bool, n)
	var mean float64
	for i := 0; i < n; i++ {
		mean += a[i*n+i] / float64(n)
	}
	if mean <= 0 {
		mean = 1
	}
	for i := 0; i < n; i++ {
		if a[i*n+i] == 0 {
			dead[i] = true
			a[i*n+i] = 1
		}
		a[i*n+i] += gptqDamp * mean
	}
	var ch mat.Cholesky
	if !ch.Factorize(mat.NewSymDense(n, a)) {
		return nil, nil, fmt.Errorf("calibration Hessian is not positive definite")
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, nil, err
	}
	var ch2 mat.Cholesky
	if !ch2.Factorize(&inv) {
		return nil, nil, fmt.Errorf("inverse Hessian is not positive definite")
	}
	var u mat.TriDense
	ch2.UTo(&u)
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			out[i*n+j] = u.At(i, j)
		}
	}
	return out, dead, nil
}

// gptqRows runs GPTQ on a row-major [rows, cols] weight (cols padded to whole groups) with levels
// lo..hi in groups of gs. It returns the codes and the per-group scales and minimums.
func gptqRows(x []float32, rows, cols, gs int, lv levels, u []float64, dead []bool) (codes []int8, scales, mins []float32) {
	g := cols / gs
	codes = make([]int8, rows*cols)
	scales = make([]float32, rows*g)
	mins = make([]float32, rows*g)
	parallelWith(rows, func() any { return &gptqScratch{make([]float64, cols), make([]float32, gs)} }, func(r int, scratch any) {
		w, grp := scratch.(*gptqScratch).w, scratch.(*gptqScratch).grp
		for j := 0; j < cols; j++ {
			w[j] = 0
			if !dead[j] {
				w[j] = float64(x[r*cols+j])
			}
		}
		var s, m float64
		for i := 0; i < cols; i++ {
			if i%gs == 0 {
				for j := range grp {
					grp[j] = float32(w[i+j])
				}
				s, m, _ = fit(grp, nil, lv)
				scales[r*g+i/gs], mins[r*g+i/gs] = float32(s), float32(m)
			}
			q := 0.0
			if s != 0 {
				q = clamp(math.Round((w[i]-m)/s), lv.lo, lv.hi)
			}
			codes[r*cols+i] = int8(q)
			e := (w[i] - (s*q + m)) / u[i*cols+i]
			row := u[i*cols : (i+1)*cols]
			for j := i + 1; j < cols; j++ {
				w[j] -= e * row[j]
			}
		}
	})
	return codes, scales, mins
}

// gptqScratch is one worker's row buffers.
type gptqScratch struct {
	w   []float64
	grp []float32
}

// padHessian extends H [cols, cols] with zero rows/columns to [pc, pc] (padding columns are dead).
func padHessian(h []float64, cols, pc int) []float64 {
	if pc == cols {
		return h
	}
	out := make([]float64, pc*pc)
	for i := 0; i < cols; i++ {
		copy(out[i*pc:i*pc+cols], h[i*cols:(i+1)*cols])
	}
	return out
}

// GPTQInt8 is QuantizeInt8 with GPTQ error feedback; h is E[x x^T] [cols, cols].
func GPTQInt8(x []float32, rows, cols int, h []float64, o Options) (*Int8Weight, error) {
	u, dead, err := hinvUpper(h, cols)
	if err != nil {
		return nil, err
	}
	lv := int8Levels
	lv.search, lv.f16 = o.Search, o.F16Scales
	codes, scales, _ := gptqRows(x, rows, cols, cols, lv, u, dead)
	return &Int8Weight{Codes: codes, Scales: scales}, nil
}

// GPTQInt4 is QuantizeInt4 with GPTQ error feedback; h is E[x x^T] [cols, cols].
func GPTQInt4(x []float32, rows, cols int, h []float64, o Options) (*Int4Weight, error) {
	gs := o.GroupSize
	pc := PaddedCols(cols, gs)
	u, dead, err := hinvUpper(padHessian(h, cols, pc), pc)
	if err != nil {
		return nil, err
	}
	padded := x
	if pc != cols {
		padded = make([]float32, rows*pc)
		for r := 0; r < rows; r++ {
			copy(padded[r*pc:], x[r*cols:(r+1)*cols])
		}
	}
	lv := int4Levels(o)
	offset := -int(lv.lo)
	codes, scales, mins := gptqRows(padded, rows, pc, gs, lv, u, dead)
	out := &Int4Weight{Packed: make([]uint8, rows*pc/2), Scales: scales, PaddedCols: pc}
	if !o.Symmetric {
		out.Mins = mins
	}
	for i := 0; i < rows*pc; i += 2 {
		out.Packed[i/2] = uint8(int(codes[i])+offset) | uint8(int(codes[i+1])+offset)<<4
	}
	return out, nil
}
