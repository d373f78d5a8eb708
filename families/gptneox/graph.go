package gptneox

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // the op vocabulary reads best unqualified

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph"
)

// stack is a GPT-NeoX stack over x [B, T, D] at positions pos, top to bottom:
//
//	for each layer:
//	  a = LayerNorm1(x)
//	  q, k, v = a Wqkv + b   (per head: q, k, v interleaved)
//	  attn = attention(rope(q), rope(k), v) Wo + bo   (rope over the leading rotary dims)
//	  mlp(h) = gelu(LayerNorm2(h) Wup + bup) Wdown + bdown
//	  x = x + attn + mlp(x)          (parallel residual)
//	  or x = x + attn; x = x + mlp(x)
//	LayerNorm(x)
func stack(o *graph.Ops, comp string, d *arch.DecoderConfig, x, pos *Node, maxPos int, attend graph.Attend) *Node {
	rope := o.Rotary(graph.RotaryFreqs(d.RotaryBase, d.RotaryDims), maxPos)
	B, T := x.Shape().Dim(0), x.Shape().Dim(1)
	H, hd := d.Heads, d.HeadDim
	for i := 0; i < d.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		a := o.LayerNorm(x, comp, p+arch.InputNorm, d.LayerNormEps)
		qkv := Reshape(o.Linear(a, comp, p+arch.QKV, true), B, T, H, 3, hd)
		pick := func(j int) *Node {
			return Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisElem(j), AxisRange()), B, T, H, hd)
		}
		ctx := Reshape(attend(i, rope(pick(0), pos), rope(pick(1), pos), pick(2)), B, T, d.Hidden)
		attn := o.Linear(ctx, comp, p+arch.AttnOut, true)
		mlp := func(h *Node) *Node {
			h = o.LinearGELU(o.LayerNorm(h, comp, p+arch.PostNorm, d.LayerNormEps), comp, p+arch.MLPUp, true)
			return o.Linear(h, comp, p+arch.MLPDown, true)
		}
		if d.ParallelResidual {
			x = Add(Add(x, attn), mlp(x))
		} else {
			x = Add(x, attn)
			x = Add(x, mlp(x))
		}
	}
	return o.LayerNorm(x, comp, arch.FinalNorm, d.LayerNormEps)
}

// work is a stack's working memory: a layer's live [rows, T, D] intermediates (q/k/v, rotary,
// residuals; its norms fused), the MLP's and the attention scores (graph.Activations).
func work(d *arch.DecoderConfig, rows, T, S int64) int64 {
	const perHidden = 12
	return graph.Activations(perHidden, d.Hidden, d.Intermediate, d.Heads, rows, T, S)
}
