package quant

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"

	"github.com/btconvert/btconvert/quant/scheme"
)

// GPTQ (Frantar et al., 2022) quantizes a weight column by column and pushes each column's error
// onto the columns not yet quantized, weighted by the inverse of the calibration Hessian
// H = E[x x^T] of the layer's inputs, so the layer's outputs on the calibration text move as
// little as possible. Group scales (and minimums) are fitted, with the same search as without
// calibration, on the error-corrected weights when a group starts.

// errIndefinite marks a second moment GPTQ cannot use: the statistics' fault, not the weights'.
var errIndefinite = errors.New("calibration Hessian is unusable")

// gptqDamp is added to H's diagonal, as a fraction of its mean, to keep it invertible.
const gptqDamp = 0.01

// hinvUpper returns the upper Cholesky factor U of H^-1 = U^T U (row-major [n, n]) after
// damping; dead columns (never seen non-zero) are marked in dead. Reversing the order of rows and
// columns turns the lower Cholesky factor of the reversed H into U: with P the reversal,
// P H P = L L^T gives H^-1 = (P L^-1 P)^T (P L^-1 P), and P L^-1 P is upper triangular. So one
// factorization and one triangular inverse (2n^3/3 flops) replace factorize-invert-factorize
// (5n^3/3). In row-major order reversing rows and columns is reversing the flat array.
func hinvUpper(h []float64, n int) ([]float64, []bool, error) {
	a := make([]float64, n*n)
	dead := make([]bool, n)
	var mean float64
	for i := 0; i < n; i++ {
		mean += h[i*n+i] / float64(n)
	}
	if mean <= 0 {
		mean = 1
	}
	for i := 0; i < n; i++ {
		d := h[i*n+i]
		if d == 0 {
			dead[i] = true
			d = 1
		}
		for j := 0; j < n; j++ {
			a[n*n-1-(i*n+j)] = h[i*n+j]
		}
		a[n*n-1-(i*n+i)] = d + gptqDamp*mean
	}
	l, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: n, Stride: n, Data: a})
	if !ok {
		return nil, nil, fmt.Errorf("%w: not positive definite after damping", errIndefinite)
	}
	if !invLower(blas64.General{Rows: n, Cols: n, Stride: n, Data: l.Data}) {
		return nil, nil, fmt.Errorf("%w: singular after damping", errIndefinite)
	}
	slices.Reverse(a)
	for i := 1; i < n; i++ { // Potrf left the other triangle as it was
		clear(a[i*n : i*n+i])
	}
	return a, dead, nil
}

// gptqBlock is how many columns are quantized before their errors are pushed, with one matrix
// product, onto the columns after them ("lazy batch" updates): the row-by-row work stays inside a
// block that fits in cache.
const gptqBlock = 128

// gptqRows runs GPTQ on a row-major [rows, cols] weight (cols padded to whole groups) with levels
// lo..hi in groups of gs. It returns the codes and the per-group scales and minimums.
func gptqRows(x []float32, rows, cols, gs int, lv levels, u []float64, dead []bool) (codes []int8, scales, mins []float32) {
	g := cols / gs
	codes = make([]int8, rows*cols)
	scales = make([]float32, rows*g)
	mins = make([]float32, rows*g)
	w := make([]float64, rows*cols)
	parallel(rows, func(r int) {
		for j := 0; j < cols; j++ {
			if !dead[j] {
				w[r*cols+j] = float64(x[r*cols+j])
			}
		}
	})
	// A group is fitted when it starts, on weights that must already carry every earlier column's
	// error: blocks hold whole groups (a row-wide group starts at column 0, before any error).
	bs := gptqBlock
	if gs < cols {
		bs = gs * max(1, gptqBlock/gs)
	}
	errs := make([]float64, rows*bs) // scaled errors of the current block, [rows, bs]
	type rowState struct {
		s, m float64 // the current group's scale and minimum
	}
	state := make([]rowState, rows)
	for b0 := 0; b0 < cols; b0 += bs {
		b1 := min(b0+bs, cols)
		parallelWith(rows, func() any { return &gptqScratch{make([]float32, gs), make([]int8, gs), newFitter(lv, gs)} }, func(r int, scratch any) {
			sc := scratch.(*gptqScratch)
			row, st := w[r*cols:(r+1)*cols], &state[r]
			for i := b0; i < b1; i++ {
				if i%gs == 0 {
					for j := range sc.grp {
						sc.grp[j] = float32(row[i+j])
					}
					st.s, st.m = sc.f.fit(sc.grp, nil, sc.q)
					scales[r*g+i/gs], mins[r*g+i/gs] = float32(st.s), float32(st.m)
				}
				q := 0.0
				if st.s != 0 {
					q = clamp(math.Round((row[i]-st.m)/st.s), lv.lo, lv.hi)
				}
				codes[r*cols+i] = int8(q)
				e := (row[i] - (st.s*q + st.m)) / u[i*cols+i]
				errs[r*bs+i-b0] = e
				ui := u[i*cols : i*cols+b1]
				for j := i + 1; j < b1; j++ {
					row[j] -= e * ui[j]
				}
			}
		})
		if b1 < cols { // w[:, b1:] -= errs · U[b0:b1, b1:]
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas64.General{Rows: rows, Cols: b1 - b0, Stride: bs, Data: errs},
				blas64.General{Rows: b1 - b0, Cols: cols - b1, Stride: cols, Data: u[b0*cols+b1:]},
				1, blas64.General{Rows: rows, Cols: cols - b1, Stride: cols, Data: w[b1:]})
		}
	}
	return codes, scales, mins
}

// gptqScratch is one worker's group buffers.
type gptqScratch struct {
	grp []float32
	q   []int8
	f   *fitter
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
	lv := levelsOf(scheme.Int8, o)
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
		out.Packed[i/2] = scheme.PackNibbles(int(codes[i])+offset, int(codes[i+1])+offset)
	}
	return out, nil
}
