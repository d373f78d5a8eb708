package graph

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // the op vocabulary reads best unqualified
	"github.com/gomlx/gomlx/ml/layers/activation"
	"github.com/gomlx/gomlx/ml/nn"

	"github.com/btconvert/btconvert/arch"
)

// builder holds what one graph needs while it is being built: the weight parameters (dequantized
// on first use, once per graph), the compute dtype and the backend's kind.
type builder struct {
	g      *Graph
	cfg    *arch.Config
	dt     dtypes.DType // compute dtype: Float32 or BFloat16
	kind   backendKind
	params map[string]*Node
	cache  map[string]*Node
	// observe, when set, is shown the input of every linear layer (flattened to [rows, in]) by its
	// weight's key: calibration watches a scoring forward through it.
	observe func(key string, x *Node)
	// halfDotInF32: bf16 / f16 products are computed in float32 (the go backend; see dot).
	halfDotInF32 bool
	// inOut: Linear weights on the device as [in, out] (Weights.InOut).
	inOut map[string]bool
	// dequantProducts: see Engine.dequantProducts.
	dequantProducts bool
	// officialPositions: the token decoder's positions of the official generate
	// (GenerateOptions.OfficialPositions).
	officialPositions bool
	// sharedCaches: a step reads KV caches shared with the host and returns only its new
	// position's keys and values (Engine.shareCaches, fixedCache).
	sharedCaches bool
}

func newBuilder(g *Graph, w *Weights, cfg *arch.Config, dt dtypes.DType, weights []*Node, kind backendKind) *builder {
	b := &builder{g: g, cfg: cfg, dt: dt, kind: kind, params: map[string]*Node{}, cache: map[string]*Node{},
		halfDotInF32: kind == goBackend}
	for i, k := range w.Keys {
		b.params[k] = weights[i]
	}
	b.inOut = w.InOut
	return b
}

// w returns a weight in the compute dtype, dequantizing a quantized one (quant.go).
func (b *builder) w(component, name string) *Node {
	key := component + "/" + name
	if n, ok := b.cache[key]; ok {
		return n
	}
	var n *Node
	if q := b.cfg.QuantOf(component, name); q != nil {
		n = b.dequantize(key, q)
	} else {
		p, ok := b.params[key]
		if !ok {
			panic(fmt.Sprintf("weight %s not loaded", key))
		}
		n = ConvertDType(p, b.dt)
	}
	b.cache[key] = n
	return n
}

// linear is x W^T + bias for a PyTorch [out, in] weight, over the last axis of x, then the exact
// GELU when gelu is set. The weight is on the device either as stored or as [in, out]
// (Weights.InOut: the layout both backends multiply faster); the product reads it in place either
// way. On the go backend a float32 one is GoMLX's fused Dense: the bias and the GELU applied in
// place on the product's output, where separate ops would broadcast the bias through a generic
// iterator and write two more [M, out] tensors.
func (b *builder) linear(x *Node, component, name string, bias bool, gelu ...bool) *Node {
	key := component + "/" + name + ".weight"
	dims := x.Shape().Dimensions
	flat := Reshape(x, -1, dims[len(dims)-1])
	if b.observe != nil {
		b.observe(key, flat)
	}
	act := activation.TypeNone
	if len(gelu) > 0 && gelu[0] {
		act = activation.TypeGelu
	}
	var bn *Node
	if bias {
		bn = b.w(component, name+".bias")
	}
	var y *Node // [M, out]
	switch q := b.cfg.QuantOf(component, name+".weight"); {
	case q != nil && !b.dequantProducts:
		y = ConvertDType(b.qlinear(flat, key, q), b.dt)
	case b.kind == goBackend && b.inOut[key] && b.dt == dtypes.Float32:
		y, act = nn.Dense(flat, b.w(component, name+".weight"), bn, compute.DenseLayoutInputOutputs, act), activation.TypeNone
		bn = nil
	default:
		in := 1 // W's contracted axis
		if b.inOut[key] {
			in = 0
		}
		y = b.dot(flat, []int{1}, nil, b.w(component, name+".weight"), []int{in}, nil)
	}
	if bn != nil {
		y = Add(y, InsertAxes(bn, 0))
	}
	if act != activation.TypeNone {
		y = activation.Apply(act, y)
	}
	return Reshape(y, append(append([]int(nil), dims[:len(dims)-1]...), y.Shape().Dim(1))...)
}

// dot is DotGeneral, except that on the go backend bf16 and f16 products are computed from float32
// copies of the operands (GoMLX v0.28.8, compute v0.1.6; docs/UPSTREAM_BUGS.md):
//   - its AVX2 kernels for them are wrong below 4 Mi multiply-adds per batch when the contracting
//     axis is last on both sides (every product of these models): they drop half of the terms;
//   - its large-product kernels for them run 10 - 100x slower than the float32 ones (0.1 - 0.9
//     GFLOP/s on AVX2 and AVX512), and its portable ones about 2x (bt-tiny's bf16 scoring: 8,000
//     tokens/s through float32 against 600 on AVX512, 350 on AVX2, 2,000 portable).
//
// The kernels convert to float32 and sum in float32 anyway, so the sums are the same.
func (b *builder) dot(lhs *Node, lhsContracting, lhsBatch []int, rhs *Node, rhsContracting, rhsBatch []int) *Node {
	dt := lhs.DType()
	if !b.halfDotInF32 || !dt.IsHalfPrecision() {
		return DotGeneral(lhs, lhsContracting, lhsBatch, rhs, rhsContracting, rhsBatch)
	}
	f32 := func(x *Node) *Node { return ConvertDType(x, dtypes.Float32) }
	return ConvertDType(DotGeneral(f32(lhs), lhsContracting, lhsBatch, f32(rhs), rhsContracting, rhsBatch), dt)
}

// layerNorm normalises the last axis in float32, whatever the compute dtype.
func (b *builder) layerNorm(x *Node, component, name string, eps float64) *Node {
	x32 := ConvertDType(x, dtypes.Float32)
	if b.kind == goBackend {
		// GoMLX's fused layer norm: the same sums in one pass a row, where the ops below each
		// broadcast through the backend's generic iterator.
		wgt := ConvertDType(b.w(component, name+".weight"), dtypes.Float32)
		bias := ConvertDType(b.w(component, name+".bias"), dtypes.Float32)
		return ConvertDType(nn.LayerNorm(x32, []int{x.Rank() - 1}, eps, wgt, bias, nil), b.dt)
	}
	mean := ReduceAndKeep(x32, ReduceMean, -1)
	xc := Sub(x32, mean)
	variance := ReduceAndKeep(Square(xc), ReduceMean, -1)
	y := Mul(xc, Rsqrt(AddScalar(variance, eps)))
	rank := x.Rank()
	wgt := ExpandLeftToRank(ConvertDType(b.w(component, name+".weight"), dtypes.Float32), rank)
	bias := ExpandLeftToRank(ConvertDType(b.w(component, name+".bias"), dtypes.Float32), rank)
	return ConvertDType(Add(Mul(y, wgt), bias), b.dt)
}

// RotaryFreqs are the inverse frequencies of rot rotary dims: base^(-2j/rot) for j < rot/2.
func RotaryFreqs(base float64, rot int) []float64 {
	f := make([]float64, rot/2)
	for j := range f {
		f[j] = math.Pow(base, -float64(2*j)/float64(rot))
	}
	return f
}

// rotaryTableFreqs holds cos and sin of the inverse frequencies invFreq (one a pair of dims) for
// positions 0..n-1, computed on the host in float64 so that long positions lose no precision,
// repeated twice along the rotary dims (rotate_half form).
func rotaryTableFreqs(g *Graph, invFreq []float64, n int, dt dtypes.DType) (cos, sin *Node) {
	rot := 2 * len(invFreq)
	c := make([]float64, n*rot)
	s := make([]float64, n*rot)
	for p := 0; p < n; p++ {
		for j, f := range invFreq {
			a := float64(p) * f
			c[p*rot+j], c[p*rot+j+rot/2] = math.Cos(a), math.Cos(a)
			s[p*rot+j], s[p*rot+j+rot/2] = math.Sin(a), math.Sin(a)
		}
	}
	mk := func(v []float64) *Node {
		return ConvertDType(Reshape(Const(g, v), n, rot), dt)
	}
	return mk(c), mk(s)
}

// rope applies rotary embeddings to x [B, T, H, hd] at positions pos (int32 [T]); tables from
// rotaryTableFreqs. With no rotary dims (GPT-NeoX's rotary_pct 0, which HF runs as attention
// without positions) x passes through.
func rope(x, pos, cos, sin *Node, rot int) *Node {
	if rot == 0 {
		return x
	}
	hd := x.Shape().Dim(-1)
	T := x.Shape().Dim(1)
	c := Reshape(take(cos, pos), 1, T, 1, rot)
	s := Reshape(take(sin, pos), 1, T, 1, rot)
	xr := Slice(x, AxisRange(), AxisRange(), AxisRange(), AxisRange(0, rot))
	x1 := Slice(xr, AxisRange(), AxisRange(), AxisRange(), AxisRange(0, rot/2))
	x2 := Slice(xr, AxisRange(), AxisRange(), AxisRange(), AxisRange(rot/2, rot))
	rotated := Add(Mul(xr, c), Mul(Concatenate([]*Node{Neg(x2), x1}, -1), s))
	if rot == hd {
		return rotated
	}
	return Concatenate([]*Node{rotated, Slice(x, AxisRange(), AxisRange(), AxisRange(), AxisRange(rot, hd))}, -1)
}

// attendFn is an Attend (family.go): one layer's attention over what the run keeps.
type attendFn = Attend

// attention is softmax(q k^T / sqrt(hd) + bias) v for q [B, T, H, hd], keys [B, H, S, hd] and
// values [B, H, hd, S] (the cache layouts); see scaledAttention for the bias.
func (b *builder) attention(q, k, v, bias *Node) *Node {
	return b.scaledAttention(q, k, v, bias, 1/math.Sqrt(float64(q.Shape().Dim(-1))))
}

// scaledAttention is softmax(scale q k^T + bias) v for q [B, T, H, hd], keys [B, H, S, hd] and
// values [B, H, hd, S]. The additive float32 bias is [T, S], [B, T, S] when rows are masked
// differently (0 or maskedOut), [B or 1, H, T, S] when it differs per head too (T5's relative
// positions), or nil (every key seen). Scores and softmax are in float32. Returns [B, T, H, hd].
// Keys and values with fewer heads than q (grouped-query attention, KVH heads, each shared by
// G = H/KVH consecutive query heads in Llama's repeat_kv order) are read as they are: the G
// heads of a group are taken as G x T rows against their one key head, so the cache is never
// repeated G times; their bias is [T, S] or [B, T, S].
func (b *builder) scaledAttention(q, k, v, bias *Node, scale float64) *Node {
	return b.attendSets(q, []keySet{{k, v, bias}}, scale)
}

// keySet is keys [B, KVH, S, hd], values [B, KVH, hd, S] and their bias (see scaledAttention).
type keySet struct{ k, v, bias *Node }

// attendSets is scaledAttention over the keys of several sets with one softmax across them all:
// each set's scores and products are taken on their own, so a step reads its cache and its new
// position without joining them into one tensor (which would copy the cache).
func (b *builder) attendSets(q *Node, sets []keySet, scale float64) *Node {
	B, T, H, hd := q.Shape().Dim(0), q.Shape().Dim(1), q.Shape().Dim(2), q.Shape().Dim(3)
	KVH := sets[0].k.Shape().Dim(1)
	G := H / KVH
	qh := TransposeAllAxes(q, 0, 2, 1, 3) // [B, H, T, hd]
	if G > 1 {
		qh = Reshape(qh, B, KVH, G*T, hd)
	}
	scores := make([]*Node, len(sets))
	for i, set := range sets {
		sc := b.dot(qh, []int{3}, []int{0, 1}, set.k, []int{3}, []int{0, 1}) // [B, H, T, S] or [B, KVH, G*T, S]
		sc = ConvertDType(sc, dtypes.Float32)
		if G > 1 {
			sc = Reshape(sc, B, KVH, G, T, set.k.Shape().Dim(2))
		}
		if scale != 1 {
			sc = MulScalar(sc, scale)
		}
		scores[i] = addScoreBias(sc, set.bias, G > 1)
	}
	all := scores[0]
	if len(sets) > 1 {
		all = Concatenate(scores, -1)
	}
	probs := ConvertDType(Softmax(all, -1), q.DType())
	var out *Node
	at := 0
	for _, set := range sets {
		S := set.k.Shape().Dim(2)
		p := probs
		if len(sets) > 1 {
			p = SliceAxis(probs, -1, AxisRange(at, at+S))
		}
		if G > 1 {
			p = Reshape(p, B, KVH, G*T, S)
		}
		o := b.dot(p, []int{3}, []int{0, 1}, set.v, []int{3}, []int{0, 1}) // [B, H, T, hd] or [B, KVH, G*T, hd]
		if out == nil {
			out = o
		} else {
			out = Add(out, o)
		}
		at += S
	}
	if G > 1 {
		out = Reshape(out, B, H, T, hd)
	}
	return TransposeAllAxes(out, 0, 2, 1, 3)
}

// addScoreBias adds bias (see scaledAttention) to scores [B, H, T, S], or [B, KVH, G, T, S] for
// grouped queries.
func addScoreBias(scores, bias *Node, grouped bool) *Node {
	switch {
	case bias == nil:
		return scores
	case grouped && bias.Rank() == 2:
		return Add(scores, InsertAxes(bias, 0, 0, 0))
	case grouped && bias.Rank() == 3:
		return Add(scores, InsertAxes(bias, 1, 1))
	case grouped:
		panic("grouped-query attention takes a [T, S] or [B, T, S] bias")
	case bias.Rank() == 2:
		return Add(scores, InsertAxes(bias, 0, 0)) // the same for every row and head
	case bias.Rank() == 3:
		return Add(scores, InsertAxes(bias, 1)) // the same for every head
	default:
		return Add(scores, bias)
	}
}

// causalBias is the additive mask for T new tokens attending to past+T keys.
func causalBias(g *Graph, past, T int) *Node {
	v := make([]float32, T*(past+T))
	for t := 0; t < T; t++ {
		for s := past + t + 1; s < past+T; s++ {
			v[t*(past+T)+s] = maskedOut
		}
	}
	return Reshape(Const(g, v), T, past+T)
}

// embed looks token ids (int32, any shape) up in a [V, D] table (on the device as [D, V] where it
// is a tied head's, Weights.InOut: then the lookup gathers columns).
func (b *builder) embed(ids *Node, component, name string) *Node {
	if q := b.cfg.QuantOf(component, name); q != nil {
		return b.qembed(ids, component+"/"+name, q)
	}
	if b.inOut[component+"/"+name] {
		return takeColumns(b.w(component, name), ids)
	}
	return take(b.w(component, name), ids)
}

// takeColumns gathers columns of table [D, V] for ids of any shape: [..., D].
func takeColumns(table, ids *Node) *Node {
	D := table.Shape().Dim(0)
	g := BackendGather(table, Reshape(ids, -1, 1), 1, []int{1}, []int{1}, []int{1}, []int{D, 1}, false) // [N, D]
	return Reshape(g, append(append([]int(nil), ids.Shape().Dimensions...), D)...)
}

// take gathers rows of table [V, D] for ids of any shape: [..., D].
func take(table, ids *Node) *Node {
	return Gather(table, InsertAxes(ids, -1))
}

// iotaPos is the positions start..start+n-1 as int32 [n].
func iotaPos(g *Graph, start, n int) *Node {
	return AddScalar(Iota(g, shapes.Make(dtypes.Int32, n), 0), start)
}
