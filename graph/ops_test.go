package graph

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
)

func randFloats(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// Dequantizing inside the graph gives exactly the weights the host dequantization gives, for int8,
// int4 asymmetric and symmetric, with padding.
func TestDequantizeInGraphEqualsHost(t *testing.T) {
	be := testfix.Backend(t)
	rows, cols := 6, 70 // 70 is not a whole number of groups of 32: padded to 96
	w := randFloats(rows*cols, 3)
	check := func(name string, q *arch.Quantization, parts map[string]*tensors.Tensor, host []float32) {
		keys := []string{"t/w" + arch.QWeightSuffix, "t/w" + arch.ScalesSuffix}
		if parts["mins"] != nil {
			keys = append(keys, "t/w"+arch.MinsSuffix)
		}
		cfg := &arch.Config{Quantization: map[string]arch.Quantization{"t/w": *q}}
		e := MustNewExec(be, func(in []*Node) *Node {
			b := newBuilder(in[0].Graph(), &Weights{Keys: keys}, cfg, dtypes.Float32, in, goBackend)
			return b.w("t", "w")
		})
		args := []any{parts["codes"], parts["scales"]}
		if parts["mins"] != nil {
			args = append(args, parts["mins"])
		}
		got, _ := tensors.CopyFlatData[float32](e.MustExec(args...)[0])
		if !slices.Equal(got, host) {
			t.Errorf("%s: in-graph dequantization differs from the host's", name)
		}
	}
	q8 := quant.QuantizeInt8(w, rows, cols, quant.Options{Search: true})
	codes := make([]int8, len(q8.Codes))
	copy(codes, q8.Codes)
	check("int8", &arch.Quantization{Type: arch.Int8, Symmetric: true, Rows: rows, Cols: cols}, map[string]*tensors.Tensor{
		"codes": tensors.FromFlatDataAndDimensions(codes, rows, cols), "scales": tensors.FromFlatDataAndDimensions(q8.Scales, rows)}, q8.Dequantize(rows, cols))
	for _, sym := range []bool{false, true} {
		q4 := quant.QuantizeInt4(w, rows, cols, quant.Options{GroupSize: 32, Symmetric: sym, Search: true})
		g := q4.PaddedCols / 32
		parts := map[string]*tensors.Tensor{"codes": tensors.FromFlatDataAndDimensions(q4.Packed, rows, q4.PaddedCols/2),
			"scales": tensors.FromFlatDataAndDimensions(q4.Scales, rows, g)}
		if !sym {
			parts["mins"] = tensors.FromFlatDataAndDimensions(q4.Mins, rows, g)
		}
		check(map[bool]string{true: "int4 symmetric", false: "int4"}[sym], &arch.Quantization{Type: arch.Int4, GroupSize: 32, Symmetric: sym,
			Rows: rows, Cols: cols, PaddedCols: q4.PaddedCols}, parts, q4.Dequantize(rows, cols, 32, sym))
	}
}

// The calibration's second moments (an Einsum of x with itself) are x^T x, as the host sums it,
// at a calibration-sized batch of rows.
func TestSecondMomentsEqualHost(t *testing.T) {
	const rows, cols = 2048, 96
	x := randFloats(rows*cols, 5)
	e := MustNewExec(testfix.Backend(t), secondMoments)
	got, _ := tensors.CopyFlatData[float32](e.MustExec(tensors.FromFlatDataAndDimensions(x, rows, cols))[0])
	want := make([]float32, cols*cols)
	for i := range cols {
		for j := range cols {
			var s float64
			for m := range rows {
				s += float64(x[m*cols+i]) * float64(x[m*cols+j])
			}
			want[i*cols+j] = float32(s)
		}
	}
	if e := testfix.RelL2(got, want); e > 1e-6 {
		t.Errorf("x^T x differs from the host's by rel L2 %.3g", e)
	}
}

// take gathers the rows of ids of any rank, in order.
func TestTakeRows(t *testing.T) {
	table := randFloats(7*3, 6)
	ids := []int32{6, 0, 2, 2, 5, 1, 3, 4, 0, 1, 1, 6}
	e := MustNewExec(testfix.Backend(t), func(tab, ids *Node) *Node { return take(tab, ids) })
	out := e.MustExec(tensors.FromFlatDataAndDimensions(table, 7, 3), tensors.FromFlatDataAndDimensions(ids, 2, 3, 2))[0]
	got, _ := tensors.CopyFlatData[float32](out)
	var want []float32
	for _, id := range ids {
		want = append(want, table[id*3:id*3+3]...)
	}
	if !slices.Equal(out.Shape().Dimensions, []int{2, 3, 2, 3}) || !slices.Equal(got, want) {
		t.Errorf("take: shape %v, %v, want %v", out.Shape().Dimensions, got, want)
	}
}
