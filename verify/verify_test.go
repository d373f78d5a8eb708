package verify

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
)

func load(t *testing.T, name string) *graph.Engine {
	t.Helper()
	return loadOn(t, testfix.Backend(t), testfix.Open(t, testfix.Path(name)))
}

func loadOn(t *testing.T, b compute.Backend, m *formats.Model) *graph.Engine {
	t.Helper()
	e, err := graph.Load(m, b, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Parity, self-check and perplexity hold on every backend (go, XLA's CPU plugin) at the same
// tolerances: float32 against the float64 references.
func TestParityAgainstReference(t *testing.T) {
	testfix.EachBackend(t, testParity)
}

func testParity(t *testing.T, b compute.Backend) {
	for _, name := range testfix.Referenced() {
		m := loadOn(t, b, testfix.Open(t, testfix.Path(name)))
		path := filepath.Join(testfix.Path(name), "reference.safetensors")
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

// A reference whose ids do not fit the model's vocabulary is bad input naming the file.
func TestReferenceIDsChecked(t *testing.T) {
	m := load(t, "bt-tiny")
	path := filepath.Join(testfix.Path("bt-tiny"), "reference.safetensors")
	r, _ := ReadReference(path)
	r.IDs[5] = 300
	_, err := AgainstReference(m, r, path)
	if want := path + `: tensor "input_ids": id 300 (element 5) is outside the model's vocabulary 0..255`; err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

func TestSelfCheck(t *testing.T) {
	testfix.EachBackend(t, testSelfCheck)
}

func testSelfCheck(t *testing.T, b compute.Backend) {
	for _, name := range testfix.Referenced() {
		m := loadOn(t, b, testfix.Open(t, testfix.Path(name)))
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

func TestPerplexityMatchesReference(t *testing.T) {
	testfix.EachBackend(t, testPerplexity)
}

func testPerplexity(t *testing.T, b compute.Backend) {
	tokens := testfix.Text(t, testfix.GPL3)
	for _, name := range testfix.Referenced() {
		var ref struct {
			PPL    float64 `json:"eval_ppl"`
			Scored int     `json:"eval_tokens_scored"`
		}
		raw, _ := os.ReadFile(filepath.Join(testfix.Path(name), "reference.json"))
		json.Unmarshal(raw, &ref)
		m := loadOn(t, b, testfix.Open(t, testfix.Path(name)))
		q, err := Perplexity(m, tokens, Scoring{Window: 256, Batch: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ppl %.6f ± %.4f (ref %.6f), %d tokens", name, q.PPL, q.PPLStdErr, ref.PPL, q.TokensScored)
		if math.Abs(q.PPL/ref.PPL-1) > 1e-5 || q.TokensScored != ref.Scored {
			t.Errorf("%s: ppl %.8g scored %d, reference %.8g scored %d", name, q.PPL, q.TokensScored, ref.PPL, ref.Scored)
		}
		// The standard error of the mean NLL: small against the NLL, not zero.
		if q.NLLStdErr <= 0 || q.NLLStdErr > 0.05*q.NLL || math.Abs(q.PPLStdErr-q.PPL*q.NLLStdErr) > 1e-12 {
			t.Errorf("%s: nll %.4f ± %.4f, ppl ± %.4f", name, q.NLL, q.NLLStdErr, q.PPLStdErr)
		}
	}
}

// A report with a measure that is not finite is a failed check, and still valid JSON (null plus
// the list of such measures).
func TestNonFiniteReport(t *testing.T) {
	nan := math.NaN()
	r := &Report{Model: "m", Quality: &Quality{PPL: nan, NLL: nan}}
	if r.Finish() || r.Status != StatusFail {
		t.Fatalf("a NaN perplexity passed: %+v", r)
	}
	js, err := EncodeJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("not valid JSON: %v\n%s", err, js)
	}
	q := back["quality"].(map[string]any)
	if q["ppl"] != nil || !strings.Contains(string(js), `"non_finite": [`) || !strings.Contains(string(js), `"quality.ppl"`) {
		t.Fatalf("%s", js)
	}
	// Nothing checked: MEASURED, which passes.
	m := &Report{}
	if !m.Finish() || m.Status != StatusMeasured {
		t.Fatalf("%+v", m)
	}
	// No HTML escaping.
	js, _ = EncodeJSON(map[string]string{"op": "<="})
	if !strings.Contains(string(js), `"<="`) {
		t.Fatalf("%s", js)
	}
}

// Symmetric int4 end to end: the quantized model on the device (packed, dequantized in the graph)
// scores exactly as the host's dequantized copy, and differs from the float model as much as
// int4 should.
func TestSymmetricInt4EndToEnd(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		testQuantizedOnDevice(t, b, quant.Settings{Type: quant.Int4, GroupSize: 32, Symmetric: true, Search: true}, 1e-3, 0.3)
		testQuantizedOnDevice(t, b, quant.Settings{Type: quant.Int4, GroupSize: 64, Search: true}, 1e-3, 0.3)
		testQuantizedOnDevice(t, b, quant.Settings{Type: quant.Int8, Search: true}, 1e-5, 0.05)
	})
}

// testQuantizedOnDevice quantizes bt-tiny with s and checks that on b the packed weights,
// dequantized in the graph, score as the host's dequantized copy, and differ from the float
// model between lo and hi (rel L2).
func testQuantizedOnDevice(t *testing.T, b compute.Backend, s quant.Settings, lo, hi float64) {
	fm := testfix.Open(t, testfix.Path("bt-tiny"))
	plan, err := quant.MakePlan(fm, s)
	if err != nil {
		t.Fatal(err)
	}
	q := quant.Apply(fm, plan, nil)
	host, err := quant.Dequantized(q, safetensors.F32)
	if err != nil {
		t.Fatal(err)
	}
	r := testfix.LoadReference(t, "bt-tiny")
	score := func(m *formats.Model) []float32 {
		e, err := graph.Load(m, b, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		got, _, err := e.Score(r.IDs, r.B, r.T)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	device, dequant := score(q), score(host)
	if e := testfix.RelL2(device, dequant); e > 1e-6 {
		t.Errorf("%+v: packed on the device vs dequantized on the host: rel L2 %.3g", s, e)
	}
	if e := testfix.RelL2(device, r.Logits); e < lo || e > hi {
		t.Errorf("%+v vs the float reference: rel L2 %.3g, want between %g and %g", s, e, lo, hi)
	}
}

// Scoring throughput (tokens/s of perplexity) of a trained fixture and of a block model with a
// 50k vocabulary, where the log-softmax over the vocabulary is most of the work beyond the
// decoders: it runs on the backend (fused softmax, gathers), never per element on the host, where
// a float64 math.Exp costs 20-100x more after an asynchronous preemption on some processors
// (docs/UPSTREAM_BUGS.md).
// GOEXPERIMENT=simd go test ./verify -run XXX -bench Perplexity -benchtime 3x
func BenchmarkPerplexity(b *testing.B) {
	tokens := testfix.Text(b, testfix.GPL3)
	wide, err := arch.Shape{Block: true, Hidden: 128, Heads: 4, FFN: 512, Vocab: 50304, BlockLayers: 1, TokenLayers: 1, BlockLength: 4}.Config()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		model  *formats.Model
		window int
	}{{"bt-tiny", testfix.Open(b, testfix.Path("bt-tiny")), 256}, {"vocab-50304", randinit.Model(wide, 1, safetensors.F32), 256}} {
		b.Run(c.name, func(b *testing.B) {
			e, err := graph.Load(c.model, testfix.Backend(b), dtypes.Float32)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			s := Scoring{Window: c.window, Batch: 8, Chunks: 32} // btconvert's DefaultWindowBatch
			var q *Quality
			for b.Loop() {
				if q, err = Perplexity(e, tokens, s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(q.TokensPerS, "tokens/s")
		})
	}
}
