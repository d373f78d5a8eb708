package graph

import (
	"fmt"
	"math"
	"sort"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Calibration accumulates, for every linear weight, the mean square of each input column over the
// text it saw (the llama.cpp imatrix idea): the importance of that column's quantization error.
// With Full it accumulates the whole second moment E[x x^T] (for GPTQ).
type Calibration struct {
	Full bool
	sums map[string][]float64
	rows map[string]float64
}

// NewCalibration starts an empty accumulation.
func NewCalibration(full bool) *Calibration {
	return &Calibration{Full: full, sums: map[string][]float64{}, rows: map[string]float64{}}
}

// Calibrate runs the scoring forward over ids [B, T] and accumulates the inputs of every linear layer.
func (m *Model) Calibrate(c *Calibration, ids []int32, B, T int) error {
	if err := m.checkIDs(ids); err != nil {
		return err
	}
	e, err := m.exec(fmt.Sprintf("calibrate-full=%v", c.Full), func(b *builder, in []*Node) []*Node {
		b.collect = map[string][2]*Node{}
		b.collectFull = c.Full
		if b.cfg.IsBlock() {
			b.scoreBlock(in[0])
		} else {
			b.scoreVanilla(in[0])
		}
		keys := make([]string, 0, len(b.collect))
		for k := range b.collect {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		m.calibKeys = keys // the same for every shape
		var out []*Node
		for _, k := range keys {
			out = append(out, b.collect[k][0], b.collect[k][1])
		}
		return out
	})
	if err != nil {
		return err
	}
	out, err := m.run(e, tensors.FromFlatDataAndDimensions(ids, B, T))
	if err != nil {
		return err
	}
	defer freeAll(out)
	keys := m.calibKeys
	if len(out) != 2*len(keys) {
		return fmt.Errorf("calibration: %d outputs for %d layers", len(out), len(keys))
	}
	for i, k := range keys {
		sq, err := tensors.CopyFlatData[float32](out[2*i])
		if err != nil {
			return err
		}
		n, _ := tensors.CopyFlatData[float32](out[2*i+1])
		acc := c.sums[k]
		if acc == nil {
			acc = make([]float64, len(sq))
		}
		for j, v := range sq {
			acc[j] += float64(v)
		}
		c.sums[k] = acc
		c.rows[k] += float64(n[0])
	}
	return nil
}

// Importance returns the mean square of each input column per weight key.
func (c *Calibration) Importance() map[string][]float32 {
	out := map[string][]float32{}
	for k, s := range c.sums {
		n := len(s)
		if c.Full {
			n = int(math.Sqrt(float64(len(s))))
		}
		v := make([]float32, n)
		for j := range v {
			if c.Full {
				v[j] = float32(s[j*n+j] / c.rows[k])
			} else {
				v[j] = float32(s[j] / c.rows[k])
			}
		}
		out[k] = v
	}
	return out
}

// Hessians returns E[x x^T] (row-major [in, in]) per weight key; nil unless Full.
func (c *Calibration) Hessians() map[string][]float64 {
	if !c.Full {
		return nil
	}
	out := map[string][]float64{}
	for k, s := range c.sums {
		h := make([]float64, len(s))
		for j := range s {
			h[j] = s[j] / c.rows[k]
		}
		out[k] = h
	}
	return out
}
