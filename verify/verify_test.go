package verify

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
)

var fixtureNames = []string{"bt-tiny", "pythia-tiny", "bt-from-pythia-tiny"}

const gpl3 = "/usr/share/common-licenses/GPL-3"

var be backends.Backend

func load(t *testing.T, name string) *graph.Model {
	t.Helper()
	if be == nil {
		var err error
		if be, err = graph.NewBackend("go"); err != nil {
			t.Fatal(err)
		}
	}
	fm, err := formats.Open(filepath.Join("..", "fixtures", name), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	m, err := graph.Load(fm, be, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestParityAgainstReference(t *testing.T) {
	for _, name := range fixtureNames {
		m := load(t, name)
		path := filepath.Join("..", "fixtures", name, "reference.safetensors")
		r, err := ReadReference(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := AgainstReference(m, r, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", name, *p)
		if p.RelL2Err > 1e-5 || !p.GreedyMatch || p.GreedyTokenAgreement != 1 || p.Top1Agreement != 1 {
			t.Errorf("%s: parity %+v", name, *p)
		}
	}
}

func TestSelfCheck(t *testing.T) {
	for _, name := range fixtureNames {
		m := load(t, name)
		s, err := RunSelfCheck(m, 7)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", name, *s)
		if s.CacheRelL2Err > 1e-5 || s.Generated < 8 {
			t.Errorf("%s: %+v", name, *s)
		}
	}
}

// The decode step has fixed shapes: a longer generation compiles no more graphs than a short one.
func TestGenerationCompilesOnce(t *testing.T) {
	for _, name := range []string{"bt-tiny", "pythia-tiny"} {
		m := load(t, name)
		prompt := [][]int32{byte2ids("The quick brown fox jumps over!")}
		before := m.Compilations()
		if _, err := m.Generate(prompt, graph.GenerateOptions{MaxNewTokens: 40}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 2 {
			t.Errorf("%s: %d compilations for one generation, want 2 (prefill + step)", name, c)
		}
		before = m.Compilations()
		if _, err := m.Generate(prompt, graph.GenerateOptions{MaxNewTokens: 40}); err != nil {
			t.Fatal(err)
		}
		if c := m.Compilations() - before; c != 0 {
			t.Errorf("%s: %d compilations when generating again with the same shapes", name, c)
		}
	}
}

func byte2ids(s string) []int32 {
	ids, _ := formats.ByteTokenizer{}.Encode(s)
	return ids
}

// Prompts that are not whole blocks are left-padded with the pad id.
func TestLeftPadding(t *testing.T) {
	m := load(t, "bt-tiny")
	g, err := m.Generate([][]int32{byte2ids("Hello")}, graph.GenerateOptions{MaxNewTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	if g.PadTokens != 3 || len(g.Prompt[0]) != 8 || g.Prompt[0][0] != 0 || g.Prompt[0][3] != 'H' || len(g.Tokens[0]) != 6 {
		t.Fatalf("padding: %+v", g)
	}
	// Same as generating from the explicitly padded prompt.
	h, _ := m.Generate([][]int32{append([]int32{0, 0, 0}, byte2ids("Hello")...)}, graph.GenerateOptions{MaxNewTokens: 6})
	if string(ids2bytes(g.Tokens[0])) != string(ids2bytes(h.Tokens[0])) {
		t.Fatalf("%q vs %q", ids2bytes(g.Tokens[0]), ids2bytes(h.Tokens[0]))
	}
}

func ids2bytes(ids []int32) []byte {
	b := make([]byte, len(ids))
	for i, x := range ids {
		b[i] = byte(x)
	}
	return b
}

func TestSamplingReproducible(t *testing.T) {
	m := load(t, "bt-tiny")
	prompt := [][]int32{byte2ids("It is a long established fact "), byte2ids("The GNU General Public License")}
	prompt[0] = prompt[0][:28]
	prompt[1] = prompt[1][:28]
	run := func(s graph.Sampling) [][]int32 {
		g, err := m.Generate(prompt, graph.GenerateOptions{MaxNewTokens: 24, Sampling: s})
		if err != nil {
			t.Fatal(err)
		}
		return g.Tokens
	}
	a := run(graph.Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 3})
	b := run(graph.Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 3})
	c := run(graph.Sampling{Temperature: 0.9, TopK: 20, TopP: 0.95, Seed: 4})
	if string(ids2bytes(a[0])) != string(ids2bytes(b[0])) || string(ids2bytes(a[1])) != string(ids2bytes(b[1])) {
		t.Fatalf("same seed, different samples")
	}
	if string(ids2bytes(a[0]))+string(ids2bytes(a[1])) == string(ids2bytes(c[0]))+string(ids2bytes(c[1])) {
		t.Fatalf("different seeds, same samples")
	}
	// top-k 1 is greedy whatever the temperature.
	k1 := run(graph.Sampling{Temperature: 1.5, TopK: 1, Seed: 9})
	greedy := run(graph.Sampling{})
	if string(ids2bytes(k1[0])) != string(ids2bytes(greedy[0])) {
		t.Fatalf("top-k 1 %q != greedy %q", ids2bytes(k1[0]), ids2bytes(greedy[0]))
	}
}

func TestPerplexityMatchesReference(t *testing.T) {
	text, err := os.ReadFile(gpl3)
	if err != nil {
		t.Skipf("%s not on this machine", gpl3)
	}
	tokens := byte2ids(string(text))
	for _, name := range fixtureNames {
		var ref struct {
			PPL    float64 `json:"eval_ppl"`
			Scored int     `json:"eval_tokens_scored"`
		}
		b, _ := os.ReadFile(filepath.Join("..", "fixtures", name, "reference.json"))
		json.Unmarshal(b, &ref)
		m := load(t, name)
		q, err := Perplexity(m, tokens, 256, 16, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ppl %.6f (ref %.6f), %d tokens", name, q.PPL, ref.PPL, q.TokensScored)
		if math.Abs(q.PPL/ref.PPL-1) > 1e-5 || q.TokensScored != ref.Scored {
			t.Errorf("%s: ppl %.8g scored %d, reference %.8g scored %d", name, q.PPL, q.TokensScored, ref.PPL, ref.Scored)
		}
	}
}
