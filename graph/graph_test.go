package graph_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	_ "github.com/btconvert/btconvert/families/roberta" // the ablation fixtures' embedders
	_ "github.com/btconvert/btconvert/families/t5"      // the ablation fixtures' token decoder
	. "github.com/btconvert/btconvert/graph"            //nolint:revive
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/testfix"
)

// The parity tests run on every backend: go, and XLA's CPU plugin. Tolerance: rel L2 1e-5 of the
// float64 reference on both (measured ~3e-7; XLA fuses ops and reorders sums, still at float32
// rounding), greedy tokens identical.
func TestScoreMatchesReference(t *testing.T) {
	testfix.EachBackend(t, testScore)
}

func testScore(t *testing.T, b compute.Backend) {
	for _, name := range testfix.Referenced() {
		m := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
		r := testfix.LoadReference(t, name)
		got, shape, err := m.Score(r.IDs, r.B, r.T)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, r.LogitsShape) {
			t.Fatalf("%s: shape %v want %v", name, shape, r.LogitsShape)
		}
		if e := testfix.RelL2(got, r.Logits); e > 1e-5 {
			t.Errorf("%s: rel L2 %.3g > 1e-5", name, e)
		} else {
			t.Logf("%s: rel L2 %.3g", name, e)
		}
	}
}

// Greedy generation (batch 2, KV caches) gives the reference's tokens.
func TestGreedyMatchesReference(t *testing.T) {
	testfix.EachBackend(t, testGreedy)
}

func testGreedy(t *testing.T, b compute.Backend) {
	for _, name := range testfix.Referenced() {
		m := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
		r := testfix.LoadReference(t, name)
		g, err := m.Generate(r.Prompts, GenerateOptions{MaxNewTokens: len(r.Greedy[0])})
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Greedy {
			if !slices.Equal(g.Tokens[i], r.Greedy[i]) {
				t.Errorf("%s row %d:\n got %v\nwant %v", name, i, g.Tokens[i], r.Greedy[i])
			}
		}
	}
}

// bf16 compute (weights and matmuls in bfloat16, LayerNorm and softmax in f32) stays close to
// the reference and keeps its greedy tokens.
func TestBF16Compute(t *testing.T) {
	testfix.EachBackend(t, testBF16)
}

func testBF16(t *testing.T, b compute.Backend) {
	m := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path("bt-tiny")), dtypes.BFloat16)
	r := testfix.LoadReference(t, "bt-tiny")
	got, _, err := m.Score(r.IDs, r.B, r.T)
	if err != nil {
		t.Fatal(err)
	}
	if e := testfix.RelL2(got, r.Logits); e > 0.05 {
		t.Errorf("bf16 rel L2 %.3g > 0.05", e)
	}
	g, err := m.Generate(r.Prompts, GenerateOptions{MaxNewTokens: len(r.Greedy[0])})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Tokens[0], r.Greedy[0]) {
		t.Errorf("bf16 greedy %v, reference %v", g.Tokens[0], r.Greedy[0])
	}
}

// The head count is really used: the same weights read with another head count (which no shape
// can reveal) give other logits.
func TestHeadCountChangesLogits(t *testing.T) {
	r := testfix.LoadReference(t, "bt-tiny")
	fm := testfix.Open(t, testfix.Path("bt-tiny"))
	cfg := *fm.Config
	for _, d := range []*int{&cfg.BlockDecoder.Heads, &cfg.TokenDecoder.Heads} {
		if *d != 4 {
			t.Fatalf("bt-tiny has %d heads, want 4", *d)
		}
	}
	bd, td := *cfg.BlockDecoder, *cfg.TokenDecoder
	bd.Heads, bd.HeadDim, bd.RotaryDims = 8, 16, 4
	td.Heads, td.HeadDim, td.RotaryDims = 8, 16, 4
	cfg.BlockDecoder, cfg.TokenDecoder = &bd, &td
	fm.Config = &cfg
	m := LoadFixtureModel(t, fm, dtypes.Float32)
	got, _, err := m.Score(r.IDs, r.B, r.T)
	if err != nil {
		t.Fatal(err)
	}
	if e := testfix.RelL2(got, r.Logits); e < 0.01 {
		t.Fatalf("8 heads instead of 4: rel L2 %.3g, the head count is not used", e)
	}
}

// Score checks ids: Gather would clamp one outside the vocabulary silently.
func TestScoreChecksIDs(t *testing.T) {
	m := LoadFixture(t, "pythia-tiny", dtypes.Float32)
	_, _, err := m.Score([]int32{1, 2, 256, 3}, 1, 4)
	if want := "token id 256 (position 2) is outside the vocabulary 0..255"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// The decode step has fixed shapes: a longer generation compiles no more graphs than a short one,
// and a new sampling seed compiles nothing (the seed is a runtime input). The step's graph,
// compiled alongside the prefill's for the shapes the prefill's graph gives, is the one the steps
// run (a wrong guess would compile a third); a generation that runs no step compiles no step.
func TestGenerationCompilesOnce(t *testing.T) {
	for _, name := range []string{"bt-tiny", "pythia-tiny", "bt-cls-cross-attn-tiny"} {
		m := LoadFixture(t, name, dtypes.Float32)
		prompt := [][]int32{testfix.ByteIDs("The quick brown fox jumps over!")}
		one := 1 // a vanilla model's one token, a Block model's one block
		if m.Config.IsBlock() {
			one = m.Config.BlockLength
		}
		before := m.Compilations()
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: one}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 1 {
			t.Errorf("%s: %d compilations for a generation without steps, want 1 (prefill)", name, c)
		}
		before = m.Compilations()
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 40}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 2 {
			t.Errorf("%s: %d compilations for one generation, want 2 (prefill + step)", name, c)
		}
		before = m.Compilations()
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 40}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 0 {
			t.Errorf("%s: %d compilations when generating again with the same shapes", name, c)
		}
		s := Sampling{Temperature: 0.8, TopK: 5, Seed: 1}
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 40, Sampling: s}); err != nil {
			t.Fatal(err)
		}
		before = m.Compilations()
		s.Seed = 2
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 40, Sampling: s}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 0 {
			t.Errorf("%s: %d compilations for a new seed", name, c)
		}
	}
}

// Prompts that are not whole blocks are left-padded with the pad id.
func TestLeftPadding(t *testing.T) {
	m := LoadFixture(t, "bt-tiny", dtypes.Float32)
	g, err := m.Generate([][]int32{testfix.ByteIDs("Hello")}, GenerateOptions{MaxNewTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	if g.Pad[0] != 3 || len(g.Prompt[0]) != 8 || g.Prompt[0][0] != 0 || g.Prompt[0][3] != 'H' || len(g.Tokens[0]) != 6 {
		t.Fatalf("padding: %+v", g)
	}
	// Same as generating from the explicitly padded prompt.
	h, _ := m.Generate([][]int32{append([]int32{0, 0, 0}, testfix.ByteIDs("Hello")...)}, GenerateOptions{MaxNewTokens: 6})
	if !slices.Equal(g.Tokens[0], h.Tokens[0]) {
		t.Fatalf("%v vs %v", g.Tokens[0], h.Tokens[0])
	}
}

func TestSamplingReproducible(t *testing.T) {
	m := LoadFixture(t, "bt-tiny", dtypes.Float32)
	prompt := [][]int32{testfix.ByteIDs("It is a long established fact ")[:28], testfix.ByteIDs("The GNU General Public License")[:28]}
	run := func(s Sampling) [][]int32 {
		g, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 24, Sampling: s})
		if err != nil {
			t.Fatal(err)
		}
		return g.Tokens
	}
	a := run(Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 3})
	b := run(Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 3})
	c := run(Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 4})
	if !slices.Equal(a[0], b[0]) || !slices.Equal(a[1], b[1]) {
		t.Fatalf("same seed, different samples")
	}
	if slices.Equal(a[0], c[0]) && slices.Equal(a[1], c[1]) {
		t.Fatalf("different seeds, same samples")
	}
	// top-k 1 is greedy whatever the temperature.
	k1 := run(Sampling{Temperature: 1.5, TopK: 1, Seed: 9})
	greedy := run(Sampling{})
	if !slices.Equal(k1[0], greedy[0]) {
		t.Fatalf("top-k 1 %v != greedy %v", k1[0], greedy[0])
	}
}

func TestSamplingValidated(t *testing.T) {
	m := LoadFixture(t, "pythia-tiny", dtypes.Float32)
	nan := func() float64 { var z float64; return z / z }()
	for _, s := range []Sampling{{Temperature: nan}, {TopP: nan}, {Temperature: 1, TopP: 1.5}, {TopK: -1}} {
		if _, err := m.Generate([][]int32{{1, 2}}, GenerateOptions{MaxNewTokens: 2, Sampling: s}); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

// On XLA's CPU plugin the steps read KV caches shared with the host, which writes each step's new
// keys and values: the tokens are those of caches XLA updates itself (a padded batch, greedy and
// sampled with a repetition penalty, a vanilla and a Block model, fused and CompileLess, f32 and
// bf16), the logits the same but for the order of two sums (2.5e-3 in bf16). The go backend keeps
// its own caches.
func TestSharedCachesGenerateTheSame(t *testing.T) {
	if ShareCaches(LoadFixtureOn(t, testfix.Backend(t), testfix.Open(t, testfix.Path("bt-tiny")), dtypes.Float32)) {
		t.Fatal("the go backend shares its caches with the host")
	}
	b := testfix.XLA(t)
	for _, c := range []struct {
		name        string
		compileLess bool
		dt          dtypes.DType
		maxErr      float64 // logits' relative L2 error
	}{{"pythia-tiny", false, dtypes.Float32, 1e-6}, {"bt-tiny", false, dtypes.Float32, 1e-6}, {"bt-tiny", true, dtypes.Float32, 1e-6},
		{"bt-tiny", false, dtypes.BFloat16, 1e-2}} { // bf16: the two value products are rounded apart
		shared := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(c.name)), c.dt)
		copied := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(c.name)), c.dt)
		CopyCaches(copied, true)
		shared.CompileLess, copied.CompileLess = c.compileLess, c.compileLess
		if !ShareCaches(shared) || ShareCaches(copied) {
			t.Fatalf("%s: shares caches %t and %t", c.name, ShareCaches(shared), ShareCaches(copied))
		}
		prompts := [][]int32{testfix.ByteIDs("The quick brown fox jumps over!"), testfix.ByteIDs("Hello")}
		for _, s := range []Sampling{{}, {Temperature: 0.8, TopK: 5, Seed: 3, RepeatPenalty: 1.3}} {
			o := GenerateOptions{MaxNewTokens: 21, Sampling: s, KeepLogits: true}
			want, err := copied.Generate(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := shared.Generate(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			sameGeneration(t, fmt.Sprintf("%s %s %+v", c.name, c.dt, s), got, want, c.maxErr)
		}
	}
}

// sameGeneration fails t unless got has want's tokens in every row and its logits within maxErr
// (relative L2).
func sameGeneration(t *testing.T, what string, got, want *Generation, maxErr float64) {
	t.Helper()
	for r := range want.Tokens {
		if !slices.Equal(got.Tokens[r], want.Tokens[r]) {
			t.Errorf("%s row %d: tokens %v, want %v", what, r, got.Tokens[r], want.Tokens[r])
		}
	}
	if e := testfix.RelL2(got.Logits, want.Logits); e > maxErr {
		t.Errorf("%s: logits rel L2 %.3g", what, e)
	}
}

// With CompileLess a Block model's token decoder runs as a graph of its own, shared by the prefill
// and the steps: the same tokens and logits as the graphs that generate the block themselves, for
// greedy and sampled generation (the sampler's state passes through the token graph), with one
// graph more and a padded batch.
func TestCompileLessGeneratesTheSame(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		names := []string{"bt-tiny", "bt-cls-cross-attn-tiny"}
		if !backend.IsGo(b) {
			names = names[:1] // XLA's compiles are the cost; the T5 class's wiring is the same on both
		}
		for _, name := range names {
			fused := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
			split := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
			fused.CompileLess, split.CompileLess = false, true
			prompts := [][]int32{testfix.ByteIDs("The quick brown fox jumps over!"), testfix.ByteIDs("Hello")}
			for _, s := range []Sampling{{}, {Temperature: 0.8, TopK: 5, Seed: 3, RepeatPenalty: 1.3}} {
				o := GenerateOptions{MaxNewTokens: 21, Sampling: s, KeepLogits: true}
				before := split.Compilations()
				want, err := fused.Generate(prompts, o)
				if err != nil {
					t.Fatal(err)
				}
				got, err := split.Generate(prompts, o)
				if err != nil {
					t.Fatal(err)
				}
				if c := split.Compilations() - before; c != 3 {
					t.Errorf("%s %+v: %d compilations, want 3 (prefill, step, token)", name, s, c)
				}
				sameGeneration(t, fmt.Sprintf("%s %+v", name, s), got, want, 1e-6)
			}
		}
	})
}
