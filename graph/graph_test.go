package graph

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/btconvert/btconvert/formats"
)

var fixtureNames = []string{"bt-tiny", "pythia-tiny", "bt-from-pythia-tiny"}

var testBackend backends.Backend

func backend(t testing.TB) backends.Backend {
	if testBackend == nil {
		b, err := NewBackend("go")
		if err != nil {
			t.Fatal(err)
		}
		testBackend = b
	}
	return testBackend
}

func load(t testing.TB, name string, dt dtypes.DType) *Model {
	t.Helper()
	fm, err := formats.Open(filepath.Join("..", "fixtures", name), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	m, err := Load(fm, backend(t), dt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

type reference struct {
	ids          []int32
	B, T         int
	logits       []float32
	prompts      [][]int32
	greedy       [][]int32
	logitsShape  []int
	promptLength int
}

func loadReference(t testing.TB, name string) *reference {
	f, err := formats.OpenSafetensors(filepath.Join("..", "fixtures", name, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &reference{}
	ids, shape, _ := f.Int64("input_ids")
	r.B, r.T = shape[0], shape[1]
	for _, v := range ids {
		r.ids = append(r.ids, int32(v))
	}
	r.logits, r.logitsShape, _ = f.Float32("logits")
	rows := func(name string) [][]int32 {
		v, s, _ := f.Int64(name)
		out := make([][]int32, s[0])
		for i := range out {
			for _, x := range v[i*s[1] : (i+1)*s[1]] {
				out[i] = append(out[i], int32(x))
			}
		}
		return out
	}
	r.prompts, r.greedy = rows("prompt_ids"), rows("greedy_ids")
	return r
}

func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

func TestScoreMatchesReference(t *testing.T) {
	for _, name := range fixtureNames {
		m := load(t, name, dtypes.Float32)
		r := loadReference(t, name)
		got, shape, err := m.Score(r.ids, r.B, r.T)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, r.logitsShape) {
			t.Fatalf("%s: shape %v want %v", name, shape, r.logitsShape)
		}
		if e := relL2(got, r.logits); e > 1e-5 {
			t.Errorf("%s: rel L2 %.3g > 1e-5", name, e)
		} else {
			t.Logf("%s: rel L2 %.3g", name, e)
		}
	}
}

func TestGreedyMatchesReference(t *testing.T) {
	for _, name := range fixtureNames {
		m := load(t, name, dtypes.Float32)
		r := loadReference(t, name)
		g, err := m.Generate(r.prompts, GenerateOptions{MaxNewTokens: len(r.greedy[0])})
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.greedy {
			if !slices.Equal(g.Tokens[i], r.greedy[i]) {
				t.Errorf("%s row %d:\n got %v\nwant %v", name, i, g.Tokens[i], r.greedy[i])
			}
		}
	}
}

// The head count is really used: the same weights read with another head count (which no shape
// can reveal) give other logits.
func TestHeadCountChangesLogits(t *testing.T) {
	r := loadReference(t, "bt-tiny")
	fm, err := formats.Open(filepath.Join("..", "fixtures", "bt-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	cfg := *fm.Config
	for _, d := range []*formats.DecoderConfig{cfg.BlockDecoder, &cfg.TokenDecoder.DecoderConfig} {
		if d.Heads != 4 {
			t.Fatalf("bt-tiny has %d heads, want 4", d.Heads)
		}
	}
	bd, td := *cfg.BlockDecoder, *cfg.TokenDecoder
	bd.Heads, bd.HeadDim, bd.RotaryDims = 8, 16, 4
	td.Heads, td.HeadDim, td.RotaryDims = 8, 16, 4
	cfg.BlockDecoder, cfg.TokenDecoder = &bd, &td
	fm.Config = &cfg
	m, err := Load(fm, backend(t), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, _, err := m.Score(r.ids, r.B, r.T)
	if err != nil {
		t.Fatal(err)
	}
	if e := relL2(got, r.logits); e < 0.01 {
		t.Fatalf("8 heads instead of 4: rel L2 %.3g, the head count is not used", e)
	}
}
