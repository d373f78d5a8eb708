package graph_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	. "github.com/btconvert/btconvert/graph" //nolint:revive
	"github.com/btconvert/btconvert/internal/testfix"
)

// A naive float64 implementation of the architecture, written loop by loop from its description
// (docs/FORMAT.md), checks the paths no trained fixture exercises: the sequential residual and
// summation decoding.

type naive struct {
	cfg *arch.Config
	w   map[string][]float64
	// official: the token decoder's positions of the official generate (prefix decoding: the r
	// expanded vectors at 0, token k at k).
	official bool
}

// tinyModel is a model of cfg whose every tensor (LayerNorms and biases too) is seeded noise.
func tinyModel(cfg *arch.Config) (*formats.Model, naive) {
	n := naive{cfg: cfg, w: map[string][]float64{}}
	var ts []*formats.Tensor
	for i, s := range arch.Tensors(cfg) {
		r := rand.New(rand.NewPCG(11, uint64(i)))
		v := make([]float32, s.NumElements())
		for j := range v {
			v[j] = float32(0.5 * r.NormFloat64())
			if s.Role == arch.RoleNormWeight {
				v[j] += 1
			}
		}
		f := make([]float64, len(v))
		for j := range v {
			f[j] = float64(v[j])
		}
		n.w[s.Key()] = f
		ts = append(ts, formats.Generated(s.Component, s.Name, safetensors.F32, s.Shape, "test", func(out []float32) { copy(out, v) }))
	}
	return &formats.Model{Format: "test", Config: cfg, Tensors: ts}, n
}

func (n naive) linear(x []float64, key string, out int, bias bool) []float64 {
	w := n.w[key+".weight"]
	in := len(x)
	y := make([]float64, out)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			y[o] += w[o*in+i] * x[i]
		}
		if bias {
			y[o] += n.w[key+".bias"][o]
		}
	}
	return y
}

func (n naive) layerNorm(x []float64, key string, eps float64) []float64 {
	var mean, vr float64
	for _, v := range x {
		mean += v / float64(len(x))
	}
	for _, v := range x {
		vr += (v - mean) * (v - mean) / float64(len(x))
	}
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = (v-mean)/math.Sqrt(vr+eps)*n.w[key+".weight"][i] + n.w[key+".bias"][i]
	}
	return y
}

func geluExact(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

// stack runs a GPT-NeoX stack over x [T][D] at positions 0..T-1, causally.
func (n naive) stack(comp string, d *arch.DecoderConfig, x [][]float64) [][]float64 {
	return n.stackAt(comp, d, x, nil)
}

// stackAt is stack with the rotary position of each input given (nil: 0..T-1).
func (n naive) stackAt(comp string, d *arch.DecoderConfig, x [][]float64, pos []int) [][]float64 {
	T, D, H, hd, rot := len(x), d.Hidden, d.Heads, d.HeadDim, d.RotaryDims
	if pos == nil {
		pos = make([]int, T)
		for t := range pos {
			pos[t] = t
		}
	}
	rope := func(v []float64, p int) []float64 {
		out := append([]float64(nil), v...)
		for j := 0; j < rot/2; j++ {
			a := float64(p) * math.Pow(d.RotaryBase, -float64(2*j)/float64(rot))
			x1, x2 := v[j], v[j+rot/2]
			out[j] = x1*math.Cos(a) - x2*math.Sin(a)
			out[j+rot/2] = x2*math.Cos(a) + x1*math.Sin(a)
		}
		return out
	}
	for l := 0; l < d.Layers; l++ {
		p := fmt.Sprintf("%s/layers.%d.", comp, l)
		attnOf := func(x [][]float64) [][]float64 {
			q, k, v := make([][][]float64, T), make([][][]float64, T), make([][][]float64, T)
			for t := range x {
				qkv := n.linear(n.layerNorm(x[t], p+arch.InputNorm, d.LayerNormEps), p+arch.QKV, 3*D, true)
				for h := 0; h < H; h++ { // per head: q, k, v of hd each
					base := h * 3 * hd
					q[t] = append(q[t], rope(qkv[base:base+hd], pos[t]))
					k[t] = append(k[t], rope(qkv[base+hd:base+2*hd], pos[t]))
					v[t] = append(v[t], qkv[base+2*hd:base+3*hd])
				}
			}
			out := make([][]float64, T)
			for t := range x {
				ctx := make([]float64, 0, D)
				for h := 0; h < H; h++ {
					sc := make([]float64, t+1)
					mx := math.Inf(-1)
					for s := 0; s <= t; s++ {
						for j := 0; j < hd; j++ {
							sc[s] += q[t][h][j] * k[s][h][j] / math.Sqrt(float64(hd))
						}
						mx = math.Max(mx, sc[s])
					}
					var sum float64
					for s := range sc {
						sc[s] = math.Exp(sc[s] - mx)
						sum += sc[s]
					}
					c := make([]float64, hd)
					for s := range sc {
						for j := range c {
							c[j] += sc[s] / sum * v[s][h][j]
						}
					}
					ctx = append(ctx, c...)
				}
				out[t] = n.linear(ctx, p+arch.AttnOut, D, true)
			}
			return out
		}
		mlp := func(h []float64) []float64 {
			u := n.linear(n.layerNorm(h, p+arch.PostNorm, d.LayerNormEps), p+arch.MLPUp, d.Intermediate, true)
			for i := range u {
				u[i] = geluExact(u[i])
			}
			return n.linear(u, p+arch.MLPDown, D, true)
		}
		attn := attnOf(x)
		next := make([][]float64, T)
		for t := range x {
			next[t] = make([]float64, D)
			if d.ParallelResidual {
				m := mlp(x[t])
				for i := range next[t] {
					next[t][i] = x[t][i] + attn[t][i] + m[i]
				}
				continue
			}
			h := make([]float64, D)
			for i := range h {
				h[i] = x[t][i] + attn[t][i]
			}
			m := mlp(h)
			for i := range h {
				next[t][i] = h[i] + m[i]
			}
		}
		x = next
	}
	for t := range x {
		x[t] = n.layerNorm(x[t], comp+"/"+arch.FinalNorm, d.LayerNormEps)
	}
	return x
}

func (n naive) embed(key string, id int32, width int) []float64 {
	return append([]float64(nil), n.w[key][int(id)*width:(int(id)+1)*width]...)
}

// vanilla returns the logits of every position of ids.
func (n naive) vanilla(ids []int32) []float64 {
	d := n.cfg.Decoder
	x := make([][]float64, len(ids))
	for t, id := range ids {
		x[t] = n.embed("decoder/embed_in.weight", id, d.Hidden)
	}
	var out []float64
	for _, h := range n.stack(arch.Decoder, d, x) {
		out = append(out, n.linear(h, "decoder/embed_out", n.cfg.VocabSize, false)...)
	}
	return out
}

// blockLogits returns the logits of every token of blocks 1..n-1. The embedder concatenates the
// block's token vectors (projection_layer: then a Linear). Prefix decoding: the token decoder
// reads [e_1..e_r, x_1..x_{L-1}] and its last L outputs predict x_1..x_L. Summation: it reads
// [BOS, x_1..x_{L-1}], each plus its own expanded context vector.
func (n naive) blockLogits(ids []int32) []float64 {
	c := n.cfg
	L, De, D, Dt, r := c.BlockLength, c.Embedder.Dim, c.BlockDecoder.Hidden, c.TokenDecoder.Hidden, c.TokenDecoder.ExpansionRatio
	nb := len(ids) / L
	blocks := make([][]float64, nb)
	for j := range blocks {
		if c.Embedder.Encoder != nil {
			blocks[j] = n.roberta(ids[j*L : (j+1)*L])
		} else {
			for k := 0; k < L; k++ {
				blocks[j] = append(blocks[j], n.embed("embedder/embeddings.weight", ids[j*L+k], De)...)
			}
		}
		if c.Embedder.Type == arch.ProjectionLayer {
			blocks[j] = n.linear(blocks[j], "embedder/"+arch.Project, D, true)
		}
	}
	h := n.stack(arch.BlockDecoder, c.BlockDecoder, blocks)
	var out []float64
	for j := 0; j+1 < nb; j++ {
		if c.TokenDecoder.Own != nil {
			out = append(out, n.t5(h[j], ids[(j+1)*L:(j+2)*L])...)
			continue
		}
		exp := n.linear(h[j], "token_decoder/"+arch.Expand, r*Dt, true)
		var x [][]float64
		if c.TokenDecoder.Decoding == arch.Summation {
			for k := 0; k < L; k++ {
				id := int32(c.BOSTokenID)
				if k > 0 {
					id = ids[(j+1)*L+k-1]
				}
				e := n.embed("token_decoder/embed_in.weight", id, Dt)
				for i := range e {
					e[i] += exp[k*Dt+i]
				}
				x = append(x, e)
			}
		} else {
			for k := 0; k < r; k++ {
				x = append(x, exp[k*Dt:(k+1)*Dt])
			}
			for k := 0; k+1 < L; k++ {
				x = append(x, n.embed("token_decoder/embed_in.weight", ids[(j+1)*L+k], Dt))
			}
		}
		var pos []int // the forward's 0..r+L-2
		if n.official && c.TokenDecoder.Decoding == arch.Prefix {
			pos = make([]int, len(x)) // the prefix at 0, token k at k
			for k := r; k < len(x); k++ {
				pos[k] = k - r + 1
			}
		}
		hs := n.stackAt(arch.TokenDecoder, &c.TokenDecoder.DecoderConfig, x, pos)
		for _, t := range hs[len(hs)-L:] {
			out = append(out, n.linear(t, "token_decoder/"+arch.EmbedOut, c.VocabSize, false)...)
		}
	}
	return out
}

// checkGreedy generates from prompt and checks every generated token is the naive model's argmax
// given what came before.
func checkGreedy(t *testing.T, name string, e *Engine, n naive, prompt []int32, newTokens int) []int32 {
	t.Helper()
	g, err := e.Generate([][]int32{prompt}, GenerateOptions{MaxNewTokens: newTokens, OfficialPositions: n.official})
	if err != nil {
		t.Fatal(err)
	}
	full := append(append([]int32(nil), prompt...), g.Tokens[0]...)
	logits := n.blockLogits(full)
	V, L := n.cfg.VocabSize, n.cfg.BlockLength
	for k, tok := range g.Tokens[0] {
		row := logits[(len(prompt)-L+k)*V : (len(prompt)-L+k+1)*V] // token P+k is row P+k-L
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		if int32(best) != tok {
			t.Fatalf("%s: generated token %d is %d, the naive model's argmax is %d", name, k, tok, best)
		}
	}
	return g.Tokens[0]
}

func tinyDecoder(parallel bool) arch.DecoderConfig {
	return arch.DecoderConfig{Layers: 2, Hidden: 8, Heads: 2, HeadDim: 4, Intermediate: 16, RotaryDims: 2, RotaryBase: 10000,
		LayerNormEps: 1e-5, ParallelResidual: parallel, Activation: "gelu"}
}

// compareNaive checks scoring logits against the float64 model. Tolerance: rel L2 3e-5. These
// models have random weights of std 0.5, so activations grow with the width and their float32
// logits carry more rounding than a trained model's (the fixtures: 2e-7 to 4e-7); at width 384
// the go backend measures 1.5e-5 with its [in, out] weights (6.7e-6 with [out, in] ones, whose
// kernel sums in another order) and XLA 8.7e-6.
func compareNaive(t *testing.T, name string, e *Engine, ids []int32, want []float64) {
	t.Helper()
	got, _, err := e.Score(ids, 1, len(ids))
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, len(want))
	for i := range want {
		w[i] = float32(want[i])
	}
	if len(got) != len(w) {
		t.Fatalf("%s: %d logits, the naive model gives %d", name, len(got), len(w))
	}
	if err := testfix.RelL2(got, w); err > 3e-5 {
		t.Errorf("%s: rel L2 %.3g from the naive float64 model", name, err)
	}
}

// The sequential residual (use_parallel_residual false): x = x + attn(LN1 x); x = x + mlp(LN2 x).
func TestSequentialResidual(t *testing.T) {
	d := tinyDecoder(false)
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Vanilla, VocabSize: 11, Decoder: &d}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, n := tinyModel(cfg)
	ids := []int32{3, 1, 4, 1, 5, 9, 2, 6}
	compareNaive(t, "sequential residual", LoadFixtureModel(t, m, dtypes.Float32), ids, n.vanilla(ids))
}

// rotary_pct 0 (legal for GPT-NeoX, whose HF code then attends without positions) and heads of
// size 1: no rotary table, and the same logits and greedy tokens as the naive model.
func TestNoRotaryDims(t *testing.T) {
	for _, heads := range []int{2, 8} {
		d := tinyDecoder(true)
		d.Heads, d.HeadDim, d.RotaryDims = heads, 8/heads, 0
		cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Vanilla, VocabSize: 11, Decoder: &d}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m, n := tinyModel(cfg)
		ids := []int32{3, 1, 4, 1, 5, 9, 2, 6}
		e := LoadFixtureModel(t, m, dtypes.Float32)
		compareNaive(t, fmt.Sprintf("%d heads, no rotary", heads), e, ids, n.vanilla(ids))
		g, err := e.Generate([][]int32{ids[:4]}, GenerateOptions{MaxNewTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		seq := append(append([]int32(nil), ids[:4]...), g.Tokens[0]...)
		want := n.vanilla(seq)
		for k, tok := range g.Tokens[0] {
			row := want[(3+k)*11 : (4+k)*11]
			if best := slices.Index(row, slices.Max(row)); int32(best) != tok {
				t.Fatalf("%d heads: generated token %d is %d, the naive model's argmax is %d", heads, k, tok, best)
			}
		}
	}
}

// Summation decoding (MEGABYTE-style), with a sequential residual in the token decoder; the KV-cached
// generation agrees with scoring what it generated.
func TestSummationDecoding(t *testing.T) {
	bd, td := tinyDecoder(true), tinyDecoder(false)
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Block, VocabSize: 11, BOSTokenID: 1, BlockLength: 2,
		Embedder: &arch.EmbedderConfig{Type: arch.Concat, Dim: 4}, BlockDecoder: &bd,
		TokenDecoder: &arch.TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: 2, Decoding: arch.Summation}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, n := tinyModel(cfg)
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		e := LoadFixtureOn(t, b, m, dtypes.Float32)
		ids := []int32{3, 1, 4, 1, 5, 9, 2, 6}
		compareNaive(t, "summation", e, ids, n.blockLogits(ids))
		checkGreedy(t, "summation", e, n, ids[:4], 6)
	})
}

// The official generate's positions (prefix decoding, r = 2: the expanded vectors at 0, token k
// at k) give the naive model's greedy tokens under those positions, and other tokens than the
// forward's semantics; summation decoding is the same under both.
func TestOfficialGeneratePositions(t *testing.T) {
	for _, dec := range []arch.Decoding{arch.Prefix, arch.Summation} {
		bd, td := tinyDecoder(true), tinyDecoder(true)
		cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Block, VocabSize: 11, BOSTokenID: 1, BlockLength: 4,
			Embedder: &arch.EmbedderConfig{Type: arch.Concat, Dim: 2}, BlockDecoder: &bd,
			TokenDecoder: &arch.TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: map[arch.Decoding]int{arch.Prefix: 2, arch.Summation: 4}[dec], Decoding: dec}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m, n := tinyModel(cfg)
		t.Run(string(dec), func(t *testing.T) {
			testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
				e := LoadFixtureOn(t, b, m, dtypes.Float32)
				prompt := []int32{3, 1, 4, 1, 5, 9, 2, 6}
				forward := checkGreedy(t, string(dec)+", forward", e, n, prompt, 24)
				n.official = true
				official := checkGreedy(t, string(dec)+", official generate", e, n, prompt, 24)
				n.official = false
				if differ := !slices.Equal(forward, official); differ != (dec == arch.Prefix) {
					t.Errorf("%s: forward %v, official %v", dec, forward, official)
				}
			})
		})
	}
}

// The official shapes of the resolved configs, at sizes a float64 loop can run: a MEGABYTE-style
// model whose token decoder is narrower than its block decoder (as megabyte_b4_5: widths 256 and
// 128 there, 64 and 32 here, heads from the fill-in), and a prefix model at width 384 (head dim 64,
// 6 heads), each checked for logits and greedy tokens.
func TestOfficialShapes(t *testing.T) {
	for _, c := range []struct {
		name string
		spec arch.BlockSpec
	}{
		{"summation, block 64 / token 32", arch.BlockSpec{File: "test", BlockLength: 4, Embedder: arch.EmbedderSpec{Hidden: 16},
			BlockDecoder: stackSpec(2, 64), TokenDecoder: arch.TokenSpec{StackSpec: stackSpec(2, 32), Decoding: "summation"}}},
		{"prefix at 384", arch.BlockSpec{File: "test", BlockLength: 2, Embedder: arch.EmbedderSpec{ProjectionMethod: "projection_layer", Hidden: 96},
			BlockDecoder: stackSpec(1, 384), TokenDecoder: arch.TokenSpec{StackSpec: stackSpec(1, 384), ExpansionRatio: 2, Decoding: "prefix"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, err := c.spec.Resolve(nil, nil, arch.Provenance{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][2]int{"summation, block 64 / token 32": {2, 1}, "prefix at 384": {6, 6}}[c.name]
			if cfg.BlockDecoder.Heads != want[0] || cfg.TokenDecoder.Heads != want[1] || cfg.TokenDecoder.HeadDim != cfg.TokenDecoder.Hidden/want[1] {
				t.Fatalf("heads %d / %d, want %v", cfg.BlockDecoder.Heads, cfg.TokenDecoder.Heads, want)
			}
			m, n := tinyModel(cfg)
			ids := []int32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}
			testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
				e := LoadFixtureOn(t, b, m, dtypes.Float32)
				compareNaive(t, c.name, e, ids, n.blockLogits(ids))
				checkGreedy(t, c.name, e, n, ids[:8], 8)
			})
			// Another head count (which no shape can reveal) gives other logits.
			other := *cfg
			bd := *cfg.BlockDecoder
			bd.Heads, bd.HeadDim = bd.Heads*2, bd.HeadDim/2
			bd.RotaryDims = bd.HeadDim / 4
			other.BlockDecoder = &bd
			mo, _ := tinyModel(&other)
			got, _, err := LoadFixtureModel(t, mo, dtypes.Float32).Score(ids, 1, len(ids))
			if err != nil {
				t.Fatal(err)
			}
			w := make([]float32, 0, len(got))
			for _, v := range n.blockLogits(ids) {
				w = append(w, float32(v))
			}
			if d := testfix.RelL2(got, w); d < 0.01 {
				t.Errorf("%d block decoder heads instead of %d: rel L2 %.3g", bd.Heads, cfg.BlockDecoder.Heads, d)
			}
		})
	}
}

// stackSpec states what the official YAMLs state of a decoder: layers and width (small
// vocabulary here); the fill-in gives the rest.
func stackSpec(layers, hidden int) arch.StackSpec {
	return arch.StackSpec{Base: arch.DefaultBase, Settings: []arch.Setting{{Key: arch.KeyLayers, Value: layers}, {Key: arch.KeyHidden, Value: hidden}, {Key: arch.KeyVocab, Value: 11}}}
}
