package verify

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph"
)

// Quality is the perplexity of a text (and, against a base model, how far the distributions moved).
type Quality struct {
	PPL float64 `json:"ppl"`
	// PPLStdErr is the standard error of the perplexity, from that of the mean NLL (as
	// llama-perplexity reports "ppl ± err": PPL x stderr(NLL)).
	PPLStdErr    float64 `json:"ppl_stderr"`
	NLL          float64 `json:"nll"`
	NLLStdErr    float64 `json:"nll_stderr"`
	TokensScored int     `json:"tokens_scored"`
	TokensPerS   float64 `json:"tokens_per_s"` // running the model(s), compilation not included
	CompileS     float64 `json:"compile_s"`    // compiling the scoring graphs
	Window       int     `json:"window"`
	Text         string  `json:"text,omitempty"`
	*Divergence
}

// Divergence is how far a model's predictions moved from a base model's on the same windows (as
// llama-perplexity --kl-divergence reports it).
type Divergence struct {
	Base string `json:"base"`
	// BaseFingerprint identifies the base's weights (formats.Model.Fingerprint): export accepts
	// a quantized model's recorded check only against the model it was quantized from.
	BaseFingerprint string  `json:"base_fingerprint,omitempty"`
	PPLBase         float64 `json:"ppl_base"`
	PPLRatio        float64 `json:"ppl_ratio"`
	MeanKLD         float64 `json:"mean_kld"`
	MeanKLDStdErr   float64 `json:"mean_kld_stderr"`
	P99KLD          float64 `json:"p99_kld"`
	MaxKLD          float64 `json:"max_kld"`
	Top1Agreement   float64 `json:"top1_agreement"`
	RMSDeltaP       float64 `json:"rms_delta_p"`
}

// Finite reports whether every measure is a finite number.
func (q *Quality) Finite() bool {
	v := []float64{q.PPL, q.NLL}
	if d := q.Divergence; d != nil {
		v = append(v, d.PPLBase, d.PPLRatio, d.MeanKLD, d.MaxKLD)
	}
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// scoreBatches runs the windows through m, batch windows per executed graph, and hands visit
// each batch's scores; with base, the base runs first over the same windows and m's scores carry
// the KL divergence from it (both engines on one backend: the base's logits stay there).
func scoreBatches(m, base *graph.Engine, windows [][]int32, batch int, t *timing, progress func(done int), visit func(sm, sb *graph.Scored)) error {
	w := len(windows[0])
	rows := m.Config.Scoring(w).Rows
	for start := 0; start < len(windows); start += batch {
		end := min(start+batch, len(windows))
		ids := make([]int32, 0, batch*w)
		for _, win := range windows[start:end] {
			ids = append(ids, win...)
		}
		// A last, smaller batch is padded with copies of its last window (their scores dropped):
		// one graph shape for the whole text, where a second would be compiled again (seconds
		// on XLA) for a few windows' work.
		n := end - start
		if start > 0 {
			for len(ids) < batch*w {
				ids = append(ids, windows[end-1]...)
			}
			n = batch
		}
		var sb *graph.Scored
		if base != nil {
			var err error
			if sb, err = base.ScoreTokens(ids, n, w, nil, true); err != nil {
				return err
			}
		}
		sm, err := m.ScoreTokens(ids, n, w, sb, false)
		sb.Release()
		if err != nil {
			return err
		}
		t.add(sm, sb, (end-start)*w) // the text's tokens: padding is overhead
		sm.Truncate((end - start) * rows)
		sb.Truncate((end - start) * rows)
		visit(sm, sb)
		if progress != nil {
			progress(end - start)
		}
	}
	return nil
}

// timing adds up the time scoring spent compiling and running, and the tokens it ran.
type timing struct {
	compile, run float64
	tokens       int
}

func (t *timing) add(sm, sb *graph.Scored, tokens int) {
	for _, s := range []*graph.Scored{sm, sb} {
		if s != nil {
			t.compile += s.CompileS
			t.run += s.RunS
		}
	}
	t.tokens += tokens
}

// fill sets q's rate (tokens over the time spent running: compiling is reported apart).
func (t *timing) fill(q *Quality) {
	q.CompileS = t.compile
	if t.run > 0 {
		q.TokensPerS = float64(t.tokens) / t.run
	}
}

// Scoring says how a text is scored: in windows of Window tokens, Batch windows per executed
// graph, at most Chunks windows (0: all; llama-perplexity --chunks). Progress, if set, is told
// the windows done and the perplexity so far after each batch.
type Scoring struct {
	Window, Batch, Chunks int
	Progress              func(done int, ppl float64)
}

// windows cuts tokens as s says.
func (s Scoring) windows(tokens []int32) [][]int32 {
	w := graph.Windows(tokens, s.Window)
	if s.Chunks > 0 && len(w) > s.Chunks {
		w = w[:s.Chunks]
	}
	return w
}

// progress is the callback of scoreBatches: s.Progress with the running perplexity of nlls.
func (s Scoring) progress(nlls *[]float64) func(done int) {
	if s.Progress == nil {
		return nil
	}
	return func(done int) {
		mean, _ := meanStdErr(*nlls)
		s.Progress(done, math.Exp(mean))
	}
}

// Perplexity scores tokens.
func Perplexity(m *graph.Engine, tokens []int32, s Scoring) (*Quality, error) {
	w, batch := s.Window, s.Batch
	if err := checkWindow(m, tokens, w, batch); err != nil {
		return nil, err
	}
	windows := s.windows(tokens)
	var nlls []float64
	var t timing
	err := scoreBatches(m, nil, windows, batch, &t, s.progress(&nlls), func(sm, _ *graph.Scored) {
		for _, lp := range sm.LogP {
			nlls = append(nlls, -lp)
		}
	})
	if err != nil {
		return nil, err
	}
	q := &Quality{TokensScored: len(nlls), Window: w}
	t.fill(q)
	q.NLL, q.NLLStdErr = meanStdErr(nlls)
	q.PPL = math.Exp(q.NLL)
	q.PPLStdErr = q.PPL * q.NLLStdErr
	return q, nil
}

// meanStdErr is the mean of v and its standard error (standard deviation / sqrt(n)).
func meanStdErr(v []float64) (mean, se float64) {
	mean, sd := stat.MeanStdDev(v, nil)
	if len(v) < 2 {
		return mean, 0
	}
	return mean, sd / math.Sqrt(float64(len(v)))
}

func checkWindow(m *graph.Engine, tokens []int32, w, batch int) error {
	if L := m.Config.BlockLength; m.Config.IsBlock() && (w%L != 0 || w < 2*L) {
		return errs.Option("Window", w, "must be a multiple of the block length %d and at least two blocks", L)
	}
	if w < 2 {
		return errs.Option("Window", w, "is too small (at least 2)")
	}
	if batch < 1 {
		return errs.Option("WindowBatch", batch, "must be at least 1")
	}
	if len(tokens) < w {
		return &errs.InputError{Msg: fmt.Sprintf("the text has %d tokens, fewer than one window of %d", len(tokens), w)}
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= m.Config.VocabSize {
			return &errs.InputError{Msg: fmt.Sprintf("token id %d at position %d is outside the vocabulary 0..%d", t, i, m.Config.VocabSize-1)}
		}
	}
	return nil
}
