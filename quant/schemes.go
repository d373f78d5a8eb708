// Package quant quantizes weights: int8 per output channel and int4 per group, with a weighted
// scale search or GPTQ, packing in the layout of docs/FORMAT.md, and the policy and plan that say
// which tensor becomes what.
package quant

import (
	"math"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/quant/scheme"
)

// Options of a scheme.
type Options struct {
	GroupSize  int       // int4: elements per group along the input dim
	Symmetric  bool      // int4: q in -8..7 (else asymmetric 0..15 with a minimum)
	Search     bool      // try candidate scales and keep the least (weighted) squared error
	F16Scales  bool      // store scales (and mins) as f16; codes are computed with the rounded scale
	Importance []float32 // per input column weight of the error (calibration), or nil
}

// Int8Weight holds a per-row symmetric int8 quantization of a [rows, cols] weight.
type Int8Weight struct {
	Codes  []int8    // [rows, cols]
	Scales []float32 // [rows]
}

// Int4Weight holds a group-wise int4 quantization of a [rows, cols] weight.
type Int4Weight struct {
	Packed     []uint8   // [rows, paddedCols/2], low nibble first
	Scales     []float32 // [rows, groups]
	Mins       []float32 // [rows, groups], asymmetric only
	PaddedCols int
}

// clamp uses the builtin min and max: they compile to single instructions where math.Min does not.
func clamp(x, lo, hi float64) float64 { return max(lo, min(hi, x)) }

func toF16(x float64) float64 { return float64(float16.Fromfloat32(float32(x)).Float32()) }

// levels are the integer codes of a scheme and how a row or group is fitted to them.
type levels struct {
	lo, hi float64 // codes lo..hi
	sym    bool    // value = scale*q (else scale*q + min)
	search bool    // try candidate scales (else round-to-nearest from the range)
	f16    bool    // scales and mins are stored as f16: fit with the rounded values
}

// levelsOf are the codes of scheme t (symmetric or not, as o says) and how o fits them.
func levelsOf(t scheme.Type, o Options) levels {
	s, err := scheme.Of(t)
	if err != nil {
		panic(err) // the callers quantize to a scheme they name
	}
	sym := o.Symmetric || !s.Asymmetric
	lo, hi := s.Levels(sym)
	return levels{lo: float64(lo), hi: float64(hi), sym: sym, search: o.Search, f16: o.F16Scales}
}

// int8Levels are int8's codes, int4Levels int4's for o.
var int8Levels = levelsOf(scheme.Int8, Options{})

func int4Levels(o Options) levels { return levelsOf(scheme.Int4, o) }

// fitter fits rows or groups to a scheme's levels: value = scale*q + min (min 0 when symmetric).
// One belongs to each worker; its buffers are reused from one row or group to the next.
type fitter struct {
	lv   levels
	n    int       // elements in the current row or group
	x    []float64 // the values being fitted
	wt   []float64 // their weights (columnWeights, or ones)
	ones []float64
	cand []int8 // the codes of the candidate being evaluated
	// Sums that do not depend on the codes: of the weights, of w*x and of w*x*x.
	sw, swx, swxx float64
}

func newFitter(lv levels, n int) *fitter {
	ones := make([]float64, n)
	for j := range ones {
		ones[j] = 1
	}
	return &fitter{lv: lv, x: make([]float64, n), ones: ones, cand: make([]int8, n)}
}

// The search: candidate scales near the range-based one (factor 1 + 0.02k), on a coarse grid of
// k first, then next to the best; for asymmetric levels the grid is anchored at the minimum, at the
// maximum, or centred. Every candidate is refitted by weighted least squares for the codes it chose
// (rounds, until the fit stops moving), and the lowest weighted error wins. The grids cover where
// winners fall on real checkpoints (k in -6..4; a dense -12..12 grid finds errors within 0.3 %).
type schedule struct {
	coarse  []int // candidate steps k: scale factor 1 + 0.02k
	rounds  int   // evaluations per coarse candidate (the candidate, then its refits)
	refine  []int // steps next to the best coarse candidate
	rounds2 int
}

var (
	int8Search = schedule{coarse: []int{-5, -3, -1, 1}, rounds: 2, refine: []int{-1, 1}, rounds2: 2}
	int4Search = schedule{coarse: []int{-5, -3, -1, 1, 3}, rounds: 3, refine: []int{-1, 1}, rounds2: 3}
)

// fit quantizes x into q (with weights wt per element from columnWeights, nil for uniform) and
// returns the scale and offset (the minimum; 0 when symmetric). Without search it is
// round-to-nearest (half away from zero) from the range.
func (f *fitter) fit(x []float32, wt []float64, q []int8) (scale, offset float64) {
	lv := f.lv
	n := len(x)
	f.n = n
	xs := f.x[:n]
	mn, mx := math.Inf(1), math.Inf(-1)
	for j, v := range x {
		xs[j] = float64(v)
		mn, mx = min(mn, xs[j]), max(mx, xs[j])
	}
	// Round-to-nearest start (bit for bit what plain round-to-nearest gives).
	if lv.sym {
		scale, offset = math.Max(math.Abs(mn), math.Abs(mx))/lv.hi, 0
	} else {
		scale, offset = (mx-mn)/(lv.hi-lv.lo), mn
	}
	scale, offset = f.round(scale, offset)
	for j, v := range xs {
		if scale == 0 {
			q[j] = int8(clamp(0, lv.lo, lv.hi))
			continue
		}
		q[j] = int8(clamp(math.Round((v-offset)/scale), lv.lo, lv.hi))
	}
	if !lv.search || mx == mn {
		return
	}
	f.weigh(wt, n)
	sch := int4Search
	if lv.hi > 15 {
		sch = int8Search
	}
	best := f.errOf(q, scale, offset)
	try := func(s, m float64, rounds int) float64 {
		least := math.Inf(1)
		for it := 0; it < rounds; it++ {
			if s, m = f.round(s, m); s <= 0 {
				break
			}
			e, s2, m2 := f.eval(s, m)
			least = math.Min(least, e)
			if e < best {
				best, scale, offset = e, s, m
				copy(q, f.cand[:n])
			}
			if s2 == s && m2 == m { // the codes are already the least-squares fit: converged
				break
			}
			s, m = s2, m2
		}
		return least
	}
	type start struct {
		k      int
		anchor int
	}
	candidate := func(k, anchor int) (float64, float64) {
		fac := 1 + 0.02*float64(k)
		if lv.sym {
			return math.Max(math.Abs(mn), math.Abs(mx)) / lv.hi * fac, 0
		}
		s := (mx - mn) / (lv.hi - lv.lo) * fac
		switch anchor {
		case 0:
			return s, mn // grid anchored at the minimum
		case 1:
			return s, mx - s*(lv.hi-lv.lo) // ... at the maximum
		}
		return s, mn + ((mx-mn)-s*(lv.hi-lv.lo))/2 // ... centred on the range
	}
	anchors := 3
	if lv.sym {
		anchors = 1
	}
	top, topErr := start{}, math.Inf(1)
	for _, k := range sch.coarse {
		for a := 0; a < anchors; a++ {
			s, m := candidate(k, a)
			if e := try(s, m, sch.rounds); e < topErr {
				top, topErr = start{k, a}, e
			}
		}
	}
	for _, dk := range sch.refine {
		s, m := candidate(top.k+dk, top.anchor)
		try(s, m, sch.rounds2)
	}
	return
}

func (f *fitter) round(s, m float64) (float64, float64) {
	if f.lv.f16 {
		return toF16(s), toF16(m)
	}
	return float64(float32(s)), float64(float32(m))
}

// columnWeights are the weights of a weight's input columns in the search, computed once per
// tensor: the square root of each column's mean square input, the RMS scale of the output error a
// weight error causes (weighting by the mean square itself over-fits a few columns). nil for nil.
func columnWeights(imp []float32) []float64 {
	if imp == nil {
		return nil
	}
	w := make([]float64, len(imp))
	for j, v := range imp {
		w[j] = math.Sqrt(float64(v) + 1e-12)
	}
	return w
}

// weigh sets the weights of the elements (nil: uniform) and the sums that do not depend on the
// codes.
func (f *fitter) weigh(wt []float64, n int) {
	f.wt = f.ones[:n]
	if wt != nil {
		f.wt = wt[:n]
	}
	f.sw, f.swx, f.swxx = 0, 0, 0
	for j, x := range f.x[:n] {
		w := f.wt[j]
		f.sw += w
		f.swx += w * x
		f.swxx += w * x * x
	}
}

// eval chooses the codes for (s, m) into cand, in one pass, and returns their weighted squared
// error and the weighted least-squares (scale, min) for those codes.
func (f *fitter) eval(s, m float64) (err, s2, m2 float64) {
	lo, hi := f.lv.lo, f.lv.hi
	xs, cand := f.x[:f.n], f.cand[:f.n]
	swq, swqq, swqx := evalCodes(xs, f.wt[:len(xs)], cand[:len(xs)], m, 1/s, lo, hi)
	// sum w (x - s q - m)^2, expanded over the sums.
	err = f.swxx + s*s*swqq + m*m*f.sw - 2*s*swqx - 2*m*f.swx + 2*s*m*swq
	s2, m2 = s, m
	if f.lv.sym {
		if swqq > 0 {
			s2 = swqx / swqq
		}
	} else if det := f.sw*swqq - swq*swq; det > 0 {
		s2 = (f.sw*swqx - swq*f.swx) / det
		m2 = (swqq*f.swx - swq*swqx) / det
	}
	return err, s2, m2
}

// errOf is the weighted squared error of the codes q with (s, m).
func (f *fitter) errOf(q []int8, s, m float64) float64 {
	var e float64
	for j, x := range f.x[:len(q)] {
		d := x - (s*float64(q[j]) + m)
		e += d * d * f.wt[j]
	}
	return e
}

// QuantizeInt8 quantizes a row-major [rows, cols] weight per output row, symmetric, q in -127..127.
func QuantizeInt8(x []float32, rows, cols int, o Options) *Int8Weight {
	out := &Int8Weight{Codes: make([]int8, rows*cols), Scales: make([]float32, rows)}
	lv := levelsOf(scheme.Int8, o)
	wt := columnWeights(o.Importance)
	parallelWith(rows, func() any { return newFitter(lv, cols) }, func(r int, scratch any) {
		s, _ := scratch.(*fitter).fit(x[r*cols:(r+1)*cols], wt, out.Codes[r*cols:(r+1)*cols])
		out.Scales[r] = float32(s)
	})
	return out
}

// PaddedCols is cols rounded up to a whole number of groups.
func PaddedCols(cols, group int) int { return scheme.PaddedCols(cols, group) }

// QuantizeInt4 quantizes a row-major [rows, cols] weight in groups of o.GroupSize along each row.
// A row that is not a whole number of groups is padded with zeros (the padding is never used).
func QuantizeInt4(x []float32, rows, cols int, o Options) *Int4Weight {
	gs := o.GroupSize
	pc := PaddedCols(cols, gs)
	g := pc / gs
	out := &Int4Weight{Packed: make([]uint8, rows*pc/2), Scales: make([]float32, rows*g), PaddedCols: pc}
	if !o.Symmetric {
		out.Mins = make([]float32, rows*g)
	}
	lv := int4Levels(o)
	offset := -int(lv.lo) // stored codes are 0..15
	type scratch struct {
		f     *fitter
		row   []float32
		codes []int8
	}
	var wt []float64
	if o.Importance != nil { // padding columns get no weight
		imp := make([]float32, pc)
		copy(imp, o.Importance)
		wt = columnWeights(imp)
	}
	parallelWith(rows, func() any {
		return &scratch{newFitter(lv, gs), make([]float32, pc), make([]int8, pc)}
	}, func(r int, sc any) {
		s := sc.(*scratch)
		copy(s.row, x[r*cols:(r+1)*cols])
		clear(s.row[cols:])
		for k := 0; k < g; k++ {
			var w []float64
			if wt != nil {
				w = wt[k*gs : (k+1)*gs]
			}
			sc, m := s.f.fit(s.row[k*gs:(k+1)*gs], w, s.codes[k*gs:(k+1)*gs])
			out.Scales[r*g+k] = float32(sc)
			if !o.Symmetric {
				out.Mins[r*g+k] = float32(m)
			}
		}
		for j := 0; j < pc; j += 2 {
			out.Packed[(r*pc+j)/2] = scheme.PackNibbles(int(s.codes[j])+offset, int(s.codes[j+1])+offset)
		}
	})
	return out
}

// Dequantize returns the weight an Int8Weight stands for.
func (q *Int8Weight) Dequantize(rows, cols int) []float32 {
	out := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[r*cols+c] = float32(q.Codes[r*cols+c]) * q.Scales[r]
		}
	}
	return out
}

// Dequantize returns the weight an Int4Weight stands for (padding dropped).
func (q *Int4Weight) Dequantize(rows, cols, group int, sym bool) []float32 {
	out := make([]float32, rows*cols)
	g := q.PaddedCols / group
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			v, odd := scheme.Nibbles(q.Packed[(r*q.PaddedCols+c)/2])
			if c%2 == 1 {
				v = odd
			}
			k := r*g + c/group
			if sym {
				out[r*cols+c] = float32(v-8) * q.Scales[k]
			} else {
				out[r*cols+c] = float32(v)*q.Scales[k] + q.Mins[k]
			}
		}
	}
	return out
}
