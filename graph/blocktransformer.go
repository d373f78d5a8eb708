package graph

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"

	"github.com/btconvert/btconvert/formats"
)

// The Block Transformer, top to bottom: embedder -> block decoder -> token decoder. The same
// functions serve scoring (teacher forcing over every block) and generation (one block at a time).

// embedBlocks turns token ids [B, n, L] into block vectors [B, n, D]: the concatenation of the L
// token vectors, followed (projection_layer embedder) by a Linear over that concatenation.
func (b *builder) embedBlocks(ids *Node) *Node {
	B, n, L := ids.Shape().Dim(0), ids.Shape().Dim(1), ids.Shape().Dim(2)
	e := b.embed(ids, formats.Embedder, "embeddings.weight") // [B, n, L, De]
	x := Reshape(e, B, n, L*e.Shape().Dim(-1))
	if b.cfg.Embedder.Type == "projection_layer" {
		x = b.linear(x, formats.Embedder, "projection_layer", true)
	}
	return x
}

// expand maps block contexts [M, D] to the token decoder's r vectors [M, r, Dt].
func (b *builder) expand(ctx *Node) *Node {
	td := b.cfg.TokenDecoder
	return Reshape(b.linear(ctx, formats.TokenDecoder, "expansion_layer", true), ctx.Shape().Dim(0), td.ExpansionRatio, td.Hidden)
}

// tokenHead is the token decoder's output projection, in float32.
func (b *builder) tokenHead(h *Node) *Node {
	return ConvertDType(b.linear(h, formats.TokenDecoder, "embed_out", false), dtypes.Float32)
}

// tokenPositions is how many positions the token decoder sees for one block.
func (b *builder) tokenPositions() int {
	if b.cfg.TokenDecoder.Decoding == "summation" {
		return b.cfg.BlockLength
	}
	return b.cfg.TokenDecoder.ExpansionRatio + b.cfg.BlockLength - 1
}

// tokenDecoderTeacher scores every token of the target blocks tgt [M, L] given their contexts
// ctx [M, D]; returns logits [M, L, V].
func (b *builder) tokenDecoderTeacher(ctx, tgt *Node) *Node {
	td := b.cfg.TokenDecoder
	M, L := tgt.Shape().Dim(0), tgt.Shape().Dim(1)
	var x *Node
	if td.Decoding == "summation" {
		// [BOS, x_1..x_{L-1}], each plus its own expanded vector.
		in := b.bos(M)
		if L > 1 {
			in = Concatenate([]*Node{in, Slice(tgt, AxisRange(), AxisRange(0, L-1))}, 1)
		}
		x = Add(b.embed(in, formats.TokenDecoder, "embed_in.weight"), b.expand(ctx))
	} else {
		x = b.expand(ctx)
		if L > 1 {
			x = Concatenate([]*Node{x, b.embed(Slice(tgt, AxisRange(), AxisRange(0, L-1)), formats.TokenDecoder, "embed_in.weight")}, 1)
		}
	}
	T := b.tokenPositions()
	h := b.decoder(formats.TokenDecoder, &td.DecoderConfig, x, iotaPos(b.g, 0, T), T, causal(nil))
	// Prefix decoding: positions r-1 .. r+L-2 predict x_1 .. x_L.
	h = Slice(h, AxisRange(), AxisRange(T-L, T))
	return b.tokenHead(h)
}

// bos is the BOS id as int32 [M, 1] (summation decoding starts every block with it).
func (b *builder) bos(M int) *Node {
	ids := make([]int32, M)
	for i := range ids {
		ids[i] = int32(b.cfg.BOSTokenID)
	}
	return Reshape(Const(b.g, ids), M, 1)
}

// scoreBlock returns logits [B, n-1, L, V] for ids [B, n*L]: every token of blocks 1..n-1.
func (b *builder) scoreBlock(ids *Node) *Node {
	L := b.cfg.BlockLength
	B, T := ids.Shape().Dim(0), ids.Shape().Dim(1)
	n := T / L
	blocks := Reshape(ids, B, n, L)
	h := b.decoder(formats.BlockDecoder, b.cfg.BlockDecoder, b.embedBlocks(blocks), iotaPos(b.g, 0, n), n, causal(nil))
	D := h.Shape().Dim(-1)
	ctx := Reshape(Slice(h, AxisRange(), AxisRange(0, n-1)), B*(n-1), D)
	tgt := Reshape(Slice(blocks, AxisRange(), AxisRange(1, n)), B*(n-1), L)
	logits := b.tokenDecoderTeacher(ctx, tgt)
	return Reshape(logits, B, n-1, L, logits.Shape().Dim(-1))
}

// generateBlock emits the L tokens of one block from contexts ctx [B, D], one token decoder step
// per token, unrolled in the graph with a local KV cache that starts empty (at most r+L-1
// positions). rng is the sampler's state. Returns tokens int32 [B, L], logits [B, L, V] and the
// advanced rng state.
func (b *builder) generateBlock(ctx, rng *Node, s sampler) (*Node, *Node, *Node) {
	td := b.cfg.TokenDecoder
	L := b.cfg.BlockLength
	B := ctx.Shape().Dim(0)
	T := b.tokenPositions()
	prefix := b.expand(ctx) // [B, r, Dt]
	var past []kv
	var toks, logits []*Node
	pos := 0
	var x *Node
	for j := 0; j < L; j++ {
		switch {
		case td.Decoding == "summation":
			id := b.bos(B)
			if j > 0 {
				id = Reshape(toks[j-1], B, 1)
			}
			x = Add(b.embed(id, formats.TokenDecoder, "embed_in.weight"), Slice(prefix, AxisRange(), AxisElem(j)))
		case j == 0:
			x = prefix
		default:
			x = b.embed(Reshape(toks[j-1], B, 1), formats.TokenDecoder, "embed_in.weight")
		}
		n := x.Shape().Dim(1)
		h := b.decoder(formats.TokenDecoder, &td.DecoderConfig, x, iotaPos(b.g, pos, n), T, localCache(&past, pos))
		pos += n
		lg := b.tokenHead(Reshape(Slice(h, AxisRange(), AxisElem(n-1)), B, -1)) // [B, V]
		var tok *Node
		tok, rng = s.sample(lg, rng)
		toks = append(toks, tok)
		logits = append(logits, InsertAxes(lg, 1))
	}
	return Stack(toks, 1), Concatenate(logits, 1), rng
}

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

// fixedCache is the attendFn of a one-position step against a cache of fixed length S (layout
// [S, B, H, hd]) at position pos (int32 scalar): the new key/value are written at pos with a
// masked Where (the pure-Go backend has no DynamicUpdateSlice), and positions after pos are
// masked out. Updated caches replace (*caches)[layer].
func fixedCache(caches []kv, pos *Node) attendFn {
	return func(layer int, q, k, v *Node) *Node {
		c := caches[layer]
		S := c.k.Shape().Dim(0)
		g := q.Graph()
		idx := Iota(g, shapes.Make(dtypes.Int32, S), 0)
		at := Equal(idx, pos)
		write := func(cache, x *Node) *Node {
			return Where(at, BroadcastToShape(toCache(x), cache.Shape()), cache)
		}
		kc, vc := write(c.k, k), write(c.v, v)
		caches[layer] = kv{kc, vc}
		bias := Where(LessOrEqual(idx, pos), Zeros(g, shapes.Make(dtypes.Float32, S)), Const(g, float32(-1e9)))
		return attention(q, kc, vc, Reshape(bias, 1, S))
	}
}
