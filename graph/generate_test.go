package graph

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
)

// The repetition penalty follows Hugging Face's rule, checked token by token against the raw
// logits: the chosen token is the argmax after dividing the positive logits (multiplying the
// negative ones) of every id seen so far, prompt and generation.
func TestRepeatPenalty(t *testing.T) {
	for _, name := range []string{"bt-tiny", "pythia-tiny"} {
		m := load(t, name, dtypes.Float32)
		prompt := testfix.ByteIDs("the the the the the the the the ")
		const n, penalty = 16, 1.8
		g, err := m.Generate([][]int32{prompt}, GenerateOptions{MaxNewTokens: n, KeepLogits: true, Sampling: Sampling{RepeatPenalty: penalty}})
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := m.Generate([][]int32{prompt}, GenerateOptions{MaxNewTokens: n})
		if slices.Equal(plain.Tokens[0], g.Tokens[0]) {
			t.Errorf("%s: the penalty changed nothing (%v)", name, g.Tokens[0])
		}
		V := m.Config.VocabSize
		seen := map[int32]bool{}
		for _, id := range prompt {
			seen[id] = true
		}
		for i, tok := range g.Tokens[0] {
			best, bestV := -1, math.Inf(-1)
			for v, x := range g.Logits[i*V : (i+1)*V] {
				y := float64(x)
				if seen[int32(v)] {
					if y < 0 {
						y *= penalty
					} else {
						y /= penalty
					}
				}
				if y > bestV {
					best, bestV = v, y
				}
			}
			if int32(best) != tok {
				t.Fatalf("%s token %d: got %d, the penalized argmax is %d", name, i, tok, best)
			}
			seen[tok] = true
		}
	}
}

// Min-p keeps only tokens at least min_p times as likely as the best: at 1 sampling is greedy,
// and at 0.5 every sampled token passes the cut on the raw logits (temperature 1).
func TestMinP(t *testing.T) {
	m := load(t, "bt-tiny", dtypes.Float32)
	prompt := [][]int32{testfix.ByteIDs("It is a long established fact "), testfix.ByteIDs("The GNU General Public License")}
	greedy, _ := m.Generate(prompt, GenerateOptions{MaxNewTokens: 16})
	g, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 16, Sampling: Sampling{Temperature: 1, MinP: 1, Seed: 5}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompt {
		if !slices.Equal(g.Tokens[i], greedy.Tokens[i]) {
			t.Errorf("min-p 1, row %d: %v, greedy %v", i, g.Tokens[i], greedy.Tokens[i])
		}
	}
	const minP = 0.5
	g, err = m.Generate(prompt, GenerateOptions{MaxNewTokens: 16, KeepLogits: true, Sampling: Sampling{Temperature: 1, MinP: minP, Seed: 5}})
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.VocabSize
	for r := range prompt {
		for i, tok := range g.Tokens[r] {
			l := g.Logits[(r*16+i)*V : (r*16+i+1)*V]
			top := slices.Max(l)
			if p := math.Exp(float64(l[tok] - top)); p < minP {
				t.Errorf("row %d token %d: %d is %.3f as likely as the best, under min-p %g", r, i, tok, p, minP)
			}
		}
	}
}

// The sampler's rules on crafted logits: the repetition penalty divides a seen positive logit and
// multiplies a seen negative one, the chosen ids join the seen ones, and min-p draws only among
// tokens at least min_p times as likely as the best.
func TestSamplerRules(t *testing.T) {
	b := testfix.Backend(t)
	run := func(s Sampling, logits, seen []float32, B int) (toks []int32, seenAfter []float32) {
		t.Helper()
		V := len(logits) / B
		s.Seed = 11
		x, err := NewExec(b, func(l, sn *Node) []*Node {
			st := genState{rng: Const(l.Graph(), mustRNG(t))}
			if s.penalized() {
				st.seen = sn // as Generate threads it: only with a penalty
			}
			tok, st := sampler{s}.sample(l, st)
			if st.seen == nil {
				return []*Node{tok, sn}
			}
			return []*Node{tok, st.seen}
		})
		if err != nil {
			t.Fatal(err)
		}
		out, err := x.Call(tensors.FromFlatDataAndDimensions(logits, B, V), tensors.FromFlatDataAndDimensions(seen, B, V))
		if err != nil {
			t.Fatal(err)
		}
		toks, _ = tensors.CopyFlatData[int32](out[0])
		seenAfter, _ = tensors.CopyFlatData[float32](out[1])
		return toks, seenAfter
	}
	// Row 0: seen 1.0 / 2 = 0.5 loses to 0.9. Row 1: seen -0.1 * 2 = -0.2 loses to -0.15 (dividing
	// would make it -0.05 and win).
	logits := []float32{1.0, 0.9, -0.1, -0.3, -5, -0.1, -0.15, -2, -3, -4}
	seen := []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	toks, after := run(Sampling{RepeatPenalty: 2}, logits, seen, 2)
	if !slices.Equal(toks, []int32{1, 1}) || !slices.Equal(after, []float32{1, 1, 0, 0, 0, 1, 1, 0, 0, 0}) {
		t.Errorf("penalty: tokens %v, seen after %v", toks, after)
	}
	if toks, _ := run(Sampling{}, logits, seen, 2); !slices.Equal(toks, []int32{0, 0}) {
		t.Errorf("no penalty: tokens %v", toks)
	}
	// Min-p 0.5 over 64 rows of the same logits: e^-0.5 = 0.61 of the best stays, e^-0.8 = 0.45 goes.
	const B = 64
	var many, none []float32
	for range B {
		many = append(many, 0, -0.5, -0.8, -3)
		none = append(none, 0, 0, 0, 0)
	}
	toks, _ = run(Sampling{Temperature: 1, MinP: 0.5}, many, none, B)
	count := map[int32]int{}
	for _, tok := range toks {
		count[tok]++
	}
	if count[0]+count[1] != B || count[0] == 0 || count[1] == 0 {
		t.Errorf("min-p 0.5: drew %v; want only 0 and 1, both", count)
	}
}

func mustRNG(t *testing.T) *tensors.Tensor {
	rng, err := RNGStateFromSeed(11)
	if err != nil {
		t.Fatal(err)
	}
	return rng
}

// A quantized model's products and lookups, run on its packed weights (dequant.go), give the logits
// of the same model run on its whole dequantized weights within rel L2 1e-5 and the same greedy
// tokens: int8 (tables included; int4 models' products are dequantized either way) on every
// backend, and on the go backend llama.cpp's q8_0 and q4_0 (GoMLX's fused product), for a block and
// a vanilla model.
func TestQuantizedProductsKeepLogits(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		prompts := [][]int32{testfix.ByteIDs("The GNU General Public License is a free, copyleft license")}
		for _, name := range []string{"bt-tiny", "pythia-tiny"} {
			settings := []quant.Settings{{Type: quant.Int8}}
			if kindOf(b) == goBackend { // its fused product of llama.cpp's blocks (XLA dequantizes them)
				settings = append(settings, quant.Settings{Type: "q8_0"}, quant.Settings{Type: "q4_0"}, quant.Settings{Type: "q4_k"}, quant.Settings{Type: "q6_k"})
			}
			for _, s := range settings {
				fm := testfix.Open(t, testfix.Path(name))
				plan, err := quant.MakePlan(fm, s)
				if err != nil {
					t.Fatal(err)
				}
				qm := quant.Apply(fm, plan, nil)
				run := func(reference, fused bool) *Generation {
					fusedInt8Products = fused
					defer func() { fusedInt8Products = false }()
					e := loadOn(t, b, qm, dtypes.Float32)
					e.dequantProducts = reference
					g, err := e.Generate(prompts, GenerateOptions{MaxNewTokens: 12, KeepLogits: true})
					if err != nil {
						t.Fatal(err)
					}
					return g
				}
				ref := run(true, false)
				variants := map[string]*Generation{string(s.Type): run(false, false)}
				if s.Type == quant.Int8 && kindOf(b) == goBackend { // GoMLX's fused int8 product too
					variants["int8 fused"] = run(false, true)
				}
				for what, g := range variants {
					e := testfix.RelL2(g.Logits, ref.Logits)
					t.Logf("%s %s: rel L2 %.3g", name, what, e)
					if e > 1e-5 || !slices.EqualFunc(g.Tokens, ref.Tokens, slices.Equal) {
						t.Errorf("%s %s: logits rel L2 %.3g from the dequantized weights' (tokens %v, want %v)", name, what, e, g.Tokens, ref.Tokens)
					}
				}
			}
		}
	})
}

// Generations at once on one engine, the same graphs at two batch sizes, each compiling its step
// alongside its prefill: none waits for a graph another built, and each gets the tokens it gets
// alone.
func TestGenerationsAtOnce(t *testing.T) {
	for _, name := range []string{"pythia-tiny", "bt-tiny"} {
		alone := load(t, name, dtypes.Float32)
		p := testfix.ByteIDs("The quick brown fox jumps over!")
		want, err := alone.Generate([][]int32{p}, GenerateOptions{MaxNewTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		for round := range 5 {
			e := load(t, name, dtypes.Float32)
			e.CompileLess = round%2 == 1
			errc := make(chan error, 2)
			for B := 1; B <= 2; B++ {
				prompts := slices.Repeat([][]int32{p}, B)
				go func() {
					g, err := e.Generate(prompts, GenerateOptions{MaxNewTokens: 6})
					if err == nil && !slices.Equal(g.Tokens[B-1], want.Tokens[0]) {
						err = fmt.Errorf("batch %d: tokens %v, want %v", B, g.Tokens[B-1], want.Tokens[0])
					}
					errc <- err
				}()
			}
			for range 2 {
				select {
				case err := <-errc:
					if err != nil {
						t.Errorf("%s round %d: %v", name, round, err)
					}
				case <-time.After(2 * time.Minute):
					t.Fatalf("%s round %d: generations at once hung", name, round)
				}
			}
		}
	}
}

// A panic while a graph is built (a class without its graph) is the error of Generate, whichever
// goroutine built the graph, for every generation waiting for that graph; the engine still closes.
func TestBuildPanicIsAnError(t *testing.T) {
	classes.Lock()
	saved := tokenDecoders[arch.ClassNeoX]
	delete(tokenDecoders, arch.ClassNeoX)
	classes.Unlock()
	defer func() { classes.Lock(); tokenDecoders[arch.ClassNeoX] = saved; classes.Unlock() }()
	for _, compileLess := range []bool{false, true} {
		e, err := Load(testfix.Open(t, testfix.Path("bt-tiny")), testfix.Backend(t), dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		e.CompileLess = compileLess
		errc := make(chan error, 2)
		for range 2 {
			go func() {
				defer func() {
					if r := recover(); r != nil {
						errc <- fmt.Errorf("panicked: %v", r)
					}
				}()
				_, err := e.Generate([][]int32{testfix.ByteIDs("Hello there")}, GenerateOptions{MaxNewTokens: 9})
				errc <- err
			}()
		}
		for range 2 {
			select {
			case err := <-errc:
				if err == nil || strings.HasPrefix(err.Error(), "panicked") || !strings.Contains(err.Error(), "no graph for token decoder class gpt-neo-x") {
					t.Errorf("CompileLess %v: %v", compileLess, err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatalf("CompileLess %v: a generation waits for a graph that failed", compileLess)
			}
		}
		closed := make(chan struct{})
		go func() { e.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(time.Minute):
			t.Fatalf("CompileLess %v: Close waits for a graph that failed", compileLess)
		}
	}
}
