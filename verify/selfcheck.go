package verify

import (
	"github.com/btconvert/btconvert/graph"
)

// SelfCheck is parity without a reference file: the logits the KV-cached generation path produced
// at each step against the full scoring forward over the same tokens.
type SelfCheck struct {
	CacheRelL2Err  float64 `json:"cache_rel_l2_err"`
	CacheMaxAbsErr float64 `json:"cache_max_abs_err"`
	Top1Agreement  float64 `json:"top1_agreement"`
	Prompts        int     `json:"prompts"`
	PromptLength   int     `json:"prompt_length"`
	Generated      int     `json:"generated_tokens"`
	Seed           uint64  `json:"seed"`
}

// RunSelfCheck generates greedily from seeded random prompts, keeping each step's logits, then
// scores prompt+generation in one forward and compares the logits at the generated positions.
func RunSelfCheck(m *graph.Engine, seed uint64) (*SelfCheck, error) {
	cfg := m.Config
	ids, B, T := RandomIDs(cfg, seed, 2, 4)
	prompts := rowsOf(ids, B, T)
	newTokens := T // as many generated as prompt tokens: several blocks, cache well used
	g, err := m.Generate(prompts, graph.GenerateOptions{MaxNewTokens: newTokens, KeepLogits: true})
	if err != nil {
		return nil, err
	}
	full := make([]int32, 0, B*(T+newTokens))
	for b := 0; b < B; b++ {
		full = append(full, prompts[b]...)
		full = append(full, g.Tokens[b]...)
	}
	scored, _, err := m.Score(full, B, T+newTokens)
	if err != nil {
		return nil, err
	}
	V := cfg.VocabSize
	// The scoring logits that predict the generated tokens (positions T..T+newTokens-1).
	sc := cfg.Scoring(T + newTokens)
	want := make([]float32, 0, len(g.Logits))
	for b := 0; b < B; b++ {
		seq := scored[b*sc.Stride*V : (b+1)*sc.Stride*V]
		want = append(want, seq[sc.Row(T)*V:sc.Row(T+newTokens)*V]...)
	}
	p := CompareLogits(g.Logits, want, V)
	return &SelfCheck{CacheRelL2Err: p.RelL2Err, CacheMaxAbsErr: p.MaxAbsErr, Top1Agreement: p.Top1Agreement,
		Prompts: B, PromptLength: T, Generated: newTokens, Seed: seed}, nil
}
