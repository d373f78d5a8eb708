package graph

import (
	"fmt"
	"math"
	"time"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// Scored is one model's scoring of a batch of windows: per scored position (arch.Config.Scoring),
// row-major [B, Rows]. The log-softmax and every reduction over the vocabulary run on the
// backend: the logits ([B, Rows, V], hundreds of megabytes for a batch over a 50k vocabulary)
// never reach the host, and the host only combines a few numbers per position in float64.
type Scored struct {
	LogP   []float64 // log p of the true next token
	LSE    []float64 // log sum_j exp(logit_j): the softmax's normaliser
	Argmax []int32   // the most likely token
	// KL is KL(base || this model) per position, when scored against a base's Scored.
	KL []float64
	// CompileS is the time this call spent compiling its graph (0 once compiled); RunS the time
	// it spent running it.
	CompileS, RunS float64

	logits *tensors.Tensor // kept on the backend for a second model's KL (see Release)
}

// Release frees the logits a Scored kept on the backend.
func (s *Scored) Release() {
	if s != nil && s.logits != nil {
		s.logits.FinalizeAll()
		s.logits = nil
	}
}

// Truncate keeps the first n positions (the scores of padding dropped).
func (s *Scored) Truncate(n int) {
	if s == nil {
		return
	}
	s.LogP, s.LSE, s.Argmax = s.LogP[:n], s.LSE[:n], s.Argmax[:n]
	if s.KL != nil {
		s.KL = s.KL[:n]
	}
}

// ScoreTokens scores B windows of T ids (row-major [B, T]). With base (another model's Scored of
// the same windows, made with keep) it also measures KL(base || this model). With keep, the
// logits stay on the backend for a later call's base; Release frees them.
func (e *Engine) ScoreTokens(ids []int32, B, T int, base *Scored, keep bool) (*Scored, error) {
	if err := e.checkScore(ids, B, T); err != nil {
		return nil, err
	}
	sc := e.Config.Scoring(T)
	V := e.Config.VocabSize
	if base != nil {
		if base.logits == nil {
			return nil, fmt.Errorf("score: the base's logits were not kept")
		}
		if d := base.logits.Shape().Dimensions; len(d) != 3 || d[0] != B || d[1] != sc.Rows || d[2] != V {
			return nil, fmt.Errorf("score: base logits of shape %v for batch %d x %d rows x %d", d, B, sc.Rows, V)
		}
	}
	key := fmt.Sprintf("score-tokens/base=%t/keep=%t", base != nil, keep)
	x, err := e.exec(key, func(b *builder, in []*Node) []*Node {
		// Shapes from the inputs, not the call: one executor serves every batch size.
		ids := in[0]
		B, T := ids.Shape().Dim(0), ids.Shape().Dim(1)
		sc := b.cfg.Scoring(T)
		var logits *Node
		if b.cfg.IsBlock() {
			logits = b.scoreBlock(ids)
		} else {
			logits = Slice(b.scoreVanilla(ids), AxisRange(), AxisRange(0, sc.Rows))
		}
		z := ConvertDType(Reshape(logits, B*sc.Rows, V), dtypes.Float32)
		targets := Reshape(Slice(ids, AxisRange(), AxisRange(sc.First, sc.First+sc.Rows)), B*sc.Rows)
		am := ArgMax(z, -1, dtypes.Int32)
		// The softmax is the backend's fused one where it has one (on the go backend it takes
		// its exponentials without math.Exp). Its largest probability sits at the argmax and is
		// 1 / sum_j exp(z_j - max z); the sum of the probabilities corrects the rounding of the
		// softmax's own sum (see lse below).
		p := Softmax(z, -1)
		out := []*Node{pickRow(z, targets), pickRow(z, am), pickRow(p, am), ReduceSum(p, -1), am}
		if base != nil {
			zb := Reshape(in[1], B*sc.Rows, V)
			// sum_j pb_j (zb_j - z_j): KL's part that needs both rows; the normalisers are
			// combined on the host.
			out = append(out, ReduceSum(Mul(Softmax(zb, -1), Sub(zb, z)), -1))
		}
		if keep {
			out = append(out, Reshape(z, B, sc.Rows, V))
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	args := []any{tensors.FromFlatDataAndDimensions(ids, B, T)}
	if base != nil {
		args = append(args, base.logits)
	}
	ts := []*tensors.Tensor{args[0].(*tensors.Tensor)}
	if base != nil {
		ts = append(ts, base.logits)
	}
	compile, err := e.compile(x, ts...)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := e.run(x, args...)
	if err != nil {
		return nil, err
	}
	s := &Scored{CompileS: compile.Seconds()}
	if keep {
		s.logits, out = out[len(out)-1], out[:len(out)-1]
	}
	defer freeAll(out)
	var f [6][]float32
	for i := range 4 {
		if f[i], err = tensors.CopyFlatData[float32](out[i]); err != nil {
			s.Release()
			return nil, err
		}
	}
	if s.Argmax, err = tensors.CopyFlatData[int32](out[4]); err == nil && base != nil {
		f[5], err = tensors.CopyFlatData[float32](out[5])
	}
	if err != nil {
		s.Release()
		return nil, err
	}
	s.RunS = time.Since(start).Seconds()
	n := B * sc.Rows
	s.LogP, s.LSE = make([]float64, n), make([]float64, n)
	for i := range n {
		// log sum exp = max z - log p_max + log sum p, in float64 from the backend's float32s.
		s.LSE[i] = float64(f[1][i]) - math.Log(float64(f[2][i])) + math.Log(float64(f[3][i]))
		s.LogP[i] = float64(f[0][i]) - s.LSE[i]
	}
	if base != nil {
		s.KL = make([]float64, n)
		for i := range n {
			// KL(b || m) = sum_j pb_j (zb_j - z_j) - lse_b + lse_m.
			s.KL[i] = float64(f[5][i]) - base.LSE[i] + s.LSE[i]
		}
	}
	return s, nil
}

// pickRow is x[i, idx[i]] for x [N, V] and idx int32 [N].
func pickRow(x, idx *Node) *Node {
	rows := Iota(x.Graph(), idx.Shape(), 0)
	return Gather(x, Concatenate([]*Node{InsertAxes(rows, -1), InsertAxes(idx, -1)}, -1))
}
