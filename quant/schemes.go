// Package quant quantizes weights: int8 per output channel and int4 per group, with a weighted
// scale search or GPTQ, packing in the layout of docs/FORMAT.md, and the policy and plan that say
// which tensor becomes what.
package quant

import (
	"math"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/formats/arch"
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

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

func toF16(x float64) float64 { return float64(float16.Fromfloat32(float32(x)).Float32()) }

// levels are the integer codes of a scheme and how a row or group is fitted to them.
type levels struct {
	lo, hi float64 // codes lo..hi
	sym    bool    // value = scale*q (else scale*q + min)
	search bool    // try candidate scales (else round-to-nearest from the range)
	f16    bool    // scales and mins are stored as f16: fit with the rounded values
}

var (
	int8Levels = levels{lo: -127, hi: 127, sym: true}
	int4Asym   = levels{lo: 0, hi: 15}
	int4Sym    = levels{lo: -8, hi: 7, sym: true}
)

// int4Levels are the int4 codes for o.
func int4Levels(o Options) levels {
	l := int4Asym
	if o.Symmetric {
		l = int4Sym
	}
	l.search, l.f16 = o.Search, o.F16Scales
	return l
}

// fit quantizes one row or group x (with importance w, may be nil) to the levels: value =
// scale*q + min (min fixed at 0 when symmetric). With search it tries candidate scales and, for
// each, the least-squares scale (and min) for the chosen codes, keeping the lowest weighted error;
// without it, it is plain round-to-nearest (half away from zero) from the range.
func fit(x []float32, w []float32, lv levels) (scale, min float64, q []int8) {
	lo, hi, sym, search, f16 := lv.lo, lv.hi, lv.sym, lv.search, lv.f16
	q = make([]int8, len(x))
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		mn, mx = math.Min(mn, float64(v)), math.Max(mx, float64(v))
	}
	weight := func(j int) float64 {
		if w == nil {
			return 1
		}
		// The square root of the mean square input: the RMS scale of the output error a weight
		// error causes. (Weighting by the mean square itself over-fits a few columns.)
		return math.Sqrt(float64(w[j]) + 1e-12)
	}
	codes := func(scale, min float64, into []int8) {
		for j, v := range x {
			if scale == 0 {
				into[j] = int8(clamp(0, lo, hi))
				continue
			}
			into[j] = int8(clamp(math.Round((float64(v)-min)/scale), lo, hi))
		}
	}
	errOf := func(scale, min float64, c []int8) float64 {
		var e float64
		for j, v := range x {
			d := float64(v) - (scale*float64(c[j]) + min)
			e += weight(j) * d * d
		}
		return e
	}
	round := func(s, m float64) (float64, float64) {
		if f16 {
			return toF16(s), toF16(m)
		}
		return float64(float32(s)), float64(float32(m))
	}
	// Round-to-nearest start.
	if sym {
		amax := math.Max(math.Abs(mn), math.Abs(mx))
		scale, min = amax/hi, 0
	} else {
		scale, min = (mx-mn)/(hi-lo), mn
	}
	scale, min = round(scale, min)
	codes(scale, min, q)
	if !search || mx == mn {
		return
	}
	best := errOf(scale, min, q)
	cand := make([]int8, len(x))
	// lsq refits scale (and min) by weighted least squares for the codes in cand.
	lsq := func(s, m float64) (float64, float64) {
		var sw, swq, swqq, swx, swqx float64
		for j, v := range x {
			wt, c := weight(j), float64(cand[j])
			sw += wt
			swq += wt * c
			swqq += wt * c * c
			swx += wt * float64(v)
			swqx += wt * c * float64(v)
		}
		if sym {
			if swqq > 0 {
				s = swqx / swqq
			}
		} else if det := sw*swqq - swq*swq; det > 0 {
			s = (sw*swqx - swq*swx) / det
			m = (swqq*swx - swq*swqx) / det
		}
		return s, m
	}
	try := func(s, m float64) {
		for it := 0; it < 3; it++ { // codes <-> least-squares fit, a few rounds
			s, m = round(s, m)
			if s <= 0 {
				return
			}
			codes(s, m, cand)
			if e := errOf(s, m, cand); e < best {
				best, scale, min = e, s, m
				copy(q, cand)
			}
			s, m = lsq(s, m)
		}
	}
	amax := math.Max(math.Abs(mn), math.Abs(mx))
	for k := -12; k <= 12; k++ {
		f := 1 + 0.02*float64(k) // scales from 76 % to 124 % of the range-based one
		if sym {
			try(amax/hi*f, 0)
			continue
		}
		s := (mx - mn) / (hi - lo) * f
		try(s, mn)                       // grid anchored at the minimum
		try(s, mx-s*(hi-lo))             // ... at the maximum
		try(s, mn+((mx-mn)-s*(hi-lo))/2) // ... centred on the range
	}
	return
}

// QuantizeInt8 quantizes a row-major [rows, cols] weight per output row, symmetric, q in -127..127.
func QuantizeInt8(x []float32, rows, cols int, o Options) *Int8Weight {
	out := &Int8Weight{Codes: make([]int8, rows*cols), Scales: make([]float32, rows)}
	lv := int8Levels
	lv.search, lv.f16 = o.Search, o.F16Scales
	parallel(rows, func(r int) {
		s, _, q := fit(x[r*cols:(r+1)*cols], o.Importance, lv)
		out.Scales[r] = float32(s)
		copy(out.Codes[r*cols:], q)
	})
	return out
}

// PaddedCols is cols rounded up to a whole number of groups.
func PaddedCols(cols, group int) int { return arch.PaddedCols(cols, group) }

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
	parallel(rows, func(r int) {
		row := make([]float32, pc)
		imp := make([]float32, pc)
		copy(row, x[r*cols:(r+1)*cols])
		clear(row[cols:])
		if o.Importance != nil {
			copy(imp, o.Importance)
			clear(imp[cols:])
		}
		codes := make([]int8, pc)
		for k := 0; k < g; k++ {
			var w []float32
			if o.Importance != nil {
				w = imp[k*gs : (k+1)*gs]
			}
			s, m, q := fit(row[k*gs:(k+1)*gs], w, lv)
			out.Scales[r*g+k] = float32(s)
			if !o.Symmetric {
				out.Mins[r*g+k] = float32(m)
			}
			copy(codes[k*gs:], q)
		}
		for j := 0; j < pc; j += 2 {
			out.Packed[(r*pc+j)/2] = uint8(int(codes[j])+offset) | uint8(int(codes[j+1])+offset)<<4
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
			b := q.Packed[(r*q.PaddedCols+c)/2]
			v := int(b & 15)
			if c%2 == 1 {
				v = int(b >> 4)
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
