package graph

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/formats/errs"
)

// Sampling is part of the generation graph so a whole block is produced without a host round trip.
// Top-k and top-p find their cut-off by bisection on the value (a fixed number of masked
// reductions over the vocabulary), not by sorting: GoMLX v0.28.8's TopK and Sort exist on the
// go backend but take ~9 s and ~7 s on 16 rows of 50304 logits, the bisection ~0.3 s (measured on 2
// cores with the AVX512 kernels). Sampling itself is the
// Gumbel-max trick on uniform noise from GoMLX's in-graph generator, whose state is seeded from
// --seed and threaded through every step (reproducible).

// Sampling parameters. Temperature 0 means greedy.
type Sampling struct {
	Temperature float64 `json:"temperature"`
	TopK        int     `json:"top_k"` // 0: off
	TopP        float64 `json:"top_p"` // 1 or 0: off
	Seed        uint64  `json:"seed"`
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
	}
	return nil
}

// Greedy reports whether this is argmax decoding.
func (s Sampling) Greedy() bool { return s.Temperature <= 0 }

type sampler struct{ Sampling }

// bisectSteps halves the cut-off interval this many times (float32 precision is reached well
// before).
const bisectSteps = 40

// sample picks one token per row of logits [B, V] (float32); rng is the generator state, returned
// advanced.
func (s sampler) sample(logits, rng *Node) (*Node, *Node) {
	if s.Greedy() {
		return ArgMax(logits, -1, dtypes.Int32), rng
	}
	x := MulScalar(logits, 1/s.Temperature)
	neg := Const(logits.Graph(), float32(-1e30))
	if s.TopK > 0 && s.TopK < logits.Shape().Dim(-1) {
		// Largest t with count(x >= t) >= k: keeps the k best (and ties with the k-th).
		t := bisect(x, func(t *Node) *Node {
			return GreaterOrEqual(ReduceAndKeep(ConvertDType(GreaterOrEqual(x, t), dtypes.Float32), ReduceSum, -1), Scalar(x.Graph(), dtypes.Float32, float64(s.TopK)))
		})
		x = Where(GreaterOrEqual(x, t), x, BroadcastToShape(neg, x.Shape()))
	}
	if s.TopP > 0 && s.TopP < 1 {
		p := Softmax(x, -1)
		// Largest t with sum(p[p >= t]) >= top_p: the smallest set of top tokens reaching top_p.
		t := bisect(p, func(t *Node) *Node {
			mass := ReduceAndKeep(Where(GreaterOrEqual(p, t), p, ZerosLike(p)), ReduceSum, -1)
			return GreaterOrEqual(mass, Scalar(p.Graph(), dtypes.Float32, s.TopP))
		})
		x = Where(GreaterOrEqual(p, t), x, BroadcastToShape(neg, x.Shape()))
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
