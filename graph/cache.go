package graph

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
)

// KV caches. A layer's cache holds its keys as [B, KVH, S, hd] and its values as [B, KVH, hd, S]
// (KVH, the key/value heads, is H but under grouped-query attention): the
// layouts the attention products read in place (batch axes, then the kept axis, then the summed
// one), so a step does not re-lay-out the whole cache to multiply with it. Three kinds of
// attention share the decoder:
//
//   - causal: a full forward over new tokens (scoring, prefill), which can keep the keys and values
//     as the caches a generation starts from;
//   - localCache (t5Local for a T5 token decoder): the token decoder inside one block, whose cache
//     grows by concatenation and is thrown away after the block (at most r + L - 1 positions);
//   - fixedCache: one new position against a cache of fixed length S (the block decoder and the
//     vanilla model while generating), so the step graph has fixed shapes and compiles once; the
//     caches are donated to each step, and the go backend updates them in place. XLA would write
//     each step's caches into new buffers, a copy of every cache a step (go-xla v0.4.5 never
//     tells XLA that an output may reuse a parameter's buffer: docs/UPSTREAM_BUGS.md); on its
//     CPU plugin the caches are buffers shared with the host instead, which a step only reads
//     and the host writes each step's new position into (Engine.shareCaches).

// The sequence axis of keys and of values.
const keySeqAxis, valueSeqAxis = 2, 3

// toKeys turns new keys [B, T, H, hd] into the key layout [B, H, T, hd].
func toKeys(x *Node) *Node { return TransposeAllAxes(x, 0, 2, 1, 3) }

// toValues turns new values [B, T, H, hd] into the value layout [B, H, hd, T].
func toValues(x *Node) *Node { return TransposeAllAxes(x, 0, 2, 3, 1) }

// causal is the attendFn of a full forward: keys are the new tokens, causally masked, and masked
// per row by keyBias when it is not nil (see withKeyBias). If keep is not nil, each layer's keys
// and values (cache layouts) are appended to it.
func (b *builder) causal(keep *[]kv, keyBias *Node) attendFn {
	return func(_ int, q, k, v *Node) *Node {
		kc, vc := toKeys(k), toValues(v)
		if keep != nil {
			*keep = append(*keep, kv{k: kc, v: vc})
		}
		return b.attention(q, kc, vc, withKeyBias(causalBias(q.Graph(), 0, q.Shape().Dim(1)), keyBias))
	}
}

// maskedOut is the additive bias of a key a query must not see. It is finite so that a query that
// sees no key at all (a padding position) gets a uniform softmax, not NaN: its output is never
// used, but NaN would spread through the products that read it.
const maskedOut = -1e9

// withKeyBias adds each row's key mask keyBias [B, S'] (0 or maskedOut; S' >= S, its first S
// positions used) to bias [T, S]: [B, T, S]. A nil keyBias leaves bias as it is.
func withKeyBias(bias, keyBias *Node) *Node {
	if keyBias == nil {
		return bias
	}
	S := bias.Shape().Dim(1)
	return Add(InsertAxes(bias, 0), InsertAxes(Slice(keyBias, AxisRange(), AxisRange(0, S)), 1))
}

// kv is one layer's cache: keys [B, KVH, S, hd], values [B, KVH, hd, S]; or, fresh, only the key
// and value of a step's new position ([B, KVH, 1, hd], [B, KVH, hd, 1]: see fixedCache).
type kv struct {
	k, v  *Node
	fresh bool
}

// localCache is the attendFn of the token decoder during generation: keys are the block's earlier
// positions (kept in *past, one entry per layer) plus the new ones.
func (b *builder) localCache(past *[]kv, start int) attendFn {
	return func(layer int, q, k, v *Node) *Node {
		kc, vc := appendLocal(past, layer, k, v)
		return b.attention(q, kc, vc, causalBias(q.Graph(), start, q.Shape().Dim(1)))
	}
}

// appendLocal adds a layer's new keys and values [B, T, H, hd] to its entry of a local cache (the
// first call of a layer makes its entry) and returns the layer's whole cache.
func appendLocal(past *[]kv, layer int, k, v *Node) (keys, values *Node) {
	kc, vc := toKeys(k), toValues(v)
	if layer < len(*past) {
		kc = Concatenate([]*Node{(*past)[layer].k, kc}, keySeqAxis)
		vc = Concatenate([]*Node{(*past)[layer].v, vc}, valueSeqAxis)
		(*past)[layer] = kv{k: kc, v: vc}
	} else {
		*past = append(*past, kv{k: kc, v: vc})
	}
	return kc, vc
}

// fixedCache is the attendFn of a one-position step against caches of fixed length S at position
// pos (int32 scalar): the new key and value are written at pos, and positions after pos are masked
// out, as are those keyBias [B, S] masks. Updated caches replace caches[layer].
//
// With the caches shared with the host (builder.sharedCaches: XLA's CPU plugin), nothing is written:
// the caches hold the positions before pos, the new key and value are attended to beside them,
// and caches[layer] becomes them alone (fresh), for the host to write at pos after the step. XLA
// would otherwise copy every cache into a new buffer on every step (see the package comment).
func (b *builder) fixedCache(caches []kv, pos, keyBias *Node) attendFn {
	return func(layer int, q, k, v *Node) *Node {
		c := caches[layer]
		S := c.k.Shape().Dim(keySeqAxis)
		g := q.Graph()
		idx := Iota(g, shapes.Make(dtypes.Int32, S), 0)
		if b.sharedCaches {
			kn, vn := ConvertDType(toKeys(k), c.k.DType()), ConvertDType(toValues(v), c.v.DType())
			caches[layer] = kv{kn, vn, true}
			seen := Where(LessThan(idx, pos), Zeros(g, shapes.Make(dtypes.Float32, S)), Const(g, float32(maskedOut)))
			past := keySet{c.k, c.v, withKeyBias(Reshape(seen, 1, S), keyBias)}
			return b.attendSets(q, []keySet{past, {kn, vn, nil}}, 1/math.Sqrt(float64(q.Shape().Dim(-1))))
		}
		kc, vc := b.writeCache(c.k, toKeys(k), pos, keySeqAxis), b.writeCache(c.v, toValues(v), pos, valueSeqAxis)
		caches[layer] = kv{k: kc, v: vc}
		bias := Where(LessOrEqual(idx, pos), Zeros(g, shapes.Make(dtypes.Float32, S)), Const(g, float32(maskedOut)))
		return b.attention(q, kc, vc, withKeyBias(Reshape(bias, 1, S), keyBias))
	}
}

// writeCache puts x (one position: the cache's shape with 1 on axis) at position pos of cache.
// XLA has DynamicUpdateSlice; the pure-Go backend has no such op (GoMLX v0.28.8 / compute v0.1.6:
// "op not implemented"), but its ScatterSum adds into the cache in place when the cache buffer is
// donated to the step (decode does), and adding is writing here: every position of a cache is zero
// until it is written, once. The scatter indexes every axis before the sequence axis and the
// sequence axis itself; the axes after it are the slice.
func (b *builder) writeCache(cache, x, pos *Node, axis int) *Node {
	x = ConvertDType(x, cache.DType())
	if b.kind == xlaBackend {
		starts := make([]*Node, cache.Rank())
		for i := range starts {
			starts[i] = ScalarZero(b.g, pos.DType())
		}
		starts[axis] = pos
		return DynamicUpdateSlice(cache, x, starts)
	}
	lead := cache.Shape().Dimensions[:axis] // one update per index of these axes
	cols := make([]*Node, 0, axis+1)
	idxShape := shapes.Make(dtypes.Int32, append(append([]int(nil), lead...), 1)...)
	for i := range lead {
		cols = append(cols, Iota(b.g, idxShape, i))
	}
	cols = append(cols, BroadcastToShape(Reshape(ConvertDType(pos, dtypes.Int32), ones(axis+1)...), idxShape))
	indices := Concatenate(cols, -1) // [lead..., axis+1]
	updates := Reshape(x, append(append([]int(nil), lead...), cache.Shape().Dimensions[axis+1:]...)...)
	return ScatterSum(cache, indices, updates, true, true)
}

// ones is n ones (the dimensions of a broadcastable scalar).
func ones(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}
