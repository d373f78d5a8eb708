package graph_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/families/roberta"
	"github.com/btconvert/btconvert/families/t5"
	. "github.com/btconvert/btconvert/graph" //nolint:revive
	"github.com/btconvert/btconvert/internal/testfix"
)

// The naive float64 implementation of the ablations' parts, written loop by loop from
// fixtures/tools/ABLATION_NOTES.md (sections 4, 5 and 7), checks what the trained fixtures do not
// exercise: the logarithmic relative position buckets, an attention width other than d_model, an
// expansion ratio other than the block length, several layers' CLS outputs, the concat projection
// and the position rule with several pad ids in a block.

// attend is softmax(scale q_t . k_s + bias(t, s)) v over the keys s allowed for t, per head of hd.
func attend(q, k, v [][]float64, heads, hd int, scale float64, allowed func(t, s int) bool, bias func(h, t, s int) float64) [][]float64 {
	out := make([][]float64, len(q))
	for t := range q {
		for h := 0; h < heads; h++ {
			sc := make([]float64, len(k))
			mx := math.Inf(-1)
			for s := range k {
				if !allowed(t, s) {
					continue
				}
				for j := 0; j < hd; j++ {
					sc[s] += q[t][h*hd+j] * k[s][h*hd+j]
				}
				sc[s] = sc[s]*scale + bias(h, t, s)
				mx = math.Max(mx, sc[s])
			}
			var sum float64
			for s := range sc {
				if allowed(t, s) {
					sc[s] = math.Exp(sc[s] - mx)
					sum += sc[s]
				}
			}
			c := make([]float64, hd)
			for s := range sc {
				if allowed(t, s) {
					for j := range c {
						c[j] += sc[s] / sum * v[s][h*hd+j]
					}
				}
			}
			out[t] = append(out[t], c...)
		}
	}
	return out
}

func noBias(_, _, _ int) float64 { return 0 }

func add(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// roberta is the embedder's vectors for one block, concatenated (before the projection).
func (n naive) roberta(block []int32) []float64 {
	e := n.cfg.Embedder
	r, He := e.Encoder.(*roberta.Config), e.Dim
	var s []int32
	for range r.CLSTokens {
		s = append(s, int32(r.BOSTokenID))
	}
	s = append(s, block...)
	h := make([][]float64, len(s))
	count := 0
	for t, id := range s {
		pos := r.PadTokenID
		if int(id) != r.PadTokenID {
			count++
			pos = r.PadTokenID + count
		}
		x := add(n.embed("embedder/embeddings.weight", id, He), n.embed("embedder/token_type_embeddings.weight", 0, He))
		h[t] = n.layerNorm(add(x, n.embed("embedder/position_embeddings.weight", int32(pos), He)), "embedder/"+arch.EmbedNorm, r.LayerNormEps)
	}
	all := func(_, _ int) bool { return true }
	for l := 0; l < r.Layers; l++ {
		p := fmt.Sprintf("embedder/layers.%d.", l)
		q, k, v := make([][]float64, len(s)), make([][]float64, len(s)), make([][]float64, len(s))
		for t := range h {
			q[t], k[t], v[t] = n.linear(h[t], p+arch.AttnQuery, He, true), n.linear(h[t], p+arch.AttnKey, He, true), n.linear(h[t], p+arch.AttnValue, He, true)
		}
		ctx := attend(q, k, v, r.Heads, r.HeadDim, 1/math.Sqrt(float64(r.HeadDim)), all, noBias)
		for t := range h {
			a := n.layerNorm(add(n.linear(ctx[t], p+arch.AttnOut, He, true), h[t]), p+arch.AttnNorm, r.LayerNormEps)
			f := n.linear(a, p+arch.MLPUp, r.Intermediate, true)
			for i := range f {
				f[i] = geluExact(f[i])
			}
			h[t] = n.layerNorm(add(n.linear(f, p+arch.MLPDown, He, true), a), p+arch.MLPNorm, r.LayerNormEps)
		}
	}
	var out []float64
	for _, x := range h[:r.Outputs(len(block))] {
		out = append(out, x...)
	}
	return out
}

func (n naive) rms(x []float64, key string, eps float64) []float64 {
	var ms float64
	for _, v := range x {
		ms += v * v / float64(len(x))
	}
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = n.w[key+".weight"][i] * v / math.Sqrt(ms+eps)
	}
	return y
}

// naiveBucket is the decoder's relative position bucket of a query n >= 0 positions after its key.
func naiveBucket(n, buckets, maxDistance int) int {
	exact := buckets / 2
	if n < exact {
		return n
	}
	return min(buckets-1, exact+int(math.Log(float64(n)/float64(exact))/math.Log(float64(maxDistance)/float64(exact))*float64(buckets-exact)))
}

// t5 is the logits of the L tokens of target block tgt given its context h (width D).
func (n naive) t5(h []float64, tgt []int32) []float64 {
	c := n.cfg
	t, L, r := c.TokenDecoder.Own.(*t5.Config), c.BlockLength, c.TokenDecoder.ExpansionRatio
	d, inner := t.Hidden, t.Inner()
	exp := n.linear(h, "token_decoder/"+arch.Expand, r*d, true)
	P := make([][]float64, r)
	for k := range P {
		P[k] = exp[k*d : (k+1)*d]
	}
	z := make([][]float64, L)
	for s := range z {
		id := int32(c.BOSTokenID)
		if s > 0 {
			id = tgt[s-1]
		}
		z[s] = n.embed("token_decoder/embed_in.weight", id, d)
	}
	rel := n.w["token_decoder/"+arch.RelBias+".weight"]
	bias := func(hd, q, k int) float64 { return rel[naiveBucket(max(q-k, 0), t.Buckets, t.MaxDistance)*t.Heads+hd] }
	causal := func(q, k int) bool { return k <= q }
	all := func(_, _ int) bool { return true }
	for l := 0; l < t.Layers; l++ {
		p := fmt.Sprintf("token_decoder/layers.%d.", l)
		q, k, v := make([][]float64, L), make([][]float64, L), make([][]float64, L)
		for s := range z {
			x := n.rms(z[s], p+arch.InputNorm, t.LayerNormEps)
			q[s], k[s], v[s] = n.linear(x, p+arch.AttnQuery, inner, false), n.linear(x, p+arch.AttnKey, inner, false), n.linear(x, p+arch.AttnValue, inner, false)
		}
		o := attend(q, k, v, t.Heads, t.HeadDim, 1, causal, bias)
		ck, cv := make([][]float64, r), make([][]float64, r)
		for j := range P {
			ck[j], cv[j] = n.linear(P[j], p+arch.CrossKey, inner, false), n.linear(P[j], p+arch.CrossValue, inner, false)
		}
		for s := range z {
			z[s] = add(z[s], n.linear(o[s], p+arch.AttnOut, d, false))
			q[s] = n.linear(n.rms(z[s], p+arch.CrossNorm, t.LayerNormEps), p+arch.CrossQuery, inner, false)
		}
		o = attend(q, ck, cv, t.Heads, t.HeadDim, 1, all, noBias)
		for s := range z {
			z[s] = add(z[s], n.linear(o[s], p+arch.CrossOut, d, false))
			f := n.linear(n.rms(z[s], p+arch.PostNorm, t.LayerNormEps), p+arch.MLPUp, t.Intermediate, false)
			for i := range f {
				f[i] = math.Max(f[i], 0)
			}
			z[s] = add(z[s], n.linear(f, p+arch.MLPDown, d, false))
		}
	}
	var out []float64
	for s := range z {
		x := n.rms(z[s], "token_decoder/"+arch.FinalNorm, t.LayerNormEps)
		for i := range x {
			x[i] /= math.Sqrt(float64(d))
		}
		out = append(out, n.linear(x, "token_decoder/embed_in", c.VocabSize, false)...)
	}
	return out
}

// RoBERTa embedders (roberta_cls with 2 CLS tokens and a projection; roberta with the concat
// projection) and a T5 token decoder whose block of 8 reaches the logarithmic buckets and the
// last one (6 buckets, max distance 5), whose attention is 3 heads of 4 wide in a d_model of 16
// and which attends to 3 expanded vectors: logits against the naive model, and greedy generation.
func TestAblationShapes(t *testing.T) {
	roberta := func(cls string, nCLS int, method string) arch.EmbedderSpec {
		return arch.EmbedderSpec{Cls: cls, Base: "roberta-base", CLSTokens: nCLS, ProjectionMethod: method, Settings: []arch.Setting{
			{Key: arch.KeyLayers, Value: 2}, {Key: arch.KeyHidden, Value: 8}, {Key: arch.KeyHeads, Value: 2}, {Key: arch.KeyIntermediate, Value: 16},
			{Key: arch.KeyVocab, Value: 11}}}
	}
	t5 := arch.StackSpec{Cls: "t5", Base: "t5-small", Settings: []arch.Setting{{Key: arch.KeyDModel, Value: 16}, {Key: arch.KeyDKV, Value: 4},
		{Key: arch.KeyT5Heads, Value: 3}, {Key: arch.KeyDFF, Value: 24}, {Key: arch.KeyDecoderLayers, Value: 2}, {Key: arch.KeyBuckets, Value: 6},
		{Key: arch.KeyMaxDistance, Value: 5}, {Key: arch.KeyVocab, Value: 11}}}
	for _, c := range []struct {
		name string
		spec arch.BlockSpec
		ids  []int32
	}{
		{"roberta_cls and T5", arch.BlockSpec{File: "test", BlockLength: 8, Embedder: roberta("roberta_cls", 2, ""), BlockDecoder: stackSpec(1, 32),
			TokenDecoder: arch.TokenSpec{StackSpec: t5, ExpansionRatio: 3, Decoding: "cross_attention"}},
			[]int32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4}},
		{"roberta, concat", arch.BlockSpec{File: "test", BlockLength: 4, Embedder: roberta("roberta", 0, "concat"), BlockDecoder: stackSpec(1, 32),
			TokenDecoder: arch.TokenSpec{StackSpec: stackSpec(1, 32), ExpansionRatio: 2, Decoding: "prefix"}},
			[]int32{3, 1, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 1, 1, 1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, err := c.spec.Resolve(nil, nil, arch.Provenance{})
			if err != nil {
				t.Fatal(err)
			}
			m, n := tinyModel(cfg)
			L := cfg.BlockLength
			testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
				e := LoadFixtureOn(t, b, m, dtypes.Float32)
				compareNaive(t, c.name, e, c.ids, n.blockLogits(c.ids))
				checkGreedy(t, c.name, e, n, c.ids[:2*L], 2*L)
			})
		})
	}
}
