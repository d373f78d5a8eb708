package verify

import (
	"fmt"
	"math"
	"time"

	"github.com/btconvert/btconvert/graph"
)

// Quality is the perplexity of a text (and, against a base model, how far the distributions moved).
type Quality struct {
	PPL          float64 `json:"ppl"`
	NLL          float64 `json:"nll"`
	TokensScored int     `json:"tokens_scored"`
	TokensPerS   float64 `json:"tokens_per_s"`
	Window       int     `json:"window"`
	Text         string  `json:"text,omitempty"`
	*Divergence
}

// Divergence is how far a model's predictions moved from a base model's on the same windows (as
// llama-perplexity --kl-divergence reports it).
type Divergence struct {
	Base          string  `json:"base"`
	PPLBase       float64 `json:"ppl_base"`
	PPLRatio      float64 `json:"ppl_ratio"`
	MeanKLD       float64 `json:"mean_kld"`
	P99KLD        float64 `json:"p99_kld"`
	MaxKLD        float64 `json:"max_kld"`
	Top1Agreement float64 `json:"top1_agreement"`
	RMSDeltaP     float64 `json:"rms_delta_p"`
}

// Windows cuts tokens into non-overlapping windows of w (a trailing partial window is dropped).
func Windows(tokens []int32, w int) [][]int32 {
	var out [][]int32
	for i := 0; i+w <= len(tokens); i += w {
		out = append(out, tokens[i:i+w])
	}
	return out
}

// scoreWindows runs batches of windows through each model (same config) and calls visit for every
// scored position with each model's logits row and the true id. Block models score every token but
// the first block of a window; vanilla every token but the first.
func scoreWindows(models []*graph.Model, windows [][]int32, batch int, progress func(done int), visit func(rows [][]float32, target int32)) error {
	cfg := models[0].Config
	V := cfg.VocabSize
	w := len(windows[0])
	rows := make([][]float32, len(models))
	for start := 0; start < len(windows); start += batch {
		end := min(start+batch, len(windows))
		ids := make([]int32, 0, (end-start)*w)
		for _, win := range windows[start:end] {
			ids = append(ids, win...)
		}
		all := make([][]float32, len(models))
		for i, m := range models {
			logits, _, err := m.Score(ids, end-start, w)
			if err != nil {
				return err
			}
			all[i] = logits
		}
		for b := 0; b < end-start; b++ {
			win := windows[start+b]
			per, first, off := w-1, 1, b*w // vanilla: row k predicts token k+1
			if cfg.IsBlock() {
				L := cfg.BlockLength
				per, first = (w/L-1)*L, L
				off = b * per
			}
			for k := 0; k < per; k++ {
				for i := range models {
					rows[i] = all[i][(off+k)*V : (off+k+1)*V]
				}
				visit(rows, win[first+k])
			}
		}
		if progress != nil {
			progress(end - start)
		}
	}
	return nil
}

// logSoftmax returns log p for a row of logits, in float64.
func logSoftmax(row []float32, out []float64) []float64 {
	out = out[:0]
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x) - mx)
	}
	lse := mx + math.Log(sum)
	for _, x := range row {
		out = append(out, float64(x)-lse)
	}
	return out
}

// Perplexity scores tokens in windows of w, batch windows per executed graph.
func Perplexity(m *graph.Model, tokens []int32, w, batch int, progress func(done int)) (*Quality, error) {
	if err := checkWindow(m, tokens, w); err != nil {
		return nil, err
	}
	windows := Windows(tokens, w)
	var nll float64
	n := 0
	buf := make([]float64, 0, m.Config.VocabSize)
	start := time.Now()
	err := scoreWindows([]*graph.Model{m}, windows, batch, progress, func(rows [][]float32, target int32) {
		buf = logSoftmax(rows[0], buf)
		nll -= buf[target]
		n++
	})
	if err != nil {
		return nil, err
	}
	el := time.Since(start).Seconds()
	return &Quality{PPL: math.Exp(nll / float64(n)), NLL: nll / float64(n), TokensScored: n,
		TokensPerS: float64(len(windows)*w) / el, Window: w}, nil
}

func checkWindow(m *graph.Model, tokens []int32, w int) error {
	if L := m.Config.BlockLength; m.Config.IsBlock() && (w%L != 0 || w < 2*L) {
		return fmt.Errorf("--window %d must be a multiple of the block length %d and at least two blocks", w, L)
	}
	if w < 2 {
		return fmt.Errorf("--window %d is too small", w)
	}
	if len(tokens) < w {
		return fmt.Errorf("the text has %d tokens, fewer than one window of %d", len(tokens), w)
	}
	for _, t := range tokens {
		if t < 0 || int(t) >= m.Config.VocabSize {
			return fmt.Errorf("token id %d is outside the vocabulary (0..%d)", t, m.Config.VocabSize-1)
		}
	}
	return nil
}
