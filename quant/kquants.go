package quant

import (
	"math"
)

// llama.cpp's k-quants Q4_K and Q6_K: super-blocks of 256 weights whose sub-block scales are
// themselves quantized against one f16 scale per super-block. Quantized as ggml-quants.c's
// reference quantizers do (quantize_row_q4_K_ref / q6_K_ref, what llama-quantize runs for these
// types without an importance matrix), every step in float32 with each operation rounded: the
// explicit float32 conversions below keep Go from fusing a multiply and an add into one rounding
// (fixtures/ggml/golden_k.safetensors holds the reference's bytes: ggml_test.go).
//
// Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes of eight 6-bit sub-block scales and eight 6-bit
// minimums (kScaleMin), then 128 bytes of 4-bit codes: each run of 64 weights is 32 bytes, weight
// l in the low nibble of byte l and weight 32+l in its high nibble; weight = d*sc*q - dmin*m.
//
// Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, sixteen int8
// sub-block scales, f16 d at the end; weight = d*sc*(q-32), q in 0..63 (kQ6Code gives the layout).

const (
	kBlock     = 256 // weights per super-block
	q4KBytes   = 144
	q6KBytes   = 210
	groupMaxEp = 1e-15 // ggml-quants.c's GROUP_MAX_EPS: a smaller largest magnitude is all zero
)

// nearestInt is ggml-quants.c's nearest_int: round half to even through float32's mantissa
// (valid for |v| <= 4194303, as there).
func nearestInt(v float32) int {
	b := math.Float32bits(v + 12582912)
	return int(b&0x007fffff) - 0x00400000
}

// makeQKX2 fits a scale and a minimum to n weights x with importance w, codes 0..nmax: a first
// fit from the range, then nstep+1 trial scales around it, each refined by weighted least squares
// and kept when it lowers the weighted squared error (ggml-quants.c, make_qkx2_quants, use_mad
// off). L receives the codes; the minimum is returned negated (>= 0), as there.
func makeQKX2(nmax int, x, w []float32, L, aux []uint8, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	n := len(x)
	mn, mx := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn { // comparisons, not min/max: signed zeros kept as there
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		for i := range n {
			L[i] = 0
		}
		return 0, -mn
	}
	fmax := float32(nmax)
	iscale := fmax / (mx - mn)
	scale = 1 / iscale
	var best float32
	for i := range n {
		l := clampInt(nearestInt(float32(iscale*(x[i]-mn))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(scale*float32(l)) + mn - x[i]
		best += float32(w[i] * float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fmax) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i := range n {
			l := clampInt(nearestInt(float32(iscale*(x[i]-mn))), 0, nmax)
			aux[i] = uint8(l)
			fl := float32(l)
			sumL += float32(w[i] * fl)
			sumL2 += float32(float32(w[i]*fl) * fl)
			sumXL += float32(float32(w[i]*fl) * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin, thisScale = 0, sumXL/sumL2
		}
		var mad float32
		for i := range n {
			diff := float32(thisScale*float32(aux[i])) + thisMin - x[i]
			mad += float32(w[i] * float32(diff*diff))
		}
		if mad < best {
			copy(L[:n], aux[:n])
			best, scale, mn = mad, thisScale, thisMin
		}
	}
	return scale, -mn
}

// makeQX fits a symmetric scale to n weights x, codes -nmax..nmax-1 stored plus nmax in L, by
// weighted least squares with importance x^2 over 19 trial scales around -nmax/max
// (ggml-quants.c, make_qx_quants, rmse_type 1, no importance given).
func makeQX(nmax int, x []float32, L []int8) float32 {
	var mx, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEp {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	fmax := float32(nmax)
	fit := func(iscale float32, store bool) (sumLX, sumL2 float32) {
		for i, v := range x {
			l := clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1)
			if store {
				L[i] = int8(l + nmax)
			}
			w, fl := float32(v*v), float32(l)
			sumLX += float32(float32(w*v) * fl)
			sumL2 += float32(float32(w*fl) * fl)
		}
		return
	}
	iscale := -fmax / mx
	sumLX, sumL2 := fit(iscale, true)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := float32(scale * sumLX)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + float32(0.1*float32(is))) / mx
		lx, l2 := fit(iscale, false)
		if l2 > 0 && float32(lx*lx) > float32(best*l2) {
			fit(iscale, true)
			scale = lx / l2
			best = float32(scale * lx)
		}
	}
	return scale
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// kScaleMin is sub-block j's 6-bit scale and minimum in a Q4_K block's 12 scale bytes s:
// sub-blocks 0-3 hold theirs in the low 6 bits of s[j] and s[j+4]; 4-7 in the nibbles of s[j+4],
// with their top 2 bits in the top bits of s[j-4] and s[j] (ggml-quants.c, get_scale_min_k4).
func kScaleMin(j int, s []byte) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xF | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

func encodeQ4K(x []float32, blk []byte) {
	var L, aux [kBlock]uint8
	var w [32]float32
	var scales, mins [kBlock / 32]float32
	var maxScale, maxMin float32
	for j := range kBlock / 32 {
		sub := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range sub {
			sumX2 += float32(v * v)
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range sub {
			w[l] = av + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(15, sub, w[:], L[32*j:], aux[:], -1, 0.1, 20)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	s := blk[4:16]
	clear(s)
	for j := range kBlock / 32 {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j])))) // uint8 first, as there
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			s[j], s[j+4] = ls, lm
		} else {
			s[j+4] = ls&0xF | (lm&0xF)<<4
			s[j-4] |= (ls >> 4) << 6
			s[j] |= (lm >> 4) << 6
		}
	}
	putF16(blk, maxScale/63)
	putF16(blk[2:], maxMin/63)
	d, dmin := getF16(blk), getF16(blk[2:])
	for j := range kBlock / 32 {
		sc, m := kScaleMin(j, s)
		ds := float32(d * float32(sc))
		if ds == 0 {
			continue // the codes of the fit stay, as there
		}
		dm := float32(dmin * float32(m))
		for i := range 32 {
			L[32*j+i] = uint8(clampInt(nearestInt((x[32*j+i]+dm)/ds), 0, 15))
		}
	}
	q := blk[16:]
	for j := 0; j < kBlock; j += 64 {
		for l := range 32 {
			q[j/2+l] = L[j+l] | L[j+l+32]<<4
		}
	}
}

func decodeQ4K(blk []byte, y []float32) {
	d, dmin := getF16(blk), getF16(blk[2:])
	s, q := blk[4:16], blk[16:]
	for j := range kBlock / 32 {
		sc, m := kScaleMin(j, s)
		ds, dm := float32(d*float32(sc)), float32(dmin*float32(m))
		bytes, shift := q[j/2*32:j/2*32+32], uint(4*(j%2))
		for l, b := range bytes {
			y[32*j+l] = float32(ds*float32(b>>shift&0xF)) - dm
		}
	}
}

func encodeQ6K(x []float32, blk []byte) {
	var L [kBlock]int8
	var scales [kBlock / 16]float32
	var maxScale, maxAbs float32
	for ib := range kBlock / 16 {
		scales[ib] = makeQX(32, x[16*ib:16*ib+16], L[16*ib:])
		if a := abs32(scales[ib]); a > maxAbs {
			maxAbs, maxScale = a, scales[ib]
		}
	}
	clear(blk)
	if maxAbs < groupMaxEp {
		return // all zero, d included
	}
	iscale := -128 / maxScale
	putF16(blk[208:], 1/iscale)
	sc := blk[192:208]
	for ib := range kBlock / 16 {
		sc[ib] = byte(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
	}
	d := getF16(blk[208:])
	for j := range kBlock / 16 {
		ds := float32(d * float32(int8(sc[j])))
		if ds == 0 {
			continue
		}
		for i := range 16 {
			L[16*j+i] = int8(clampInt(nearestInt(x[16*j+i]/ds), -32, 31) + 32)
		}
	}
	ql, qh := blk[:128], blk[128:192]
	for j := 0; j < kBlock; j += 128 {
		h := j / 128
		for l := range 32 {
			c := func(k int) byte { return byte(L[j+l+32*k]) }
			ql[64*h+l] = c(0)&0xF | (c(2)&0xF)<<4
			ql[64*h+l+32] = c(1)&0xF | (c(3)&0xF)<<4
			qh[32*h+l] = c(0)>>4 | (c(1)>>4)<<2 | (c(2)>>4)<<4 | (c(3)>>4)<<6
		}
	}
}

// kQ6Code is the code (0..63) of weight v (0..255) of a Q6_K block. Each half of 128 weights has
// 64 bytes of low nibbles and 32 bytes of high bit pairs; weight l of quarter k of a half takes
// the low (k 0, 1) or high (k 2, 3) nibble of low byte l (k 0, 2) or l+32 (k 1, 3), and bits 2k,
// 2k+1 of high byte l.
func kQ6Code(blk []byte, v int) int {
	h, k, l := v/128, v%128/32, v%32
	lo := blk[64*h+l+32*(k%2)] >> (4 * uint(k/2)) & 0xF
	hi := blk[128+32*h+l] >> (2 * uint(k)) & 3
	return int(lo | hi<<4)
}

func decodeQ6K(blk []byte, y []float32) {
	d := getF16(blk[208:])
	sc := blk[192:208]
	for v := range kBlock {
		ds := float32(d * float32(int8(sc[v/16])))
		y[v] = float32(ds * float32(kQ6Code(blk, v)-32))
	}
}
