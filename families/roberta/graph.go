package roberta

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph"
)

// The encoder's math, top to bottom: every token of a block sees every other of its block
// (nothing crosses block boundaries, and nothing is masked inside a block: a pad token is an
// ordinary token but for its position). Post-LayerNorm layers with exact GELU.

// vectors turns token ids [B, n, L] into each block's encoder vectors, concatenated: [B, n, K*He]
// (K = L, or the CLS count).
func vectors(o *graph.Ops, c *arch.Config, ids *Node) *Node {
	e := c.Embedder
	r := e.Encoder.(*Config)
	g := o.Graph()
	B, n, L := ids.Shape().Dim(0), ids.Shape().Dim(1), ids.Shape().Dim(2)
	M := B * n
	s := Reshape(ids, M, L)
	if r.CLSTokens > 0 {
		cls := BroadcastToDims(Const(g, int32(r.BOSTokenID)), M, r.CLSTokens)
		s = Concatenate([]*Node{cls, s}, 1)
	}
	S := s.Shape().Dim(1)
	// Positions by the fairseq rule: counting from pad+1 over the tokens that are not the pad id;
	// a pad id itself sits at position pad and is not counted.
	pad := Const(g, int32(r.PadTokenID))
	counted := ConvertDType(NotEqual(s, pad), dtypes.Int32)
	pos := Add(Mul(CumSum(counted, 1), counted), pad)
	typ := Slice(o.Weight(arch.Embedder, arch.TokenTypes+".weight"), AxisElem(0)) // every token has type 0: [1, He]
	h := Add(Add(o.Embed(s, arch.Embedder, arch.Embedding+".weight"), o.Embed(pos, arch.Embedder, arch.Positions+".weight")), InsertAxes(typ, 0))
	h = o.LayerNorm(h, arch.Embedder, arch.EmbedNorm, r.LayerNormEps)
	He := e.Dim
	for i := 0; i < r.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		heads := func(module string) *Node {
			return Reshape(o.Linear(h, arch.Embedder, p+module, true), M, S, r.Heads, r.HeadDim)
		}
		ctx := Reshape(o.Attention(heads(arch.AttnQuery), heads(arch.AttnKey), heads(arch.AttnValue)), M, S, He)
		a := o.LayerNorm(Add(o.Linear(ctx, arch.Embedder, p+arch.AttnOut, true), h), arch.Embedder, p+arch.AttnNorm, r.LayerNormEps)
		f := o.LinearGELU(a, arch.Embedder, p+arch.MLPUp, true)
		h = o.LayerNorm(Add(o.Linear(f, arch.Embedder, p+arch.MLPDown, true), a), arch.Embedder, p+arch.MLPNorm, r.LayerNormEps)
	}
	K := r.Outputs(L) // the first K outputs: the CLS tokens', or (no CLS) all of them
	return Reshape(Slice(h, AxisRange(), AxisRange(0, K)), B, n, K*He)
}

// work is the encoder's working memory over rows blocks at once (a layer's live intermediates: as
// a GPT-NeoX layer's, less the rotary ones).
func work(c *arch.Config, rows int64) int64 {
	const perHidden = 10
	r := c.Embedder.Encoder.(*Config)
	S := int64(r.Inputs(c.BlockLength))
	return graph.Activations(perHidden, c.Embedder.Dim, r.Intermediate, r.Heads, rows, S, S)
}
