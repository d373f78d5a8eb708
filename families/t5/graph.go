package t5

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph"
)

// The stack's math, top to bottom, over the block's tokens [BOS, x_1, ...] embedded with its token
// table and nothing added. Each layer: self-attention (causal, T5's relative position bias, no
// 1/sqrt(d_kv) scaling), cross-attention to the r expanded block vectors (no bias, no mask, no
// scaling), ReLU feed-forward, each after an RMS norm and added to the residual; a final RMS norm,
// then the tied head on the output rescaled by d_model^-0.5. No biases anywhere.

const comp = arch.TokenDecoder

// teacher scores whole blocks: [BOS, x_1..x_{L-1}] attend to the r expanded vectors P in every
// layer.
func teacher(o *graph.Ops, c *arch.Config, P, tgt *Node) *Node {
	t := c.TokenDecoder.Own.(*Config)
	T := tgt.Shape().Dim(1)
	bias := Add(positionBias(o, t, 0, T, T), InsertAxes(o.CausalMask(0, T), 0, 0))
	self := func(_ int, q, k, v *Node) *Node { return o.AttendKeys(q, o.Keys(k, v), bias, 1) }
	return head(o, t, decoder(o, t, o.Embed(o.ShiftRight(tgt), comp, arch.EmbedIn+".weight"), cross(o, t, P), self))
}

// start is the generation of a block: the cross-attention keys and values of P once, then each
// step against the block's earlier positions, kept in a local cache.
func start(o *graph.Ops, c *arch.Config, P *Node) func(j int, id *Node) *Node {
	t := c.TokenDecoder.Own.(*Config)
	kv := cross(o, t, P)
	past := new(graph.LocalCache)
	return func(j int, id *Node) *Node {
		bias := positionBias(o, t, j, 1, j+1)
		self := func(layer int, q, k, v *Node) *Node { return past.Attend(o, layer, q, k, v, bias, 1) }
		z := decoder(o, t, o.Embed(id, comp, arch.EmbedIn+".weight"), kv, self)
		return head(o, t, Reshape(z, id.Shape().Dim(0), -1)) // [B, V]
	}
}

// decoder runs the stack over x [M, T, d], given every layer's cross-attention keys and values;
// self is each layer's self-attention of q, k, v [M, T, H, d_kv]. Returns the output after the
// final norm [M, T, d].
func decoder(o *graph.Ops, t *Config, x *Node, kv []graph.Keys, self graph.Attend) *Node {
	M, T := x.Shape().Dim(0), x.Shape().Dim(1)
	heads := func(n *Node, name string) *Node {
		return Reshape(o.Linear(n, comp, name, false), M, -1, t.Heads, t.HeadDim)
	}
	for i := 0; i < t.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		n := rmsNorm(o, x, p+arch.InputNorm, t.LayerNormEps)
		a := self(i, heads(n, p+arch.AttnQuery), heads(n, p+arch.AttnKey), heads(n, p+arch.AttnValue))
		x = Add(x, o.Linear(Reshape(a, M, T, t.Inner()), comp, p+arch.AttnOut, false))
		n = rmsNorm(o, x, p+arch.CrossNorm, t.LayerNormEps)
		a = o.AttendKeys(heads(n, p+arch.CrossQuery), kv[i], nil, 1)
		x = Add(x, o.Linear(Reshape(a, M, T, t.Inner()), comp, p+arch.CrossOut, false))
		n = rmsNorm(o, x, p+arch.PostNorm, t.LayerNormEps)
		x = Add(x, o.Linear(MaxScalar(o.Linear(n, comp, p+arch.MLPUp, false), 0), comp, p+arch.MLPDown, false)) // ReLU
	}
	return rmsNorm(o, x, arch.FinalNorm, t.LayerNormEps)
}

// cross is every layer's cross-attention keys and values of the expanded vectors P [M, r, d]:
// computed once per block.
func cross(o *graph.Ops, t *Config, P *Node) []graph.Keys {
	M, r := P.Shape().Dim(0), P.Shape().Dim(1)
	out := make([]graph.Keys, t.Layers)
	for i := range out {
		p := fmt.Sprintf("layers.%d.", i)
		k := Reshape(o.Linear(P, comp, p+arch.CrossKey, false), M, r, t.Heads, t.HeadDim)
		v := Reshape(o.Linear(P, comp, p+arch.CrossValue, false), M, r, t.Heads, t.HeadDim)
		out[i] = o.Keys(k, v)
	}
	return out
}

// positionBias is the relative position bias [1, H, T, S] of queries at positions
// start..start+T-1 against keys at 0..S-1, from the one table every layer uses (the official
// checkpoint keeps it in block 0). Keys after a query get the bias of distance 0; the causal mask
// hides them.
func positionBias(o *graph.Ops, t *Config, start, T, S int) *Node {
	idx := make([]int32, T*S)
	for q := 0; q < T; q++ {
		for k := 0; k < S; k++ {
			idx[q*S+k] = int32(bucket(max(start+q-k, 0), t.Buckets, t.MaxDistance))
		}
	}
	table := ConvertDType(o.Weight(comp, arch.RelBias+".weight"), dtypes.Float32) // [buckets, H]
	bias := Gather(table, InsertAxes(Reshape(Const(o.Graph(), idx), T, S), -1))   // [T, S, H]
	return InsertAxes(TransposeAllAxes(bias, 2, 0, 1), 0)
}

// bucket is the bucket of a query n >= 0 positions after its key, for a decoder (one-sided
// buckets): n itself below half the buckets, then logarithmically spaced up to maxDistance, the
// last bucket past it. HF computes the logarithm in float32; for every distance below two million
// that gives the buckets of the exact formula computed here.
func bucket(n, buckets, maxDistance int) int {
	exact := buckets / 2
	if n < exact {
		return n
	}
	large := exact + int(math.Log(float64(n)/float64(exact))/math.Log(float64(maxDistance)/float64(exact))*float64(buckets-exact))
	return min(large, buckets-1)
}

// rmsNorm is T5's norm of the last axis in float32: weight * x / sqrt(mean(x^2) + eps), no mean
// subtracted, no bias.
func rmsNorm(o *graph.Ops, x *Node, name string, eps float64) *Node {
	x32 := ConvertDType(x, dtypes.Float32)
	y := Mul(x32, Rsqrt(AddScalar(ReduceAndKeep(Square(x32), ReduceMean, -1), eps)))
	w := ExpandLeftToRank(ConvertDType(o.Weight(comp, name+".weight"), dtypes.Float32), x.Rank())
	return ConvertDType(Mul(y, w), o.DType())
}

// head is the tied output head: the output rescaled by d_model^-0.5 times the token table, in
// float32 (not a Linear of the model's: calibration does not watch it).
func head(o *graph.Ops, t *Config, z *Node) *Node {
	dims := z.Shape().Dimensions
	W := o.Weight(comp, arch.EmbedIn+".weight")                                                                      // [V, d]
	y := o.Dot(Reshape(MulScalar(z, 1/math.Sqrt(float64(t.Hidden))), -1, t.Hidden), []int{1}, nil, W, []int{1}, nil) // the table read in place
	return ConvertDType(Reshape(y, append(append([]int(nil), dims[:len(dims)-1]...), W.Shape().Dim(0))...), dtypes.Float32)
}

// work is the stack's working memory at batch B: the block's L positions against themselves and
// the r expanded vectors.
func work(c *arch.Config, B int64) int64 {
	const perHidden = 12 // as a GPT-NeoX layer's
	t, L, r := c.TokenDecoder.Own.(*Config), int64(c.BlockLength), int64(c.TokenDecoder.ExpansionRatio)
	return graph.Activations(perHidden, t.Hidden, t.Intermediate, t.Heads, B, L, L+r)
}
