package quant

import (
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// GPTQ's one large piece of linear algebra is the inverse of an n x n lower triangular matrix (the
// Cholesky factor of a layer's Hessian; n is the layer's input width, 4096 for an FFN down
// projection). gonum's Trtri spends its time in a serial Trmm; splitting recursively into halves
// puts nearly all of the n^3/3 flops into large matrix products, which gonum runs on every core.

// triLeaf is the size below which gonum's own routines run: the products are too small to split.
const triLeaf = 128

// view is the [r0:r0+rows, c0:c0+cols] block of a row-major matrix with the given stride.
func view(a []float64, stride, r0, c0, rows, cols int) blas64.General {
	if rows == 0 || cols == 0 {
		return blas64.General{Rows: rows, Cols: cols, Stride: stride}
	}
	return blas64.General{Rows: rows, Cols: cols, Stride: stride, Data: a[r0*stride+c0 : (r0+rows-1)*stride+c0+cols]}
}

func lower(g blas64.General) blas64.Triangular {
	return blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: g.Rows, Stride: g.Stride, Data: g.Data}
}

// invLower inverts the lower triangular l in place; it reports false when l is singular.
// With l = [A 0; B C], l^-1 = [A^-1 0; -C^-1 B A^-1 C^-1].
func invLower(l blas64.General) bool {
	n := l.Rows
	if n <= triLeaf {
		return lapack64.Trtri(lower(l))
	}
	h := n / 2
	a, b, c := view(l.Data, l.Stride, 0, 0, h, h), view(l.Data, l.Stride, h, 0, n-h, h), view(l.Data, l.Stride, h, h, n-h, n-h)
	var okA, okC bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); okA = invLower(a) }()
	okC = invLower(c)
	wg.Wait()
	if !okA || !okC {
		return false
	}
	mulLowerRight(b, a)    // B A^-1
	mulLowerLeft(-1, c, b) // -C^-1 (B A^-1)
	return true
}

// mulLowerLeft sets m = alpha * t m for a lower triangular t.
// With t = [T11 0; T21 T22] and m = [M1; M2]: M2 = T21 M1 + T22 M2, then M1 = T11 M1.
func mulLowerLeft(alpha float64, t, m blas64.General) {
	k := t.Rows
	if k <= triLeaf {
		blas64.Trmm(blas.Left, blas.NoTrans, alpha, lower(t), m)
		return
	}
	h := k / 2
	m1, m2 := view(m.Data, m.Stride, 0, 0, h, m.Cols), view(m.Data, m.Stride, h, 0, k-h, m.Cols)
	mulLowerLeft(alpha, view(t.Data, t.Stride, h, h, k-h, k-h), m2)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, alpha, view(t.Data, t.Stride, h, 0, k-h, h), m1, 1, m2)
	mulLowerLeft(alpha, view(t.Data, t.Stride, 0, 0, h, h), m1)
}

// mulLowerRight sets m = m t for a lower triangular t.
// With m = [M1 M2]: M1 = M1 T11 + M2 T21, then M2 = M2 T22.
func mulLowerRight(m, t blas64.General) {
	k := t.Rows
	if k <= triLeaf {
		blas64.Trmm(blas.Right, blas.NoTrans, 1, lower(t), m)
		return
	}
	h := k / 2
	m1, m2 := view(m.Data, m.Stride, 0, 0, m.Rows, h), view(m.Data, m.Stride, 0, h, m.Rows, k-h)
	mulLowerRight(m1, view(t.Data, t.Stride, 0, 0, h, h))
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, m2, view(t.Data, t.Stride, h, 0, k-h, h), 1, m1)
	mulLowerRight(m2, view(t.Data, t.Stride, h, h, k-h, k-h))
}
