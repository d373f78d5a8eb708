package graph

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/errs"
)

// Sampling is part of the generation graph so a whole block is produced without a host round trip.
// Top-k and top-p find their cut-off by bisection on the value (a fixed number of masked
// reductions over the vocabulary), not by sorting: GoMLX v0.28.8's TopK and Sort exist on the
// go backend but take ~9 s and ~7 s on 16 rows of 50304 logits, the bisection ~0.3 s (measured on 2
// cores with the AVX512 kernels). Sampling itself is the
// Gumbel-max trick on uniform noise from GoMLX's in-graph generator, whose state is seeded from
// --seed and threaded through every step (reproducible).

// Sampling parameters, applied in the order of Hugging Face's generate: repetition penalty,
// temperature, top-k, top-p, min-p.
type Sampling struct {
	Temperature float64 `json:"temperature"` // 0: greedy
	TopK        int     `json:"top_k"`       // 0: off
	TopP        float64 `json:"top_p"`       // 1 or 0: off
	// MinP drops tokens less likely than MinP times the most likely one (0: off).
	MinP float64 `json:"min_p"`
	// RepeatPenalty divides the positive logits (multiplies the negative ones) of every id the row
	// has seen, prompt included, greedy decoding too (1 or 0: off).
	RepeatPenalty float64 `json:"repeat_penalty"`
	Seed          uint64  `json:"seed"`
}

// Validate refuses settings that are not finite numbers in range.
func (s Sampling) Validate() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(s.Temperature) || s.Temperature < 0:
		return errs.Option("Temperature", s.Temperature, "must be a finite number >= 0 (0: greedy)")
	case s.TopK < 0:
		return errs.Option("TopK", s.TopK, "must be >= 0 (0: off)")
	case !finite(s.TopP) || s.TopP < 0 || s.TopP > 1:
		return errs.Option("TopP", s.TopP, "must be between 0 and 1 (0 or 1: off)")
	case !finite(s.MinP) || s.MinP < 0 || s.MinP > 1:
		return errs.Option("MinP", s.MinP, "must be between 0 and 1 (0: off)")
	case !finite(s.RepeatPenalty) || s.RepeatPenalty < 0 || s.RepeatPenalty > maxRepeatPenalty:
		return errs.Option("RepeatPenalty", s.RepeatPenalty, "must be between 0 and %d (1 or 0: off)", maxRepeatPenalty)
	}
	return nil
}

// maxRepeatPenalty bounds the penalty well past any useful one (typical: 1.1 to 1.3).
const maxRepeatPenalty = 100

// Greedy reports whether this is argmax decoding.
func (s Sampling) Greedy() bool { return s.Temperature <= 0 }

// penalized reports whether the repetition penalty is on.
func (s Sampling) penalized() bool { return s.RepeatPenalty > 0 && s.RepeatPenalty != 1 }

type sampler struct{ Sampling }

// key names the settings that shape a generation graph; the seed is not one of them (it only
// initialises the generator state, a runtime input).
func (s sampler) key() string {
	return fmt.Sprintf("t=%g/k=%d/p=%g/minp=%g/rp=%g", s.Temperature, s.TopK, s.TopP, s.MinP, s.RepeatPenalty)
}

// genState is the sampler's state, threaded from graph to graph: the generator's, and (with a
// repetition penalty only) which ids each row has seen, float32 [B, V] of 0 and 1.
type genState struct{ rng, seen *Node }

// readState reads the state from a graph's arguments.
func (s sampler) readState(in []*Node) genState {
	st := genState{rng: in[0]}
	if s.penalized() {
		st.seen = in[1]
	}
	return st
}

// nodes lists the state as a graph's results.
func (st genState) nodes() []*Node {
	if st.seen == nil {
		return []*Node{st.rng}
	}
	return []*Node{st.rng, st.seen}
}

// bisectSteps halves the cut-off interval this many times (float32 precision is reached well
// before).
const bisectSteps = 40

// sample picks one token per row of logits [B, V] (float32) and returns the advanced state.
func (s sampler) sample(logits *Node, st genState) (*Node, genState) {
	x := logits
	if st.seen != nil {
		// Hugging Face's RepetitionPenaltyLogitsProcessor.
		pen := Where(LessThan(x, ZerosLike(x)), MulScalar(x, s.RepeatPenalty), MulScalar(x, 1/s.RepeatPenalty))
		x = Where(GreaterThan(st.seen, ZerosLike(st.seen)), pen, x)
	}
	var tok *Node
	if s.Greedy() {
		tok = ArgMax(x, -1, dtypes.Int32)
	} else {
		tok, st.rng = s.draw(x, st.rng)
	}
	if st.seen != nil {
		st.seen = Max(st.seen, OneHot(tok, x.Shape().Dim(-1), dtypes.Float32))
	}
	return tok, st
}

// draw samples from logits x [B, V] with the temperature and the cut-offs; rng is returned
// advanced.
func (s sampler) draw(x, rng *Node) (*Node, *Node) {
	x = MulScalar(x, 1/s.Temperature)
	neg := BroadcastToShape(Const(x.Graph(), float32(-1e30)), x.Shape())
	if s.TopK > 0 && s.TopK < x.Shape().Dim(-1) {
		// Largest t with count(x >= t) >= k: keeps the k best (and ties with the k-th).
		t := bisect(x, func(t *Node) *Node {
			return GreaterOrEqual(ReduceAndKeep(ConvertDType(GreaterOrEqual(x, t), dtypes.Float32), ReduceSum, -1), Scalar(x.Graph(), dtypes.Float32, float64(s.TopK)))
		})
		x = Where(GreaterOrEqual(x, t), x, neg)
	}
	if s.TopP > 0 && s.TopP < 1 {
		p := Softmax(x, -1)
		// Largest t with sum(p[p >= t]) >= top_p: the smallest set of top tokens reaching top_p.
		t := bisect(p, func(t *Node) *Node {
			mass := ReduceAndKeep(Where(GreaterOrEqual(p, t), p, ZerosLike(p)), ReduceSum, -1)
			return GreaterOrEqual(mass, Scalar(p.Graph(), dtypes.Float32, s.TopP))
		})
		x = Where(GreaterOrEqual(p, t), x, neg)
	}
	if s.MinP > 0 {
		p := Softmax(x, -1)
		x = Where(GreaterOrEqual(p, MulScalar(ReduceAndKeep(p, ReduceMax, -1), s.MinP)), x, neg)
	}
	rng, u := RandomUniform(rng, x.Shape())
	u = ClipScalar(u, 1e-12, 1-1e-7) // keep both logs finite
	gumbel := Neg(Log(Neg(Log(u))))
	return ArgMax(Add(x, gumbel), -1, dtypes.Int32), rng
}

// bisect finds per row of x [B, V] the largest threshold t in [min, max] with ok(t) true, where ok
// is monotone (true at min). Returns t [B, 1].
func bisect(x *Node, ok func(t *Node) *Node) *Node {
	lo := ReduceAndKeep(x, ReduceMin, -1)
	hi := ReduceAndKeep(x, ReduceMax, -1)
	for i := 0; i < bisectSteps; i++ {
		mid := MulScalar(Add(lo, hi), 0.5)
		good := ok(mid)
		lo = Where(good, mid, lo)
		hi = Where(good, hi, mid)
	}
	// hi itself may qualify (e.g. top-k 1 with a unique max).
	return Where(ok(hi), hi, lo)
}
