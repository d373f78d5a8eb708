package graph

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
)

// The Block Transformer, top to bottom: embedder -> block decoder -> token decoder. The same
// functions serve scoring (teacher forcing over every block) and generation (one block at a time).

// A Block Transformer is a composition: an embedder and a token decoder, each the graph registered
// under its official class (arch.ClassLookup, ...), around a block decoder stack of any family
// (family.go). This file wires them; an embedder class (the lookup table, an encoder) and a token
// decoder with a stack of its own are in their families' packages, registered through family.go;
// below are the stack token decoders, whose stack is any family's.

// blockEmbedder turns token ids [B, n, L] into each block's vectors, concatenated: [B, n, K*De].
type blockEmbedder func(b *builder, ids *Node) *Node

// tokenDecoderGraph is a token decoder class: how it scores a whole block at once (teacher
// forcing) and how it generates one token at a time.
type tokenDecoderGraph struct {
	// teacher returns the logits [M, L, V] of every token of the target blocks tgt [M, L] given
	// their expanded block vectors P [M, r, Dt].
	teacher func(b *builder, P, tgt *Node) *Node
	// start prepares the generation of one block from P [B, r, Dt] and returns its step: the
	// logits [B, V] of the token after id [B, 1] (the BOS at j = 0), the j-th token of the block.
	start func(b *builder, P *Node) func(j int, id *Node) *Node
	// work is the working memory of a block's decoding at batch B, for the memory estimate (nil: a
	// decoder family's stack, which the estimate counts itself).
	work func(c *arch.Config, B int64) int64
}

// embedderGraph is an embedder class: its vectors, and the working memory of embedding rows
// blocks at once, for the memory estimate. Each class registers its own (RegisterEncoder).
type embedderGraph struct {
	vectors blockEmbedder
	work    EncoderWork
}

var (
	embedders     = map[string]embedderGraph{}
	tokenDecoders = map[string]tokenDecoderGraph{
		arch.ClassNeoX: {teacher: (*builder).stackTeacher, start: (*builder).stackStart},
	}
)

func (b *builder) tokenDecoderGraph() tokenDecoderGraph {
	classes.RLock()
	g, ok := tokenDecoders[b.cfg.TokenDecoder.Class()]
	classes.RUnlock()
	if !ok {
		panic("no graph for token decoder class " + b.cfg.TokenDecoder.Class())
	}
	return g
}

// embedBlocks turns token ids [B, n, L] into block vectors [B, n, D]: the embedder's vectors of
// each block, followed (projection_layer embedder) by a Linear over their concatenation.
func (b *builder) embedBlocks(ids *Node) *Node {
	classes.RLock()
	e, ok := embedders[b.cfg.Embedder.Class()]
	classes.RUnlock()
	if !ok {
		panic("no graph for embedder class " + b.cfg.Embedder.Class())
	}
	x := e.vectors(b, ids)
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
	return ConvertDType(b.linear(h, arch.TokenDecoder, b.cfg.TokenDecoder.HeadName(), false), dtypes.Float32)
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
	return b.tokenDecoderGraph().teacher(b, b.expand(ctx), tgt)
}

// stackTeacher is teacher forcing through a stack token decoder (GPT-NeoX or a registered family):
// prefix decoding runs [P_1..P_r, x_1..x_{L-1}], summation [BOS, x_1..x_{L-1}] each plus its own
// expanded vector.
func (b *builder) stackTeacher(P, tgt *Node) *Node {
	td := b.cfg.TokenDecoder
	L := tgt.Shape().Dim(1)
	x := P
	switch {
	case td.Decoding == arch.Summation:
		x = Add(b.embed(b.shiftRight(tgt), arch.TokenDecoder, arch.EmbedIn+".weight"), P)
	case L > 1:
		x = Concatenate([]*Node{P, b.embed(Slice(tgt, AxisRange(), AxisRange(0, L-1)), arch.TokenDecoder, arch.EmbedIn+".weight")}, 1)
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
// per token, unrolled in the graph (the token decoder class keeps what its steps share: a local
// KV cache that starts empty, at most r+L-1 positions; a T5 decoder's cross-attention keys and
// values, computed once). st is the sampler's state. Returns tokens int32 [B, L], logits
// [B, L, V] and the advanced state.
func (b *builder) generateBlock(ctx *Node, st genState, s sampler) (*Node, *Node, genState) {
	L := b.cfg.BlockLength
	B := ctx.Shape().Dim(0)
	step := b.tokenDecoderGraph().start(b, b.expand(ctx))
	var toks, logits []*Node
	for j := 0; j < L; j++ {
		id := b.bos(B)
		if j > 0 {
			id = Reshape(toks[j-1], B, 1)
		}
		lg := step(j, id)
		var tok *Node
		tok, st = s.sample(lg, st)
		toks = append(toks, tok)
		logits = append(logits, InsertAxes(lg, 1))
	}
	return Stack(toks, 1), Concatenate(logits, 1), st
}

// stackStart is the generation of a block by a stack token decoder: each step (stackStep) runs
// against the block's earlier positions in a local cache.
func (b *builder) stackStart(P *Node) func(j int, id *Node) *Node {
	var past []kv
	pos := 0
	return func(j int, id *Node) *Node { return b.stackStep(j, &pos, P, id, &past) }
}

// stackStep is step j of a stack token decoder generating a block: its input (the prefix, or the
// embedded id, summation: plus the j-th expanded vector) at position *pos onwards, against the
// block's earlier positions in *past. Returns the logits of the next token [B, V].
func (b *builder) stackStep(j int, pos *int, prefix, id *Node, past *[]kv) *Node {
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
