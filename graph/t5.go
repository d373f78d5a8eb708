package graph

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
)

// The T5 token decoder (official t5, cross_attention decoding): the decoder stack of an HF T5
// model over the block's tokens [BOS, x_1, ...], embedded with its token table and nothing
// added. Each layer: self-attention (causal, T5's relative position bias, no 1/sqrt(d_kv)
// scaling), cross-attention to the r expanded block vectors (no bias, no mask, no scaling), ReLU
// feed-forward, each after an RMS norm and added to the residual; a final RMS norm, then the
// tied head on the output rescaled by d_model^-0.5. No biases anywhere.

// t5Teacher scores whole blocks: [BOS, x_1..x_{L-1}] attend to the r expanded vectors P in every
// layer.
func (b *builder) t5Teacher(P, tgt *Node) *Node {
	L := tgt.Shape().Dim(1)
	return b.t5Head(b.t5Decoder(b.embed(b.shiftRight(tgt), arch.TokenDecoder, arch.EmbedIn+".weight"), b.t5Cross(P), b.t5Causal(L)))
}

// t5Start is the generation of a block: the cross-attention keys and values of P once, then each
// step against the block's earlier positions.
func (b *builder) t5Start(P *Node) func(j int, id *Node) *Node {
	cross := b.t5Cross(P)
	var past []kv
	return func(j int, id *Node) *Node {
		z := b.t5Decoder(b.embed(id, arch.TokenDecoder, arch.EmbedIn+".weight"), cross, b.t5Local(&past, j, 1))
		return b.t5Head(Reshape(z, id.Shape().Dim(0), -1)) // [B, V]
	}
}

// t5Decoder runs the stack over x [M, T, d], the block's positions start..start+T-1, given every
// layer's cross-attention keys and values (t5Cross); self decides what each layer's
// self-attention sees (t5Causal, t5Local). Returns the output after the final norm [M, T, d].
func (b *builder) t5Decoder(x *Node, cross []kv, self attendFn) *Node {
	t := b.cfg.TokenDecoder.Own.(*arch.T5Config)
	const c = arch.TokenDecoder
	M, T := x.Shape().Dim(0), x.Shape().Dim(1)
	heads := func(n *Node, name string) *Node {
		return Reshape(b.linear(n, c, name, false), M, -1, t.Heads, t.HeadDim)
	}
	for i := 0; i < t.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		n := b.rmsNorm(x, c, p+arch.InputNorm, t.LayerNormEps)
		o := self(i, heads(n, p+arch.AttnQuery), heads(n, p+arch.AttnKey), heads(n, p+arch.AttnValue))
		x = Add(x, b.linear(Reshape(o, M, T, t.Inner()), c, p+arch.AttnOut, false))
		n = b.rmsNorm(x, c, p+arch.CrossNorm, t.LayerNormEps)
		o = b.scaledAttention(heads(n, p+arch.CrossQuery), cross[i].k, cross[i].v, nil, 1)
		x = Add(x, b.linear(Reshape(o, M, T, t.Inner()), c, p+arch.CrossOut, false))
		n = b.rmsNorm(x, c, p+arch.PostNorm, t.LayerNormEps)
		x = Add(x, b.linear(MaxScalar(b.linear(n, c, p+arch.MLPUp, false), 0), c, p+arch.MLPDown, false)) // ReLU
	}
	return b.rmsNorm(x, c, arch.FinalNorm, t.LayerNormEps)
}

// t5Cross is every layer's cross-attention keys and values of the expanded vectors P [M, r, d]
// (cache layouts): computed once per block.
func (b *builder) t5Cross(P *Node) []kv {
	t := b.cfg.TokenDecoder.Own.(*arch.T5Config)
	M, r := P.Shape().Dim(0), P.Shape().Dim(1)
	out := make([]kv, t.Layers)
	for i := range out {
		p := fmt.Sprintf("layers.%d.", i)
		k := Reshape(b.linear(P, arch.TokenDecoder, p+arch.CrossKey, false), M, r, t.Heads, t.HeadDim)
		v := Reshape(b.linear(P, arch.TokenDecoder, p+arch.CrossValue, false), M, r, t.Heads, t.HeadDim)
		out[i] = kv{toKeys(k), toValues(v)}
	}
	return out
}

// t5Causal is the self-attention of a whole block at once (scoring): T positions from 0,
// causal, with the relative position bias.
func (b *builder) t5Causal(T int) attendFn {
	bias := Add(b.t5PositionBias(0, T, T), InsertAxes(causalBias(b.g, 0, T), 0, 0))
	return func(_ int, q, k, v *Node) *Node {
		return b.scaledAttention(q, toKeys(k), toValues(v), bias, 1)
	}
}

// t5Local is the self-attention of generation: new positions from start against the block's
// earlier ones, kept in *past (one entry per layer) as localCache keeps them.
func (b *builder) t5Local(past *[]kv, start, T int) attendFn {
	bias := b.t5PositionBias(start, T, start+T)
	return func(layer int, q, k, v *Node) *Node {
		kc, vc := appendLocal(past, layer, k, v)
		return b.scaledAttention(q, kc, vc, bias, 1)
	}
}

// t5PositionBias is the relative position bias [1, H, T, S] of queries at positions
// start..start+T-1 against keys at 0..S-1, from the one table every layer uses (the official
// checkpoint keeps it in block 0). Keys after a query get the bias of distance 0; the causal mask
// hides them.
func (b *builder) t5PositionBias(start, T, S int) *Node {
	t := b.cfg.TokenDecoder.Own.(*arch.T5Config)
	idx := make([]int32, T*S)
	for q := 0; q < T; q++ {
		for k := 0; k < S; k++ {
			idx[q*S+k] = int32(t5Bucket(max(start+q-k, 0), t.Buckets, t.MaxDistance))
		}
	}
	table := ConvertDType(b.w(arch.TokenDecoder, arch.RelBias+".weight"), dtypes.Float32) // [buckets, H]
	bias := take(table, Reshape(Const(b.g, idx), T, S))                                   // [T, S, H]
	return InsertAxes(TransposeAllAxes(bias, 2, 0, 1), 0)
}

// t5Bucket is the bucket of a query n >= 0 positions after its key, for a decoder (one-sided
// buckets): n itself below half the buckets, then logarithmically spaced up to maxDistance, the
// last bucket past it. HF computes the logarithm in float32; for every distance below two million
// that gives the buckets of the exact formula computed here.
func t5Bucket(n, buckets, maxDistance int) int {
	exact := buckets / 2
	if n < exact {
		return n
	}
	large := exact + int(math.Log(float64(n)/float64(exact))/math.Log(float64(maxDistance)/float64(exact))*float64(buckets-exact))
	return min(large, buckets-1)
}

// rmsNorm is T5's norm of the last axis in float32: weight * x / sqrt(mean(x^2) + eps), no mean
// subtracted, no bias.
func (b *builder) rmsNorm(x *Node, component, name string, eps float64) *Node {
	x32 := ConvertDType(x, dtypes.Float32)
	y := Mul(x32, Rsqrt(AddScalar(ReduceAndKeep(Square(x32), ReduceMean, -1), eps)))
	w := ExpandLeftToRank(ConvertDType(b.w(component, name+".weight"), dtypes.Float32), x.Rank())
	return ConvertDType(Mul(y, w), b.dt)
}

// t5Head is the tied output head: the output rescaled by d_model^-0.5 times the token table, in
// float32 (not a Linear of the model's: calibration does not watch it).
func (b *builder) t5Head(z *Node) *Node {
	t := b.cfg.TokenDecoder.Own.(*arch.T5Config)
	dims := z.Shape().Dimensions
	W := b.w(arch.TokenDecoder, arch.EmbedIn+".weight")                                                              // [V, d]
	y := b.dot(Reshape(MulScalar(z, 1/math.Sqrt(float64(t.Hidden))), -1, t.Hidden), []int{1}, nil, W, []int{1}, nil) // the table read in place
	return ConvertDType(Reshape(y, append(append([]int(nil), dims[:len(dims)-1]...), W.Shape().Dim(0))...), dtypes.Float32)
}

// t5Work is the stack's working memory at batch B: the block's L positions against themselves and
// the r expanded vectors.
func t5Work(c *arch.Config, B int64) int64 {
	t, L, r := c.TokenDecoder.Own.(*arch.T5Config), int64(c.BlockLength), int64(c.TokenDecoder.ExpansionRatio)
	return Activations(actPerHidden, t.Hidden, t.Intermediate, t.Heads, B, L, L+r)
}
