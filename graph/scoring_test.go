package graph

import (
	"math"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
)

// Scoring on the backend (log-softmax and every reduction over the vocabulary in the graph)
// agrees with a float64 log-softmax of the same logits on the host, position by position: log p
// of the true token, the argmax and the KL divergence of an int4 copy from its base, for a block
// and a vanilla model, on every backend.
func TestScoringInGraphMatchesFloat64(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		for _, name := range []string{"bt-tiny", "pythia-tiny"} {
			base := loadOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
			fm := testfix.Open(t, testfix.Path(name))
			plan, err := quant.MakePlan(fm, quant.Settings{Type: quant.Int4, GroupSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			m := loadOn(t, b, quant.Apply(fm, plan, nil), dtypes.Float32)
			const B, T = 3, 64
			ids := testfix.Text(t, testfix.GPL3)[:B*T]
			sb, err := base.ScoreTokens(ids, B, T, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Release()
			sm, err := m.ScoreTokens(ids, B, T, sb, true)
			if err != nil {
				t.Fatal(err)
			}
			defer sm.Release()
			zb, _ := tensors.CopyFlatData[float32](sb.logits)
			zm, _ := tensors.CopyFlatData[float32](sm.logits)
			sc, V := m.Config.Scoring(T), m.Config.VocabSize
			var worstLP, worstKL, sumKL float64
			for bi := range B {
				for k := range sc.Rows {
					i := bi*sc.Rows + k
					rb, rm := zb[i*V:(i+1)*V], zm[i*V:(i+1)*V]
					lb, lm := logSoftmax64(rb), logSoftmax64(rm)
					target := ids[bi*T+sc.First+k]
					var kl float64
					for j := range lb {
						kl += math.Exp(lb[j]) * (lb[j] - lm[j])
					}
					worstLP = max(worstLP, math.Abs(sm.LogP[i]-lm[target]), math.Abs(sb.LogP[i]-lb[target]))
					worstKL = max(worstKL, math.Abs(sm.KL[i]-kl))
					sumKL += kl
					if want := slices.Index(rm, slices.Max(rm)); int(sm.Argmax[i]) != want {
						t.Fatalf("%s: position %d: argmax %d, host %d", name, i, sm.Argmax[i], want)
					}
				}
			}
			meanKL := sumKL / float64(B*sc.Rows)
			t.Logf("%s: worst |log p| error %.3g, worst KL error %.3g (mean KL %.4g)", name, worstLP, worstKL, meanKL)
			// The go backend's fused softmax evaluates exp as a float32 polynomial (GoMLX's
			// fastmath.Exp32, up to 7e-7 relative per term here): its normaliser is good to a few
			// 1e-6; XLA's to 2e-7. Perplexities move by as much relatively, far below their
			// standard error.
			tol := 1e-6
			if kindOf(b) == goBackend {
				tol = 8e-6
			}
			if worstLP > tol || worstKL > tol {
				t.Errorf("%s: log p off by %.3g, KL by %.3g (mean KL %.3g)", name, worstLP, worstKL, meanKL)
			}
		}
	})
}

// logSoftmax64 is log p of a row of logits, in float64.
func logSoftmax64(row []float32) []float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x) - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float64, len(row))
	for i, x := range row {
		out[i] = float64(x) - lse
	}
	return out
}
