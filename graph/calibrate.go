package graph

import (
	"fmt"
	"math"
	"sort"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
)

// InputStats are what the input of each Linear layer looked like over some text, by weight key
// ("component/name"): what the quantizer weighs its errors by.
type InputStats struct {
	MeanSquare   map[string][]float32 // per input column
	SecondMoment map[string][]float64 // E[x x^T], row-major [in, in]; nil unless asked for
}

// Calibrate runs the scoring forward over windows (all of one length), batch windows per executed
// graph, watching the input of every linear layer, and returns what each saw: the mean square of
// each input column and, with full, the whole second moment E[x x^T] (GPTQ needs it).
func (e *Engine) Calibrate(windows [][]int32, batch int, full bool, progress func(done int)) (*InputStats, error) {
	if len(windows) == 0 {
		return nil, fmt.Errorf("calibrate: no windows")
	}
	keys := linearKeys(e.Config)
	x, err := e.exec(fmt.Sprintf("calibrate-full=%v", full), func(b *builder, in []*Node) []*Node {
		stats := map[string][2]*Node{} // key -> (sum of x^2 or x x^T, rows)
		b.observe = func(key string, x *Node) {
			var sq *Node
			if full {
				sq = secondMoments(x)
			} else {
				sq = ReduceSum(Square(ConvertDType(x, dtypes.Float32)), 0)
			}
			rows := Scalar(b.g, dtypes.Float32, float64(x.Shape().Dim(0)))
			if prev, ok := stats[key]; ok {
				sq, rows = Add(prev[0], sq), Add(prev[1], rows)
			}
			stats[key] = [2]*Node{sq, rows}
		}
		if b.cfg.IsBlock() {
			b.scoreBlock(in[0])
		} else {
			b.scoreVanilla(in[0])
		}
		var out []*Node
		for _, k := range keys {
			s, ok := stats[k]
			if !ok {
				panic("calibration: the forward did not use " + k)
			}
			out = append(out, s[0], s[1])
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	sums, rows := map[string][]float64{}, map[string]float64{}
	T := len(windows[0])
	for start := 0; start < len(windows); start += batch {
		end := min(start+batch, len(windows))
		flat := make([]int32, 0, (end-start)*T)
		for _, w := range windows[start:end] {
			flat = append(flat, w...)
		}
		if err := e.checkIDs(flat); err != nil {
			return nil, err
		}
		out, err := e.run(x, tensors.FromFlatDataAndDimensions(flat, end-start, T))
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			err := tensors.ConstFlatData(out[2*i], func(sq []float32) {
				acc := sums[k]
				if acc == nil {
					acc = make([]float64, len(sq))
					sums[k] = acc
				}
				for j, v := range sq {
					acc[j] += float64(v)
				}
			})
			if err != nil {
				freeAll(out)
				return nil, err
			}
			n, _ := tensors.CopyFlatData[float32](out[2*i+1])
			rows[k] += float64(n[0])
			out[2*i].FinalizeAll() // the second moments are large: let each go once added
		}
		freeAll(out)
		if progress != nil {
			progress(end - start)
		}
	}
	cal := &InputStats{MeanSquare: map[string][]float32{}}
	if full {
		cal.SecondMoment = map[string][]float64{}
	}
	for k, s := range sums {
		n := len(s)
		for j := range s { // the sums become means in place: no second copy of every matrix
			s[j] /= rows[k]
		}
		if full {
			n = int(math.Sqrt(float64(len(s))))
			cal.SecondMoment[k] = s
		}
		v := make([]float32, n)
		for j := range v {
			if full {
				v[j] = float32(s[j*n+j])
			} else {
				v[j] = float32(s[j])
			}
		}
		cal.MeanSquare[k] = v
	}
	return cal, nil
}

// secondMoments is x^T x in float32 for x [rows, in]: the sums of x_i x_j over the rows.
func secondMoments(x *Node) *Node {
	x32 := ConvertDType(x, dtypes.Float32)
	return Einsum("mi,mj->ij", x32, x32)
}

// linearKeys are the model's Linear weights, sorted: every one of them is used by the scoring
// forward, so the calibration graph returns statistics for each, in this order.
func linearKeys(c *arch.Config) []string {
	var keys []string
	for _, s := range arch.Tensors(c) {
		if s.Role == arch.RoleLinear {
			keys = append(keys, s.Key())
		}
	}
	sort.Strings(keys)
	return keys
}
