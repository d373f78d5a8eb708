package verify

import (
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

// quantized builds a quantized copy of a fixture in memory and loads it.
func quantized(t *testing.T, name string, s quant.Settings, cal *quant.Calibration) (*graph.Engine, *quant.Plan) {
	t.Helper()
	fm := testfix.Open(t, testfix.Path(name))
	plan, err := quant.MakePlan(fm, s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := graph.Load(quant.Apply(fm, plan, cal), testfix.Backend(t), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, plan
}

// calibWindows caps the calibration text of the tests (GPL-2 has ~71 windows of 256 tokens).
const calibWindows = 32

// calibrateFixture collects calibration statistics of a fixture on GPL-2 (not the eval text), as
// quantize --calib does.
func calibrateFixture(t *testing.T, base *graph.Engine, full bool) *quant.Calibration {
	wins := graph.Windows(testfix.Text(t, testfix.GPL2), 256)
	wins = wins[:min(len(wins), calibWindows)]
	st, err := base.Calibrate(wins, 16, full, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &quant.Calibration{Importance: st.MeanSquare, Hessian: st.SecondMoment}
}

// linearRatio is the quantized linear weights' bytes over their f32 bytes.
func linearRatio(p *quant.Plan) float64 {
	_, a, n := p.Total(func(e quant.Entry) bool { return e.To == p.Settings.Type }) // the main scheme's tensors
	return float64(a) / float64(4*n)
}

// qualityChunks caps the eval text of the quality tests at its first 48 windows of 256 tokens
// (12288 of GPL-3's ~34500): the orderings and bounds tested hold there with margin, at a third of
// the time. The whole-text figures of docs/QUANTIZATION.md come from verify --eval-text.
const qualityChunks = 48

// The quantization targets, on both fixtures, eval text GPL-3.
func TestQuantizationQuality(t *testing.T) {
	tokens := testfix.Text(t, testfix.GPL3)
	for _, name := range []string{"bt-tiny", "pythia-tiny"} {
		base := load(t, name)
		measure := func(what string, m *graph.Engine) *Quality {
			q, err := CompareQuality(m, base, name, tokens, Scoring{Window: 256, Batch: 16, Chunks: qualityChunks})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s: ppl_ratio %.5f mean_kld %.5f p99 %.4f top1 %.4f rms_dp %.4f", name, what, q.PPLRatio, q.MeanKLD, q.P99KLD, q.Top1Agreement, q.RMSDeltaP)
			return q
		}
		s8 := quant.Settings{Type: quant.Int8, Search: true}
		m8, p8 := quantized(t, name, s8, nil)
		q8 := measure("int8", m8)
		if q8.PPLRatio > 1.002 || q8.MeanKLD > 0.001 || q8.Top1Agreement < 0.98 {
			t.Errorf("%s int8 misses its targets", name)
		}
		if r := linearRatio(p8); r > 0.27 {
			t.Errorf("%s int8 linear bytes %.3f x f32 > 0.27", name, r)
		}

		s4 := quant.Settings{Type: quant.Int4, GroupSize: 64}
		rtn, p4 := quantized(t, name, s4, &quant.Calibration{})
		qRTN := measure("int4 g64 round-to-nearest", rtn)
		s4.Search = true
		searched, _ := quantized(t, name, s4, nil)
		qSearch := measure("int4 g64 scale search", searched)
		if qSearch.PPLRatio > 1.03 || qSearch.MeanKLD >= qRTN.MeanKLD {
			t.Errorf("%s int4 search: ppl_ratio %.4f (<= 1.03), mean_kld %.4f (< RTN %.4f)", name, qSearch.PPLRatio, qSearch.MeanKLD, qRTN.MeanKLD)
		}
		calibrated, _ := quantized(t, name, s4, calibrateFixture(t, base, true))
		qCal := measure("int4 g64 GPTQ calibrated on GPL-2", calibrated)
		// Fidelity to the base (KL divergence, top-1 agreement) must improve; the perplexity ratio
		// only stay in bounds (two close quantizations can swap their ratios by chance).
		if qCal.MeanKLD >= qSearch.MeanKLD || qCal.Top1Agreement <= qSearch.Top1Agreement || qCal.PPLRatio > 1.03 {
			t.Errorf("%s: calibration did not improve on the search alone", name)
		}
		if r := linearRatio(p4); r > 0.16 {
			t.Errorf("%s int4 linear bytes %.3f x f32 > 0.16", name, r)
		}

		// llama.cpp's types: within their export limits. The fixtures' rows of 128 are not whole
		// k-quant super-blocks: there the k-quants fall back (q4_k to q4_1, q6_k to q8_0), and only
		// the MLP's down projections (rows of 512) are k-quants.
		for _, typ := range []scheme.Type{scheme.Q8_0, scheme.Q4_0, scheme.Q4_K, scheme.Q6_K} {
			m, p := quantized(t, name, quant.Settings{Type: quant.Type(typ)}, nil)
			if sc, _ := scheme.Of(typ); sc.Fallback != "" {
				kinds := map[quant.Type]int{}
				for _, e := range p.Entries {
					kinds[e.To]++
				}
				if kinds[quant.Type(typ)] == 0 || kinds[quant.Type(sc.Fallback)] == 0 {
					t.Errorf("%s %s: plan's types %v, want both %s and its fallback %s", name, typ, kinds, typ, sc.Fallback)
				}
			}
			q := measure(string(typ), m)
			sc, _ := scheme.Of(typ)
			if q.PPLRatio > sc.MaxPPLRatio || q.Top1Agreement < sc.MinTop1 {
				t.Errorf("%s %s: ppl_ratio %.4f, top-1 %.4f past its limits (%v, %v)", name, typ, q.PPLRatio, q.Top1Agreement, sc.MaxPPLRatio, sc.MinTop1)
			}
			if r, want := linearRatio(p), float64(sc.GGML.Bytes)/float64(4*sc.GGML.Values); math.Abs(r-want) > 1e-9 {
				t.Errorf("%s %s linear bytes %.4f x f32, want %.4f", name, typ, r, want)
			}
		}
	}
}
