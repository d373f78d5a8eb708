package llama

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // the op vocabulary reads best unqualified

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph"
)

// stack is a Llama-family stack over x [B, T, D] at positions pos, top to bottom:
//
//	for each layer:
//	  a = RMSNorm(x)
//	  q, k, v = a Wq (+bq), a Wk (+bk), a Wv (+bv)   k, v with KVH heads
//	  x = x + attention(rope(q), rope(k), v) Wo (+bo)
//	  m = RMSNorm(x)
//	  x = x + (silu(m Wgate) * (m Wup)) Wdown
//	RMSNorm(x)
func stack(o *graph.Ops, comp string, d *arch.DecoderConfig, x, pos *Node, maxPos int, attend graph.Attend) *Node {
	opt := options(d)
	rope := o.Rotary(d, maxPos, opt.ropeScale())
	B, T := x.Shape().Dim(0), x.Shape().Dim(1)
	H, KVH, hd := d.Heads, d.KVHeadCount(), d.HeadDim
	for i := 0; i < d.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		a := o.RMSNorm(x, comp, p+arch.InputNorm, d.LayerNormEps)
		q := Reshape(o.Linear(a, comp, p+partQ.Module(), opt.QKVBias), B, T, H, hd)
		k := Reshape(o.Linear(a, comp, p+partK.Module(), opt.QKVBias), B, T, KVH, hd)
		v := Reshape(o.Linear(a, comp, p+partV.Module(), opt.QKVBias), B, T, KVH, hd)
		ctx := Reshape(attend(i, rope(q, pos), rope(k, pos), v), B, T, H*hd)
		x = Add(x, o.Linear(ctx, comp, p+partO.Module(), opt.OutBias))
		m := o.RMSNorm(x, comp, p+arch.PostNorm, d.LayerNormEps)
		gate := o.Linear(m, comp, p+partGate.Module(), false)
		up := o.Linear(m, comp, p+partUp.Module(), false)
		x = Add(x, o.Linear(Mul(Mul(gate, Sigmoid(gate)), up), comp, p+partDown.Module(), false))
	}
	return o.RMSNorm(x, comp, arch.FinalNorm, d.LayerNormEps)
}
