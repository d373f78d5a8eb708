package graph

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
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
		got, _ := tensors.CopyFlatData[float32](e.MustCall(args...)[0])
		if !slices.Equal(got, host) {
			t.Errorf("%s: in-graph dequantization differs from the host's", name)
		}
	}
	// Every scheme, each of its symmetries, at a group size that pads the rows.
	for _, sc := range arch.QuantSchemes() {
		for _, sym := range []bool{true, false} {
			if !sym && !sc.Asymmetric {
				continue
			}
			q := sc.Record(rows, cols, 32, sym, safetensors.F32)
			if !sc.Grouped {
				q = sc.Record(rows, cols, 0, sym, safetensors.F32)
			}
			st, err := quant.Encode(w, &q, nil, quant.Options{Search: true})
			if err != nil {
				t.Fatal(err)
			}
			specs := q.Parts("t", "w")
			parts := map[string]*tensors.Tensor{"codes": bytesTensor(specs[0], st.Codes), "scales": tensors.FromFlatDataAndDimensions(st.Scales, specs[1].Shape...)}
			if !q.Symmetric {
				parts["mins"] = tensors.FromFlatDataAndDimensions(st.Mins, specs[2].Shape...)
			}
			host, err := quant.Decode(&q, st)
			if err != nil {
				t.Fatal(err)
			}
			check(sc.Describe(q.GroupSize, q.Symmetric), &q, parts, host)
		}
	}
}

// bytesTensor is stored bytes as the tensor of spec's dtype (I8 or U8) and shape.
func bytesTensor(spec arch.TensorSpec, b []byte) *tensors.Tensor {
	if spec.DType == safetensors.I8 {
		v := make([]int8, len(b))
		for i, x := range b {
			v[i] = int8(x)
		}
		return tensors.FromFlatDataAndDimensions(v, spec.Shape...)
	}
	return tensors.FromFlatDataAndDimensions(append([]byte(nil), b...), spec.Shape...)
}

// The calibration's second moments (an Einsum of x with itself) are x^T x, as the host sums it,
// at a calibration-sized batch of rows.
func TestSecondMomentsEqualHost(t *testing.T) {
	const rows, cols = 2048, 96
	x := randFloats(rows*cols, 5)
	e := MustNewExec(testfix.Backend(t), secondMoments)
	got, _ := tensors.CopyFlatData[float32](e.MustCall(tensors.FromFlatDataAndDimensions(x, rows, cols))[0])
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
	out := e.MustCall(tensors.FromFlatDataAndDimensions(table, 7, 3), tensors.FromFlatDataAndDimensions(ids, 2, 3, 2))[0]
	got, _ := tensors.CopyFlatData[float32](out)
	var want []float32
	for _, id := range ids {
		want = append(want, table[id*3:id*3+3]...)
	}
	if !slices.Equal(out.Shape().Dimensions, []int{2, 3, 2, 3}) || !slices.Equal(got, want) {
		t.Errorf("take: shape %v, %v, want %v", out.Shape().Dimensions, got, want)
	}
}
