package graph

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// KV caches. A layer's cache holds its keys and values in layout [S, B, H, hd]: sequence first, so
// a mask over positions is a prefix of the shape (Where needs that) and a new position is one
// slice along axis 0. Three kinds of attention share the decoder:
//
//   - causal: a full forward over new tokens (scoring, prefill), which can keep the keys and values
//     as the caches a generation starts from;
//   - localCache: the token decoder inside one block, whose cache grows by concatenation and is
//     thrown away after the block (at most r + L - 1 positions);
//   - fixedCache: one new position against a cache of fixed length S (the block decoder and the
//     vanilla model while generating), so the step graph has fixed shapes and compiles once; the
//     caches are donated to each step, so the backends update them in place.

// toCache turns [B, T, H, hd] into the cache layout [T, B, H, hd] (sequence first, so a position
// mask is a prefix of the shape and Where can update a cache without DynamicUpdateSlice).
func toCache(x *Node) *Node { return TransposeAllAxes(x, 1, 0, 2, 3) }

// causal is the attendFn of a full forward: keys are the new tokens, causally masked. If keep is
// not nil, each layer's keys and values (cache layout) are appended to it.
func causal(keep *[]kv) attendFn {
	return func(_ int, q, k, v *Node) *Node {
		kc, vc := toCache(k), toCache(v)
		if keep != nil {
			*keep = append(*keep, kv{kc, vc})
		}
		return attention(q, kc, vc, causalBias(q.Graph(), 0, q.Shape().Dim(1)))
	}
}

// kv is one layer's cache in layout [S, B, H, hd].
type kv struct{ k, v *Node }

// localCache is the attendFn of the token decoder during generation: keys are the block's earlier
// positions (kept in *past, one entry per layer) plus the new ones.
func localCache(past *[]kv, start int) attendFn {
	fresh := len(*past) == 0
	return func(layer int, q, k, v *Node) *Node {
		kc, vc := toCache(k), toCache(v)
		if !fresh {
			kc = Concatenate([]*Node{(*past)[layer].k, kc}, 0)
			vc = Concatenate([]*Node{(*past)[layer].v, vc}, 0)
			(*past)[layer] = kv{kc, vc}
		} else {
			*past = append(*past, kv{kc, vc})
		}
		return attention(q, kc, vc, causalBias(q.Graph(), start, q.Shape().Dim(1)))
	}
}

// fixedCache is the attendFn of a one-position step against caches of fixed length S at position
// pos (int32 scalar): the new key and value are written at pos, and positions after pos are masked
// out. Updated caches replace caches[layer].
func (b *builder) fixedCache(caches []kv, pos *Node) attendFn {
	return func(layer int, q, k, v *Node) *Node {
		c := caches[layer]
		S := c.k.Shape().Dim(0)
		g := q.Graph()
		idx := Iota(g, shapes.Make(dtypes.Int32, S), 0)
		kc, vc := b.writeCache(c.k, toCache(k), pos), b.writeCache(c.v, toCache(v), pos)
		caches[layer] = kv{kc, vc}
		bias := Where(LessOrEqual(idx, pos), Zeros(g, shapes.Make(dtypes.Float32, S)), Const(g, float32(-1e9)))
		return attention(q, kc, vc, Reshape(bias, 1, S))
	}
}

// writeCache puts x [1, B, H, hd] at position pos of cache [S, B, H, hd]. XLA has
// DynamicUpdateSlice; the pure-Go backend has no such op, but its ScatterSum adds into the cache in
// place when the cache buffer is donated to the step (decode does), and adding is writing here: every
// position of a cache is zero until it is written, once.
func (b *builder) writeCache(cache, x, pos *Node) *Node {
	x = ConvertDType(x, cache.DType())
	if b.kind == xlaBackend {
		zero := ScalarZero(b.g, pos.DType())
		return DynamicUpdateSlice(cache, x, []*Node{pos, zero, zero, zero})
	}
	return ScatterSum(cache, Reshape(pos, 1, 1), x, true, true)
}
