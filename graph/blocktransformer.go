package graph

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
)

// The Block Transformer, top to bottom: embedder -> block decoder -> token decoder. The same
// functions serve scoring (teacher forcing over every block) and generation (one block at a time).

// embedBlocks turns token ids [B, n, L] into block vectors [B, n, D]: the concatenation of the
// block's vectors (its L token vectors from the lookup table, or its RoBERTa encoder outputs,
// roberta.go), followed (projection_layer embedder) by a Linear over that concatenation.
func (b *builder) embedBlocks(ids *Node) *Node {
	B, n, L := ids.Shape().Dim(0), ids.Shape().Dim(1), ids.Shape().Dim(2)
	var x *Node
	if b.cfg.Embedder.RoBERTa != nil {
		x = b.robertaVectors(ids)
	} else {
		e := b.embed(ids, arch.Embedder, arch.Embedding+".weight") // [B, n, L, De]
		x = Reshape(e, B, n, L*e.Shape().Dim(-1))
	}
	if b.cfg.Embedder.Type == arch.ProjectionLayer {
		x = b.linear(x, arch.Embedder, arch.Project, true)
	}
	return x
}

// expand maps block contexts [M, D] to the token decoder's r vectors [M, r, Dt].
func (b *builder) expand(ctx *Node) *Node {
	td := b.cfg.TokenDecoder
	return Reshape(b.linear(ctx, arch.TokenDecoder, arch.Expand, true), ctx.Shape().Dim(0), td.ExpansionRatio, td.Width())
}

// tokenHead is the token decoder's output projection, in float32.
func (b *builder) tokenHead(h *Node) *Node {
	return ConvertDType(b.linear(h, arch.TokenDecoder, arch.EmbedOut, false), dtypes.Float32)
}

// tokenPositions is how many positions the token decoder sees for one block.
func (b *builder) tokenPositions() int {
	if b.cfg.TokenDecoder.Decoding == arch.Summation {
		return b.cfg.BlockLength
	}
	return b.cfg.TokenDecoder.ExpansionRatio + b.cfg.BlockLength - 1
}

// tokenDecoderTeacher scores every token of the target blocks tgt [M, L] given their contexts
// ctx [M, D]; returns logits [M, L, V].
func (b *builder) tokenDecoderTeacher(ctx, tgt *Node) *Node {
	td := b.cfg.TokenDecoder
	L := tgt.Shape().Dim(1)
	if td.T5 != nil {
		// Cross-attention: [BOS, x_1..x_{L-1}] attend to the r expanded vectors in every layer.
		z := b.t5Decoder(b.embed(b.shiftRight(tgt), arch.TokenDecoder, arch.EmbedIn+".weight"), b.t5Cross(b.expand(ctx)), b.t5Causal(L))
		return b.t5Head(z)
	}
	var x *Node
	if td.Decoding == arch.Summation {
		// [BOS, x_1..x_{L-1}], each plus its own expanded vector.
		x = Add(b.embed(b.shiftRight(tgt), arch.TokenDecoder, arch.EmbedIn+".weight"), b.expand(ctx))
	} else {
		x = b.expand(ctx)
		if L > 1 {
			x = Concatenate([]*Node{x, b.embed(Slice(tgt, AxisRange(), AxisRange(0, L-1)), arch.TokenDecoder, arch.EmbedIn+".weight")}, 1)
		}
	}
	T := b.tokenPositions()
	h := b.decoder(arch.TokenDecoder, &td.DecoderConfig, x, iotaPos(b.g, 0, T), T, b.causal(nil, nil))
	// Prefix decoding: positions r-1 .. r+L-2 predict x_1 .. x_L.
	h = Slice(h, AxisRange(), AxisRange(T-L, T))
	return b.tokenHead(h)
}

// shiftRight is the token decoder's input for target blocks tgt [M, L]: [BOS, x_1..x_{L-1}].
func (b *builder) shiftRight(tgt *Node) *Node {
	M, L := tgt.Shape().Dim(0), tgt.Shape().Dim(1)
	if L == 1 {
		return b.bos(M)
	}
	return Concatenate([]*Node{b.bos(M), Slice(tgt, AxisRange(), AxisRange(0, L-1))}, 1)
}

// bos is the BOS id as int32 [M, 1] (summation and cross-attention decoding start every block
// with it: GPT-NeoX's, or the T5 token decoder's own).
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
	h := b.decoder(arch.BlockDecoder, b.cfg.BlockDecoder, b.embedBlocks(blocks), iotaPos(b.g, 0, n), n, b.causal(nil, nil))
	D := h.Shape().Dim(-1)
	ctx := Reshape(Slice(h, AxisRange(), AxisRange(0, n-1)), B*(n-1), D)
	tgt := Reshape(Slice(blocks, AxisRange(), AxisRange(1, n)), B*(n-1), L)
	logits := b.tokenDecoderTeacher(ctx, tgt)
	return Reshape(logits, B, n-1, L, logits.Shape().Dim(-1))
}

// generateBlock emits the L tokens of one block from contexts ctx [B, D], one token decoder step
// per token, unrolled in the graph with a local KV cache that starts empty (at most r+L-1
// positions; a T5 token decoder's cross-attention keys and values of the r expanded vectors are
// computed once, before the steps). st is the sampler's state. Returns tokens int32 [B, L],
// logits [B, L, V] and the advanced state.
func (b *builder) generateBlock(ctx *Node, st genState, s sampler) (*Node, *Node, genState) {
	td := b.cfg.TokenDecoder
	L := b.cfg.BlockLength
	B := ctx.Shape().Dim(0)
	prefix := b.expand(ctx) // [B, r, Dt]
	var cross []kv
	if td.T5 != nil {
		cross = b.t5Cross(prefix) // once for the block's L steps
	}
	var past []kv
	var toks, logits []*Node
	pos := 0
	for j := 0; j < L; j++ {
		id := b.bos(B)
		if j > 0 {
			id = Reshape(toks[j-1], B, 1)
		}
		var lg *Node
		if td.T5 != nil {
			z := b.t5Decoder(b.embed(id, arch.TokenDecoder, arch.EmbedIn+".weight"), cross, b.t5Local(&past, j, 1))
			lg = b.t5Head(Reshape(z, B, -1)) // [B, V]
		} else {
			lg = b.neoxStep(j, &pos, prefix, id, &past)
		}
		var tok *Node
		tok, st = s.sample(lg, st)
		toks = append(toks, tok)
		logits = append(logits, InsertAxes(lg, 1))
	}
	return Stack(toks, 1), Concatenate(logits, 1), st
}

// neoxStep is step j of a GPT-NeoX token decoder generating a block: its input (the prefix, or
// the embedded id, summation: plus the j-th expanded vector) at position *pos onwards, against
// the block's earlier positions in *past. Returns the logits of the next token [B, V].
func (b *builder) neoxStep(j int, pos *int, prefix, id *Node, past *[]kv) *Node {
	td := b.cfg.TokenDecoder
	B := prefix.Shape().Dim(0)
	var x *Node
	switch {
	case td.Decoding == arch.Summation:
		x = Add(b.embed(id, arch.TokenDecoder, arch.EmbedIn+".weight"), Slice(prefix, AxisRange(), AxisElem(j)))
	case j == 0:
		x = prefix
	default:
		x = b.embed(id, arch.TokenDecoder, arch.EmbedIn+".weight")
	}
	n := x.Shape().Dim(1)
	positions := iotaPos(b.g, *pos, n)
	if b.officialPositions && td.Decoding == arch.Prefix {
		positions = iotaPos(b.g, j, 1) // token j at j
		if j == 0 {
			positions = Mul(iotaPos(b.g, 0, n), Const(b.g, int32(0))) // the whole prefix at 0
		}
	}
	h := b.decoder(arch.TokenDecoder, &td.DecoderConfig, x, positions, b.tokenPositions(), b.localCache(past, *pos))
	*pos += n
	return b.tokenHead(Reshape(Slice(h, AxisRange(), AxisElem(n-1)), B, -1))
}
