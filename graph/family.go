package graph

import (
	"fmt"
	"sync"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
)

// A decoder family (arch.StackFamily) registers the graph of its stack here: every place that runs
// a decoder stack (a vanilla model, a Block Transformer's block and token decoders, scoring,
// prefill and cached steps) calls it through decoder, which knows the registry only.

// Attend computes one layer's attention for the new positions' q [B, T, H, hd] and k, v
// [B, T, KVH, hd] (rotary applied; KVH divides H: grouped-query attention when under H). It decides
// which keys are seen (the new ones, or a cache plus them), masks, and keeps whatever cache the
// run keeps. Returns [B, T, H, hd].
type Attend func(layer int, q, k, v *Node) *Node

// StackBuilder builds a family's stack in component comp over x [B, T, D] at positions pos (int32
// [T]; maxPos bounds them): every layer, then the final norm. It returns [B, T, D].
type StackBuilder func(o *Ops, comp string, d *arch.DecoderConfig, x, pos *Node, maxPos int, attend Attend) *Node

// StackGraph is a decoder family's graph.
type StackGraph struct {
	Build StackBuilder
	// Work is the working memory (bytes) of a stack d running rows sequences of T new positions
	// against S keys, for the memory estimate (Activations counts a layer's); the KV caches are
	// counted apart.
	Work func(d *arch.DecoderConfig, rows, T, S int64) int64
}

var stacks = struct {
	sync.RWMutex
	m map[string]StackGraph
}{m: map[string]StackGraph{}}

// RegisterStack makes family's graph known; a family registers once, from its package's init.
func RegisterStack(family string, g StackGraph) {
	if g.Build == nil || g.Work == nil {
		panic(fmt.Sprintf("graph: decoder family %q registered without its Build or Work", family))
	}
	stacks.Lock()
	defer stacks.Unlock()
	if stacks.m[family].Build != nil {
		panic(fmt.Sprintf("graph: decoder family %q registered twice", family))
	}
	stacks.m[family] = g
}

func stackGraph(family string) StackGraph {
	stacks.RLock()
	defer stacks.RUnlock()
	return stacks.m[family]
}

// Ops is what a family's stack is built from: the model's weights (quantized ones read as their
// products need) and the shared operations, with the backend's and the compute dtype's choices
// already made.
type Ops struct{ b *builder }

// Graph is the graph being built.
func (o *Ops) Graph() *Graph { return o.b.g }

// DType is the compute dtype.
func (o *Ops) DType() dtypes.DType { return o.b.dt }

// Linear is x W^T (+ bias) for the [out, in] weight component/name.weight over x's last axis.
func (o *Ops) Linear(x *Node, component, name string, bias bool) *Node {
	return o.b.linear(x, component, name, bias)
}

// Weight is a weight in the compute dtype.
func (o *Ops) Weight(component, name string) *Node { return o.b.w(component, name) }

// RMSNorm is x / sqrt(mean(x^2) + eps) times the gain component/name.weight, over the last axis,
// in float32 whatever the compute dtype (as Llama's own code computes it).
func (o *Ops) RMSNorm(x *Node, component, name string, eps float64) *Node {
	x32 := ConvertDType(x, dtypes.Float32)
	ms := ReduceAndKeep(Square(x32), ReduceMean, -1)
	y := ConvertDType(Mul(x32, Rsqrt(AddScalar(ms, eps))), o.b.dt)
	return Mul(y, ExpandLeftToRank(o.b.w(component, name+".weight"), x.Rank()))
}

// Rotary returns the rotate-half rotary embedding of the leading 2 len(invFreq) dims of each head
// at positions pos (below maxPos), for x [B, T, H, hd]: rope(x) as GPT-NeoX and Llama apply it.
// invFreq are the inverse frequencies (RotaryFreqs, or a family's scaled ones), one a pair of
// dims; the tables are computed on the host in float64.
func (o *Ops) Rotary(invFreq []float64, maxPos int) func(x, pos *Node) *Node {
	if len(invFreq) == 0 { // no rotary dims: no positions in the attention
		return func(x, _ *Node) *Node { return x }
	}
	cos, sin := rotaryTableFreqs(o.b.g, invFreq, maxPos, o.b.dt)
	return func(x, pos *Node) *Node { return rope(x, pos, cos, sin, 2*len(invFreq)) }
}

// LinearGELU is Linear followed by the exact GELU (fused into the product where the backend can).
func (o *Ops) LinearGELU(x *Node, component, name string, bias bool) *Node {
	return o.b.linear(x, component, name, bias, true)
}

// Embed looks token ids (int32, any shape) up in the table component/name (quantized or not):
// [..., D].
func (o *Ops) Embed(ids *Node, component, name string) *Node { return o.b.embed(ids, component, name) }

// LayerNorm normalises the last axis in float32 (whatever the compute dtype) with the gain and
// shift component/name.weight and .bias.
func (o *Ops) LayerNorm(x *Node, component, name string, eps float64) *Node {
	return o.b.layerNorm(x, component, name, eps)
}

// Attention is softmax(q k^T / sqrt(hd)) v for q, k, v [B, T, H, hd], every key seen by every query
// (an encoder's attention). Returns [B, T, H, hd].
func (o *Ops) Attention(q, k, v *Node) *Node {
	return o.b.attention(q, toKeys(k), toValues(v), nil)
}

// Dot is DotGeneral with the backend's choices made (on go, half-precision products in float32).
func (o *Ops) Dot(lhs *Node, lhsContracting, lhsBatch []int, rhs *Node, rhsContracting, rhsBatch []int) *Node {
	return o.b.dot(lhs, lhsContracting, lhsBatch, rhs, rhsContracting, rhsBatch)
}

// ShiftRight is a block's tokens tgt [M, L] as a decoder reads them: [BOS, x_1 .. x_{L-1}].
func (o *Ops) ShiftRight(tgt *Node) *Node { return o.b.shiftRight(tgt) }

// CausalMask is the additive float32 mask [T, past+T] of T new positions after past ones: 0 where
// a position may see a key, a large negative number where it may not.
func (o *Ops) CausalMask(past, T int) *Node { return causalBias(o.b.g, past, T) }

// Keys are an attention's keys and values in the layout its products read.
type Keys struct{ kv kv }

// Keys lays out keys and values k, v [B, S, H, hd] for AttendKeys (once, where several queries
// read them).
func (o *Ops) Keys(k, v *Node) Keys { return Keys{kv{k: toKeys(k), v: toValues(v)}} }

// AttendKeys is softmax(scale q k^T + bias) v for q [B, T, H, hd]: bias is float32 [T, S],
// [B, T, S] or [B or 1, H, T, S], or nil (every key seen). Returns [B, T, H, hd].
func (o *Ops) AttendKeys(q *Node, kv Keys, bias *Node, scale float64) *Node {
	return o.b.scaledAttention(q, kv.kv.k, kv.kv.v, bias, scale)
}

// LocalCache keeps each layer's keys and values of a block across the steps of its generation.
type LocalCache struct{ past []kv }

// Attend adds layer's new keys and values k, v [B, T, H, hd] to the cache and returns
// AttendKeys of q over every position cached.
func (c *LocalCache) Attend(o *Ops, layer int, q, k, v, bias *Node, scale float64) *Node {
	keys, values := appendLocal(&c.past, layer, k, v)
	return o.b.scaledAttention(q, keys, values, bias, scale)
}

// A token decoder class with a stack of its own (arch.TokenStack) registers its graph here, by
// official class.

// TokenDecoderGraph is a token decoder class's graph.
type TokenDecoderGraph struct {
	// Teacher returns the float32 logits [M, L, V] of every token of the target blocks tgt [M, L]
	// given their expanded block vectors P [M, r, Dt].
	Teacher func(o *Ops, c *arch.Config, P, tgt *Node) *Node
	// Start prepares the generation of one block from P [B, r, Dt] and returns its step: the
	// float32 logits [B, V] of the token after id [B, 1] (the BOS at j = 0), the j-th of the block.
	Start func(o *Ops, c *arch.Config, P *Node) func(j int, id *Node) *Node
	// Work is the working memory (bytes) of a block's decoding at batch B, for the memory
	// estimate (Activations counts a layer's).
	Work func(c *arch.Config, B int64) int64
}

// RegisterTokenDecoder makes a token decoder class's graph known; a class registers once, from its
// package's init.
func RegisterTokenDecoder(class string, g TokenDecoderGraph) {
	if g.Teacher == nil || g.Start == nil || g.Work == nil {
		panic(fmt.Sprintf("graph: token decoder class %q registered without its Teacher, Start or Work", class))
	}
	classes.Lock()
	defer classes.Unlock()
	if _, ok := tokenDecoders[class]; ok {
		panic(fmt.Sprintf("graph: token decoder class %q registered twice", class))
	}
	tokenDecoders[class] = tokenDecoderGraph{
		teacher: func(b *builder, P, tgt *Node) *Node { return g.Teacher(&Ops{b}, b.cfg, P, tgt) },
		start:   func(b *builder, P *Node) func(j int, id *Node) *Node { return g.Start(&Ops{b}, b.cfg, P) },
		work:    g.Work,
	}
}

// An embedder class (the lookup table, or one with an encoder: arch.Encoder) registers its graph
// here, by official class.

// EncoderBuilder builds an embedder class's vectors for the token ids [B, n, L] of n blocks of
// model c: [B, n, K*De], K the vectors of a block (arch.EmbedderConfig.Vectors) and De the
// embedder's width.
type EncoderBuilder func(o *Ops, c *arch.Config, ids *Node) *Node

// EncoderWork is the working memory (bytes) of an embedder class over rows blocks at once, for the
// memory estimate (Activations counts an encoder layer's).
type EncoderWork func(c *arch.Config, rows int64) int64

// RegisterEncoder makes an embedder class's graph known; a class registers once, from its
// package's init.
func RegisterEncoder(class string, vectors EncoderBuilder, work EncoderWork) {
	if vectors == nil || work == nil {
		panic(fmt.Sprintf("graph: embedder class %q registered without its vectors or work", class))
	}
	classes.Lock()
	defer classes.Unlock()
	if _, ok := embedders[class]; ok {
		panic(fmt.Sprintf("graph: embedder class %q registered twice", class))
	}
	embedders[class] = embedderGraph{vectors: func(b *builder, ids *Node) *Node { return vectors(&Ops{b}, b.cfg, ids) }, work: work}
}

// classes guards the tables of embedder and token decoder classes (blocktransformer.go).
var classes sync.RWMutex

// decoder runs the stack d of component over x [B, T, D] at positions pos (int32 [T]): its
// registered family's. attend decides how each layer's attention sees the past.
func (b *builder) decoder(component string, d *arch.DecoderConfig, x, pos *Node, maxPos int, attend attendFn) *Node {
	build := stackGraph(d.FamilyOf()).Build
	if build == nil {
		panic(fmt.Sprintf("decoder family %q has no graph in this build", d.FamilyOf()))
	}
	return build(&Ops{b}, component, d, x, pos, maxPos, attend)
}
