package verify

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/btconvert/btconvert/graph"
)

// CompareQuality runs m and base over the same windows of tokens and reports m's perplexity and
// its divergence from base: KL(base || m) per token (mean, p99, max), argmax agreement, and the
// RMS change of the probability of the true token.
func CompareQuality(m, base *graph.Model, baseName string, tokens []int32, w, batch int, progress func(done int)) (*Quality, error) {
	if err := checkWindow(m, tokens, w); err != nil {
		return nil, err
	}
	if m.Config.Kind != base.Config.Kind || m.Config.VocabSize != base.Config.VocabSize || m.Config.BlockLength != base.Config.BlockLength {
		return nil, fmt.Errorf("--against: the base model has another architecture (%s vs %s)", base.Config.Describe(), m.Config.Describe())
	}
	windows := Windows(tokens, w)
	V := m.Config.VocabSize
	lq, lb := make([]float64, 0, V), make([]float64, 0, V)
	var nll, nllBase, dp2 float64
	var kls []float64
	agree := 0
	start := time.Now()
	err := scoreWindows([]*graph.Model{m, base}, windows, batch, progress, func(rows [][]float32, target int32) {
		lq, lb = logSoftmax(rows[0], lq), logSoftmax(rows[1], lb)
		nll -= lq[target]
		nllBase -= lb[target]
		var kl float64
		for j := range lb {
			if pb := math.Exp(lb[j]); pb > 0 {
				kl += pb * (lb[j] - lq[j])
			}
		}
		kls = append(kls, math.Max(kl, 0))
		if argmax(rows[0]) == argmax(rows[1]) {
			agree++
		}
		d := math.Exp(lq[target]) - math.Exp(lb[target])
		dp2 += d * d
	})
	if err != nil {
		return nil, err
	}
	n := float64(len(kls))
	var sum float64
	for _, k := range kls {
		sum += k
	}
	sorted := append([]float64(nil), kls...)
	sort.Float64s(sorted)
	q := &Quality{PPL: math.Exp(nll / n), NLL: nll / n, TokensScored: len(kls), Window: w,
		TokensPerS: float64(len(windows)*w) / time.Since(start).Seconds(),
		Divergence: &Divergence{Base: baseName, PPLBase: math.Exp(nllBase / n), MeanKLD: sum / n,
			P99KLD: sorted[int(math.Ceil(0.99*n))-1], MaxKLD: sorted[len(sorted)-1],
			Top1Agreement: float64(agree) / n, RMSDeltaP: math.Sqrt(dp2 / n)}}
	q.PPLRatio = q.PPL / q.PPLBase
	return q, nil
}
