package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// spd is a random positive semi-definite [n, n] second moment with one dead column (never seen
// non-zero), large enough that the blocked and recursive paths run.
func spd(n int) []float64 {
	r := rand.New(rand.NewPCG(7, 7))
	k := n / 2
	a := make([]float64, n*k)
	for i := range a {
		a[i] = r.NormFloat64()
	}
	h := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for t := 0; t < k; t++ {
				s += a[i*k+t] * a[j*k+t]
			}
			h[i*n+j], h[j*n+i] = s/float64(k)+0.5, s/float64(k)+0.5 // a shared component correlates all
		}
	}
	dead := n / 3
	for j := 0; j < n; j++ {
		h[dead*n+j], h[j*n+dead] = 0, 0
	}
	return h
}

// U is upper triangular and U^T U is the inverse of the damped Hessian.
func TestHinvUpper(t *testing.T) {
	const n = 600
	h := spd(n)
	u, dead, err := hinvUpper(h, n)
	if err != nil {
		t.Fatal(err)
	}
	if !dead[n/3] || dead[0] {
		t.Fatalf("dead columns: %v at %d, %v at 0", dead[n/3], n/3, dead[0])
	}
	var mean float64
	for i := 0; i < n; i++ {
		mean += h[i*n+i] / n
	}
	hd := append([]float64(nil), h...)
	for i := 0; i < n; i++ {
		if dead[i] {
			hd[i*n+i] = 1
		}
		hd[i*n+i] += gptqDamp * mean
	}
	var worst float64
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			if u[i*n+j] != 0 {
				t.Fatalf("U[%d,%d] = %g below the diagonal", i, j, u[i*n+j])
			}
		}
		// row i of (U^T U) hd: (U^T U)[i, k] = sum_m U[m, i] U[m, k].
		g := make([]float64, n)
		for m := 0; m <= i; m++ {
			for k := m; k < n; k++ {
				g[k] += u[m*n+i] * u[m*n+k]
			}
		}
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += g[k] * hd[k*n+j]
			}
			if i == j {
				s--
			}
			worst = math.Max(worst, math.Abs(s))
		}
	}
	if worst > 1e-8 {
		t.Fatalf("max |U^T U H - I| = %g", worst)
	}
}

// sequentialGPTQ is GPTQ as the paper states it: one column at a time, each error pushed onto
// every later column at once.
func sequentialGPTQ(x []float32, rows, cols, gs int, lv levels, u []float64, dead []bool) []int8 {
	codes := make([]int8, rows*cols)
	f := newFitter(lv, gs)
	grp, q := make([]float32, gs), make([]int8, gs)
	for r := 0; r < rows; r++ {
		w := make([]float64, cols)
		for j := range w {
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
				s, m = f.fit(grp, nil, q)
			}
			c := 0.0
			if s != 0 {
				c = clamp(math.Round((w[i]-m)/s), lv.lo, lv.hi)
			}
			codes[r*cols+i] = int8(c)
			e := (w[i] - (s*c + m)) / u[i*cols+i]
			for j := i + 1; j < cols; j++ {
				w[j] -= e * u[i*cols+j]
			}
		}
	}
	return codes
}

// The blocked ("lazy batch") updates give GPTQ's codes: only rounding ties may differ.
func TestGPTQBlockedMatchesSequential(t *testing.T) {
	const rows, cols = 24, 640
	h := spd(cols)
	w := randWeights(rows, cols, 11)
	u, dead, err := hinvUpper(h, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		gs   int
		lv   levels
	}{{"int4 g64", 64, int4Levels(Options{Search: true})}, {"int4 g32 sym", 32, int4Levels(Options{Symmetric: true})}, {"int8", cols, int8Levels}} {
		got, _, _ := gptqRows(w, rows, cols, c.gs, c.lv, u, dead)
		want := sequentialGPTQ(w, rows, cols, c.gs, c.lv, u, dead)
		diff := 0
		for i := range got {
			if got[i] != want[i] {
				diff++
			}
		}
		if diff > len(got)/1000 {
			t.Errorf("%s: %d of %d codes differ from sequential GPTQ", c.name, diff, len(got))
		}
	}
}
