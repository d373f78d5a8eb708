package verify

import (
	"math"
	"sort"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph"
)

// CompareQuality runs m and base over the same windows of tokens and reports m's perplexity and
// its divergence from base: KL(base || m) per token (mean with its standard error, p99, max),
// argmax agreement, and the RMS change of the probability of the true token.
func CompareQuality(m, base *graph.Engine, baseName string, tokens []int32, s Scoring) (*Quality, error) {
	w, batch := s.Window, s.Batch
	if err := checkWindow(m, tokens, w, batch); err != nil {
		return nil, err
	}
	if m.Config.Kind != base.Config.Kind || m.Config.VocabSize != base.Config.VocabSize || m.Config.BlockLength != base.Config.BlockLength {
		return nil, errs.Option("Against", baseName, "the base model has another architecture (%s vs %s)", base.Config.Describe(), m.Config.Describe())
	}
	windows := s.windows(tokens)
	var nlls, nllsBase, kls []float64
	var dp2 float64
	agree := 0
	var t timing
	err := scoreBatches(m, base, windows, batch, &t, s.progress(&nlls), func(sm, sb *graph.Scored) {
		for i, lp := range sm.LogP {
			nlls = append(nlls, -lp)
			nllsBase = append(nllsBase, -sb.LogP[i])
			kls = append(kls, math.Max(sm.KL[i], 0)) // rounding can take a near-zero KL below zero
			if sm.Argmax[i] == sb.Argmax[i] {
				agree++
			}
			d := math.Exp(lp) - math.Exp(sb.LogP[i])
			dp2 += d * d
		}
	})
	if err != nil {
		return nil, err
	}
	n := float64(len(kls))
	q := &Quality{TokensScored: len(kls), Window: w}
	t.fill(q)
	q.NLL, q.NLLStdErr = meanStdErr(nlls)
	q.PPL = math.Exp(q.NLL)
	q.PPLStdErr = q.PPL * q.NLLStdErr
	nllBase, _ := meanStdErr(nllsBase)
	d := &Divergence{Base: baseName, PPLBase: math.Exp(nllBase), Top1Agreement: float64(agree) / n, RMSDeltaP: math.Sqrt(dp2 / n)}
	d.MeanKLD, d.MeanKLDStdErr = meanStdErr(kls)
	sorted := append([]float64(nil), kls...)
	sort.Float64s(sorted)
	d.P99KLD, d.MaxKLD = sorted[int(math.Ceil(0.99*n))-1], sorted[len(sorted)-1]
	d.PPLRatio = q.PPL / d.PPLBase
	q.Divergence = d
	return q, nil
}
