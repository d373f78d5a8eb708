package graph

import "github.com/btconvert/btconvert/arch"

// Estimate is a conservative estimate of the peak memory (bytes) of generating at batch B up to
// length tokens: the weights, the KV caches twice (a step reads the old ones and writes new ones),
// the prefill's activations and attention scores (float32, several live at once: the pure-Go
// backend materialises every intermediate), and the logits with the sampler's temporaries.
// elem is the size of the compute dtype. On the go backend the working memory is counted twice:
// the Go collector lets the heap grow to twice what is live before it runs (GOGC 100), and a
// decode step's old caches are garbage only after it. XLA's buffers live outside the Go heap and
// are freed as soon as they are dead (onXLA): there it is counted once. What XLA's compiler takes
// while it compiles, before the run allocates (up to about 360 MB measured on the fixtures), is
// not counted. (verify/bench's TestEstimateBoundsPeakRSS checks both against measured peaks.)
func Estimate(c *arch.Config, weightBytes int64, elem, B, length int, onXLA bool) int64 {
	working := func(w int64) int64 {
		if onXLA {
			return w
		}
		return 2 * w
	}
	const logitCopies = 8 // logits and the sampler's temporaries, per position emitted
	b, n := int64(B), int64(length)
	stack := func(d *arch.DecoderConfig, T, S int64) (cache, a int64) {
		cache = 2 * 2 * int64(d.Layers) * S * b * int64(d.KVHeadCount()*d.HeadDim) * int64(elem) // K and V, old and new
		if work := stackGraph(d.FamilyOf()).Work; work != nil {
			a = work(d, b, T, S)
		}
		return cache, a
	}
	V := int64(c.VocabSize)
	if !c.IsBlock() {
		cache, a := stack(c.Decoder, n, n)
		return weightBytes + working(cache+a+logitCopies*b*V*f32)
	}
	L := int64(c.BlockLength)
	blocks := n/L + 1
	cache, work := stack(c.BlockDecoder, blocks, blocks)
	r := int64(c.TokenDecoder.ExpansionRatio)
	classes.RLock()
	td := tokenDecoders[c.TokenDecoder.Class()]
	classes.RUnlock()
	if td.work != nil {
		work = max(work, td.work(c, b))
	} else {
		_, tok := stack(&c.TokenDecoder.DecoderConfig, r+L-1, r+L-1)
		work = max(work, tok)
	}
	classes.RLock()
	e := embedders[c.Embedder.Class()]
	classes.RUnlock()
	if e.work != nil {
		// The prefill embeds every prompt block at once, each its own sequence.
		work = max(work, e.work(c, b*blocks))
	}
	return weightBytes + working(cache+work+logitCopies*L*b*V*f32)
}

// What the estimate counts of a layer's working memory.
const (
	actPerFFN   = 4 // live [B, T, F] intermediates of the MLP (up with its GELU in place, down)
	scoreCopies = 4 // scores, scaled + masked, softmax, probabilities
	f32         = 4
)

// Activations is the working memory (bytes) of rows sequences of T new positions against S keys, perHidden
// intermediates as wide as the layer.
func Activations(perHidden int64, hidden, ffn, heads int, rows, T, S int64) int64 {
	return rows*T*(perHidden*int64(hidden)+actPerFFN*int64(ffn))*f32 + scoreCopies*rows*int64(heads)*T*S*f32
}

// MaxBatch is the largest batch whose estimated memory fits budget (0 if none): a binary search
// over powers of two, then between them.
func (e *Engine) MaxBatch(length int, budget int64) int {
	fits := func(B int) bool { return e.Estimate(B, length) <= budget }
	if !fits(1) {
		return 0
	}
	lo, hi := 1, 2
	for fits(hi) && hi < 1<<24 {
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// Estimate is the package function Estimate for this engine's model, weights and compute dtype.
func (e *Engine) Estimate(B, length int) int64 {
	return Estimate(e.Config, e.Weights.Bytes, e.DType.Size(), B, length, kindOf(e.Backend) == xlaBackend)
}
