package llama

import (
	"fmt"
	"math"

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
	rope := o.Rotary(invFreqs(d, opt), maxPos)
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

// invFreqs are the rotary inverse frequencies of the whole head: rope_theta's, divided by the
// linear factor, or reshaped by llama3's scaling (long wavelengths slowed by its factor, short ones
// kept, those between interpolated smoothly), as transformers computes them.
func invFreqs(d *arch.DecoderConfig, o Options) []float64 {
	f := graph.RotaryFreqs(d.RotaryBase, d.RotaryDims)
	switch r := o.RopeLlama3; {
	case o.RopeScale > 0:
		for i := range f {
			f[i] /= o.RopeScale
		}
	case r != nil:
		old := float64(r.OriginalMax)
		lowWavelen, highWavelen := old/r.LowFreq, old/r.HighFreq
		for i, v := range f {
			wavelen := 2 * math.Pi / v
			switch {
			case wavelen > lowWavelen:
				f[i] = v / r.Factor
			case wavelen >= highWavelen: // between: interpolate
				smooth := (old/wavelen - r.LowFreq) / (r.HighFreq - r.LowFreq)
				f[i] = (1-smooth)*v/r.Factor + smooth*v
			}
		}
	}
	return f
}

// work is a stack's working memory: built op by op, its norms are unfused (float32 copies) and the
// gated MLP's gate, up, activation and product are alive together, beyond what a GPT-NeoX layer
// keeps (graph.Activations).
func work(d *arch.DecoderConfig, rows, T, S int64) int64 {
	const (
		perHidden = 16 // a GPT-NeoX layer's 12, and 4 more
		perFFN    = 3
		f32       = 4
	)
	return graph.Activations(perHidden, d.Hidden, d.Intermediate, d.Heads, rows, T, S) + rows*T*perFFN*int64(d.Intermediate)*f32
}
