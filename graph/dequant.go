package graph

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/ml/nn"

	"github.com/btconvert/btconvert/quant/scheme"
)

// Quantized weights stay packed on the device (docs/FORMAT.md). Three ways use them:
//   - qlinear: a Linear's product without a float copy of an int8 weight per step (below);
//   - qembed: an embedding lookup that unpacks only the rows it gathers;
//   - dequantize: the whole weight rebuilt in the compute dtype (int4 products, whose scales vary
//     along the contracted axis).

// qlinear is x [M, K] (float) times the quantized weight [N, K] transposed: [M, N] in float32.
//
// An int8 weight has one scale per output row, so the scale leaves the sum: y = (x . codes) * scale.
// On XLA the product itself runs in integers, where XLA's CPU kernels read a quarter of float32's
// bytes and multiply four times as many lanes (docs/BENCHMARKS.md, "Quantized products"), and still
// equals the float product: each row of x is written exactly enough as three int8 digits in base
// 254 (x = s (a + b/254 + c/254^2), error under 1e-7 of the row's largest value), one int8 x int8 ->
// int32 product takes all three digit rows at once (three rows of activations per row cost no more
// weight reads than one), and the digits' sums are recombined in float32. A prompt's many rows take
// the float32 product instead (maxDigitRows). The go backend has no fast integer product: there
// the codes go through one conversion into its float32 kernel, and the scale is applied to the
// [M, N] result rather than to the [N, K] weight.
func (b *builder) qlinear(x *Node, key string, q *scheme.Quantization) *Node {
	if t, ok := fusedGGML[q.Type]; ok && b.kind == goBackend && x.Shape().Dim(0) <= maxFusedGGMLRows {
		// GoMLX's fused product reads llama.cpp's blocks in place (compute's gobackend fusedops).
		w := b.params[key+scheme.QWeightSuffix]
		return nn.QuantizedDense(ConvertDType(x, dtypes.Float32), w, &Quantization{Scheme: compute.QuantGGML, GGMLType: t}, nil)
	}
	if q.Scheme().Bits != 8 || q.Scheme().Grouped {
		return b.dot(x, []int{1}, nil, b.dequantize(key, q), []int{1}, nil)
	}
	codes := b.params[key+scheme.QWeightSuffix]
	scale := InsertAxes(ConvertDType(b.params[key+scheme.ScalesSuffix], dtypes.Float32), 0) // [1, N]
	x = ConvertDType(x, dtypes.Float32)
	m := x.Shape().Dim(0)
	if b.kind == goBackend || m > maxDigitRows {
		in := 1 // the codes' contracted axis: 0 where they went up as [in, out] (LoadWeights)
		if b.inOut[key+scheme.QWeightSuffix] {
			in = 0
		}
		if b.kind == goBackend && in == 0 && fusedInt8Products && m <= maxFusedInt8Rows {
			// GoMLX's fused product of int8 codes [K, N], with a unit scale per input row: the
			// row scale still multiplies the [M, N] result.
			k, n := codes.Shape().Dim(0), codes.Shape().Dim(1)
			ones := Ones(b.g, shapes.Make(dtypes.Float32, k, 1))
			y := nn.QuantizedDense(x, codes, &Quantization{Scheme: compute.QuantLinear, Scale: ones, BlockAxis: 1, BlockSize: n}, nil)
			return Mul(y, scale)
		}
		return Mul(DotGeneral(x, []int{1}, nil, ConvertDType(codes, dtypes.Float32), []int{in}, nil), scale)
	}
	amax := ReduceAndKeep(Abs(x), ReduceMax, -1) // [M, 1]
	// A zero row (or one of zeros and NaN) keeps unit step: its digits are 0 (NaN stays NaN below).
	step := Where(GreaterThan(amax, ScalarZero(b.g, dtypes.Float32)), DivScalar(amax, digitMax), OnesLike(amax))
	t := Div(x, step) // in [-127, 127]
	var digits []*Node
	for range 3 {
		d := Round(t)
		digits = append(digits, d)
		t = MulScalar(Sub(t, d), digitBase) // the remainder, in [-127, 127] again
	}
	acc := Dot(ConvertDType(Concatenate(digits, 0), dtypes.Int8), codes).
		WithOutputDType(dtypes.Int32).General([]int{1}, nil, []int{1}, nil) // [3M, N]; exact while K < 2^31 / 127^2 = 133k
	accF := ConvertDType(acc, dtypes.Float32)
	part := func(i int) *Node { return Slice(accF, AxisRange(i*m, (i+1)*m)) }
	y := Add(part(0), MulScalar(Add(part(1), MulScalar(part(2), 1/digitBase)), 1/digitBase))
	// NaN or Inf in x would be lost in the integer product: put it back where the float product has it.
	y = Add(y, Mul(ReduceAndKeep(Sub(x, x), ReduceSum, -1), ScalarZero(b.g, dtypes.Float32)))
	return Mul(Mul(y, step), scale)
}

// fusedGGML are the llama.cpp types GoMLX's go backend multiplies in place. Its kernel unpacks
// every block once per row of x: past maxFusedGGMLRows rows one dequantization of the whole
// weight costs less (BenchmarkQuantizedProduct).
var fusedGGML = map[scheme.Type]compute.GGMLQuantType{scheme.Q8_0: compute.GGMLQ8_0, scheme.Q4_0: compute.GGMLQ4_0,
	scheme.Q4_K: compute.GGMLQ4_K, scheme.Q6_K: compute.GGMLQ6_K}

const maxFusedGGMLRows = 4

// fusedInt8Products runs int8 products of a decode step on the go backend through GoMLX's fused
// quantized product (compute's gobackend fusedops), which reads the codes in place. Off: in
// compute v0.1.6 that kernel is a scalar loop, slower than the codes converted into the float32
// product. With docs/patches/compute-v0.1.6-int8-dense.patch (AVX2 widening and fused
// multiply-adds, the codes streamed once) it is 1.3-1.6x faster than the float32 model at batch 1
// (docs/UPSTREAM_BUGS.md): turning it on is this line, once GoMLX has it.
var fusedInt8Products = false

// maxFusedInt8Rows: past this many rows of x (a prompt) the float32 product of the converted codes
// is faster than the patched fused one.
const maxFusedInt8Rows = 16

const (
	// maxDigitRows: past this many rows (a prompt, not a decode step) the float32 product, whose
	// one conversion of the weight is shared by all rows, is faster than three integer rows each.
	maxDigitRows = 256
	digitMax     = 127.0 // the largest int8 digit
	digitBase    = 254.0 // each digit's remainder of at most 1/2 becomes the next digit, at most 127
)

// qembed looks ids up in a quantized [V, D] table: the codes and scales of the gathered rows only
// are unpacked, never the whole table.
func (b *builder) qembed(ids *Node, key string, q *scheme.Quantization) *Node {
	flat := Reshape(ids, -1)
	part := func(suffix string) *Node {
		if p, ok := b.params[key+suffix]; ok {
			return take(p, flat)
		}
		return nil
	}
	rows := *q
	rows.Rows = flat.Shape().Dim(0)
	w := b.unpack(&rows, part(scheme.QWeightSuffix), part(scheme.ScalesSuffix), part(scheme.MinsSuffix)) // [ids, D]
	return Reshape(w, append(ids.Shape().Clone().Dimensions, q.Cols)...)
}

// dequantize rebuilds the quantized weight stored under key, [rows, cols], in the compute dtype.
func (b *builder) dequantize(key string, q *scheme.Quantization) *Node {
	codes := b.params[key+scheme.QWeightSuffix]
	if b.inOut[key+scheme.QWeightSuffix] { // uploaded [in, out] (LoadWeights)
		codes = Transpose(codes, 0, 1)
	}
	return b.unpack(q, codes, b.params[key+scheme.ScalesSuffix], b.params[key+scheme.MinsSuffix])
}

// unpack rebuilds a quantized weight [rows, cols] in the compute dtype, inside the graph, from its
// packed parts (docs/FORMAT.md; scales and mins nil where the scheme has none), as its scheme
// (scheme.Scheme) lays them out: the codes unpacked to one float32 per weight, times each
// group's scale (plus its minimum), then the compute dtype. 4-bit codes are split from their bytes
// with bit operations.
func (b *builder) unpack(q *scheme.Quantization, codes, scales, mins *Node) *Node {
	s := q.Scheme()
	if s.GGML != nil {
		return ConvertDType(dequantizeGGML(codes, q), b.dt)
	}
	var vals *Node // [rows, stored cols] float32 codes
	switch s.Bits {
	case 8:
		vals = ConvertDType(codes, dtypes.Float32)
	case 4:
		// Byte = lo | hi<<4, low nibble first along the row; a code is stored minus the lowest
		// level (symmetric int4: plus 8).
		lo := BitwiseAnd(codes, Const(b.g, uint8(0x0f)))
		hi := BitwiseShiftRightLogicalScalar(codes, uint8(4))
		vals = ConvertDType(Reshape(Stack([]*Node{lo, hi}, -1), q.Rows, -1), dtypes.Float32)
		if least, _ := s.Levels(q.Symmetric); least != 0 {
			vals = AddScalar(vals, float64(least))
		}
	default:
		panic(fmt.Sprintf("%s: no in-graph unpacking of %d-bit codes", q.Type, s.Bits))
	}
	g, gc := q.Groups(), q.GroupCols()
	per := func(n *Node) *Node { return Reshape(ConvertDType(n, dtypes.Float32), q.Rows, g, 1) }
	w := Mul(Reshape(vals, q.Rows, g, gc), per(scales))
	if !q.Symmetric {
		w = Add(w, per(mins))
	}
	w = Reshape(w, q.Rows, g*gc)
	if g*gc != q.Cols {
		w = Slice(w, AxisRange(), AxisRange(0, q.Cols))
	}
	return ConvertDType(w, b.dt)
}

// dequantizeGGML rebuilds [rows, cols] float32 from llama.cpp's blocks (scheme.GGMLBlock): each
// block's f16 scale (and minimum) read from its first bytes, its codes from the rest.
func dequantizeGGML(codes *Node, q *scheme.Quantization) *Node {
	blk := q.Scheme().GGML
	nb := q.Cols / blk.Values
	w := Reshape(codes, q.Rows, nb, blk.Bytes)
	f16At := func(at int) *Node { // [rows, nb, 1]
		v := Bitcast(Slice(w, AxisRange(), AxisRange(), AxisRange(at, at+2)), dtypes.Float16)
		return Reshape(ConvertDType(v, dtypes.Float32), q.Rows, nb, 1)
	}
	d := f16At(0)
	var vals *Node // [rows, nb, Values] float32
	switch q.Type {
	case scheme.Q8_0:
		vals = Mul(ConvertDType(Bitcast(Slice(w, AxisRange(), AxisRange(), AxisRange(2, blk.Bytes)), dtypes.Int8), dtypes.Float32), d)
	case scheme.Q4_0, scheme.Q4_1:
		first := 2
		if q.Type == scheme.Q4_1 {
			first = 4
		}
		p := Slice(w, AxisRange(), AxisRange(), AxisRange(first, blk.Bytes))
		// Weight j in the low nibble of byte j, weight j+16 in its high nibble.
		nib := ConvertDType(Concatenate([]*Node{BitwiseAnd(p, Const(codes.Graph(), uint8(0x0f))), BitwiseShiftRightLogicalScalar(p, uint8(4))}, -1), dtypes.Float32)
		if q.Type == scheme.Q4_0 {
			vals = Mul(AddScalar(nib, -8), d)
		} else {
			vals = Add(Mul(nib, d), f16At(2))
		}
	case scheme.Q4_K:
		vals = dequantizeQ4K(w, d, f16At(2))
	case scheme.Q6_K:
		vals = dequantizeQ6K(w, f16At(208))
	default:
		panic(fmt.Sprintf("no in-graph unpacking of %s blocks", q.Type))
	}
	return Reshape(vals, q.Rows, q.Cols)
}

// dequantizeQ4K unpacks Q4_K super-blocks w [rows, nb, 144] with their f16 d and dmin ([rows, nb, 1]
// float32) to [rows, nb, 256]: weight = d*sc*q - dmin*m, with sub-block j's 6-bit sc and m spread
// over the 12 scale bytes s as ggml's get_scale_min_k4 reads them (j < 4: low 6 bits of s[j] and
// s[j+4]; j >= 4: the nibbles of s[j+4], topped by the high 2 bits of s[j-4] and s[j]).
func dequantizeQ4K(w, d, dmin *Node) *Node {
	g := w.Graph()
	bytes := func(from, to int) *Node { return Slice(w, AxisRange(), AxisRange(), AxisRange(from, to)) }
	and := func(n *Node, m uint8) *Node { return BitwiseAnd(n, Const(g, m)) }
	shr := func(n *Node, k uint8) *Node { return BitwiseShiftRightLogicalScalar(n, k) }
	top2 := func(n *Node) *Node { return BitwiseShiftLeftScalar(shr(n, 6), uint8(4)) }
	a, b, c := bytes(4, 8), bytes(8, 12), bytes(12, 16)
	sc := Concatenate([]*Node{and(a, 63), BitwiseOr(and(c, 0x0f), top2(a))}, -1) // [rows, nb, 8]
	m := Concatenate([]*Node{and(b, 63), BitwiseOr(shr(c, 4), top2(b))}, -1)
	f := func(n *Node) *Node { return InsertAxes(ConvertDType(n, dtypes.Float32), -1) } // [rows, nb, 8, 1]
	ds, dm := Mul(InsertAxes(d, -1), f(sc)), Mul(InsertAxes(dmin, -1), f(m))
	// 4 runs of 64 weights in 32 bytes each: the low nibbles are sub-block 2r, the high 2r+1.
	qs := bytes(16, 144)
	rows, nb := w.Shape().Dim(0), w.Shape().Dim(1)
	qs = Reshape(qs, rows, nb, 4, 1, 32)
	nib := Reshape(Concatenate([]*Node{and(qs, 0x0f), shr(qs, 4)}, 3), rows, nb, 8, 32)
	return Reshape(Sub(Mul(ds, ConvertDType(nib, dtypes.Float32)), dm), rows, nb, 256)
}

// dequantizeQ6K unpacks Q6_K super-blocks w [rows, nb, 210] with their f16 d ([rows, nb, 1]
// float32) to [rows, nb, 256]: weight = d*sc*(q-32). Each half of 128 weights has 64 bytes of low
// nibbles (ql) and 32 of high bit pairs (qh); weight l of quarter k takes the low (k 0, 1) or high
// (k 2, 3) nibble of ql[l + 32*(k%2)] and bits 2k, 2k+1 of qh[l]; its int8 scale is number
// 8*half + 2k + l/16 of the 16.
func dequantizeQ6K(w, d *Node) *Node {
	g := w.Graph()
	rows, nb := w.Shape().Dim(0), w.Shape().Dim(1)
	bytes := func(from, to int) *Node { return Slice(w, AxisRange(), AxisRange(), AxisRange(from, to)) }
	and := func(n *Node, m uint8) *Node { return BitwiseAnd(n, Const(g, m)) }
	shr := func(n *Node, k uint8) *Node { return BitwiseShiftRightLogicalScalar(n, k) }
	ql := Reshape(bytes(0, 128), rows, nb, 2, 2, 32) // [half, which 32 bytes, l]
	qh := Reshape(bytes(128, 192), rows, nb, 2, 1, 32)
	lo := Concatenate([]*Node{and(ql, 0x0f), shr(ql, 4)}, 3)                                              // [rows, nb, 2, 4, 32]: k = 2*(nibble) + (bytes)
	hi := Concatenate([]*Node{and(qh, 3), and(shr(qh, 2), 3), and(shr(qh, 4), 3), and(shr(qh, 6), 3)}, 3) // k in order
	q := AddScalar(ConvertDType(BitwiseOr(lo, BitwiseShiftLeftScalar(hi, uint8(4))), dtypes.Float32), -32)
	sc := ConvertDType(Bitcast(bytes(192, 208), dtypes.Int8), dtypes.Float32) // [rows, nb, 16]
	ds := Mul(Reshape(d, rows, nb, 1, 1, 1, 1), Reshape(sc, rows, nb, 2, 4, 2, 1))
	return Reshape(Mul(ds, Reshape(q, rows, nb, 2, 4, 2, 16)), rows, nb, 256)
}
