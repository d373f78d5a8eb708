package graph

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

func randFloats(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// Dequantizing inside the graph gives the weights the host dequantization gives (exactly on go), for
// every scheme: int8, int4 asymmetric and symmetric with padding, llama.cpp's blocks and k-quants.
func TestDequantizeInGraphEqualsHost(t *testing.T) {
	testfix.EachBackend(t, dequantizeInGraphEqualsHost)
}

func dequantizeInGraphEqualsHost(t *testing.T, be compute.Backend) {
	// Every scheme, each of its symmetries, at a group size that pads the rows (70 is not a whole
	// number of groups of 32: padded to 96); llama.cpp's types at whole blocks.
	for _, sc := range scheme.All() {
		for _, sym := range []bool{true, false} {
			if !sym && !sc.Asymmetric || sc.GGML != nil && sym == sc.Asymmetric {
				continue
			}
			rows, cols := 6, 70
			if sc.GGML != nil {
				cols = 3 * sc.GGML.Values
			}
			w := randFloats(rows*cols, 3)
			q := sc.Record(rows, cols, 32, sym, safetensors.F32)
			if !sc.Grouped {
				q = sc.Record(rows, cols, 0, sym, safetensors.F32)
			}
			host, keys, args, cfg := quantizedWeight(t, w, &q, quant.Options{Search: true})
			e := MustNewExec(be, func(in []*Node) *Node {
				b := newBuilder(in[0].Graph(), &Weights{Keys: keys}, cfg, dtypes.Float32, in, kindOf(be))
				return b.w("t", "w")
			})
			got, _ := tensors.CopyFlatData[float32](e.MustCall(args...)[0])
			// XLA may fuse a scale's product and a minimum's sum into one rounding: a last bit.
			if e := testfix.RelL2(got, host); !slices.Equal(got, host) && (kindOf(be) == goBackend || e > 1e-7) {
				t.Errorf("%s: in-graph dequantization differs from the host's (rel L2 %.3g)", sc.Describe(q.GroupSize, q.Symmetric), e)
			}
		}
	}
}

// quantizedWeight quantizes w as q says into a weight "t/w": its dequantized floats (as the host
// decodes them), its stored parts as keys and tensors, and a config recording it.
func quantizedWeight(t *testing.T, w []float32, q *scheme.Quantization, o quant.Options) (host []float32, keys []string, args []any, cfg *arch.Config) {
	t.Helper()
	st, err := quant.Encode(w, q, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if host, err = quant.Decode(q, st); err != nil {
		t.Fatal(err)
	}
	keys, args = partTensors(q, st)
	return host, keys, args, &arch.Config{Quantization: map[string]scheme.Quantization{"t/w": *q}}
}

// partTensors are the stored parts of a quantized "t/w" (scheme.Quantization.Parts) as keys and
// tensors, in that order.
func partTensors(q *scheme.Quantization, st quant.Stored) (keys []string, args []any) {
	for _, p := range arch.QuantParts(q, "t", "w") {
		keys = append(keys, p.Key())
		switch {
		case strings.HasSuffix(p.Name, scheme.QWeightSuffix):
			args = append(args, bytesTensor(p, st.Codes))
		case strings.HasSuffix(p.Name, scheme.ScalesSuffix):
			args = append(args, tensors.FromFlatDataAndDimensions(st.Scales, p.Shape...))
		default:
			args = append(args, tensors.FromFlatDataAndDimensions(st.Mins, p.Shape...))
		}
	}
	return keys, args
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
	xT := make([]float32, len(x))
	for m := range rows {
		for i := range cols {
			xT[i*rows+m] = x[m*cols+i]
		}
	}
	if e := testfix.RelL2(got, hostProductT(xT, cols, xT, cols, rows)); e > 1e-6 {
		t.Errorf("x^T x differs from the host's by rel L2 %.3g", e)
	}
}

// hostProductT is a [m, k] times b [n, k] transposed, summed in float64: [m, n].
func hostProductT(a []float32, m int, b []float32, n, k int) []float32 {
	out := make([]float32, m*n)
	for r := range m {
		for c := range n {
			var s float64
			for j := range k {
				s += float64(a[r*k+j]) * float64(b[c*k+j])
			}
			out[r*n+c] = float32(s)
		}
	}
	return out
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

// The quantized product (qlinear) equals x times the dequantized weight, on both backends, for
// every scheme, at a decode step's rows (XLA's int8 digits) and a prompt's (float32 past
// maxDigitRows), for rows with an outlier, a zero row and a row holding NaN; and the quantized
// lookup (qembed) gives the dequantized table's rows.
func TestQuantizedProductsEqualDequantized(t *testing.T) {
	const n = 40
	for _, be := range []struct {
		name string
		kind backendKind
	}{{"go", goBackend}, {"xla", xlaBackend}} {
		backend := testfix.Backend(t)
		if be.kind == xlaBackend {
			backend = testfix.XLA(t)
		}
		for _, sc := range scheme.All() {
			k := 70 // not a whole number of groups of 32: int4 pads it
			if sc.GGML != nil {
				k = 3 * sc.GGML.Values // llama.cpp's types take whole blocks only
			}
			w := randFloats(n*k, 8)
			q := sc.Record(n, k, 0, true, safetensors.F32)
			if sc.Grouped {
				q = sc.Record(n, k, 32, false, safetensors.F32)
			}
			host, keys, args, cfg := quantizedWeight(t, w, &q, quant.Options{})
			build := func(in []*Node) *builder {
				return newBuilder(in[0].Graph(), &Weights{Keys: keys}, cfg, dtypes.Float32, in[:len(keys)], be.kind)
			}
			name := be.name + " " + sc.Describe(q.GroupSize, q.Symmetric)
			for _, m := range []int{1, 16, maxDigitRows + 1} {
				x := randFloats(m*k, uint64(m))
				x[3] = 40 // an outlier: the digits of the small values must still be exact enough
				if m > 1 {
					clear(x[k : 2*k]) // a zero row
				}
				e := MustNewExec(backend, func(in []*Node) *Node {
					return build(in).qlinear(in[len(in)-1], "t/w", &q)
				})
				got, _ := tensors.CopyFlatData[float32](e.MustCall(append(args, tensors.FromFlatDataAndDimensions(x, m, k))...)[0])
				if e := testfix.RelL2(got, hostProductT(x, m, host, n, k)); e > 1e-6 {
					t.Errorf("%s, %d rows: the quantized product differs from x times the dequantized weight by rel L2 %.3g", name, m, e)
				}
				if m > 1 && slices.ContainsFunc(got[n:2*n], func(v float32) bool { return v != 0 }) {
					t.Errorf("%s, %d rows: a zero row's product is %v", name, m, got[n:2*n])
				}
				x[0] = float32(math.NaN())
				got, _ = tensors.CopyFlatData[float32](e.MustCall(append(args, tensors.FromFlatDataAndDimensions(x, m, k))...)[0])
				if !slices.ContainsFunc(got[:n], func(v float32) bool { return math.IsNaN(float64(v)) }) {
					t.Errorf("%s, %d rows: NaN in x vanished from the product: %v", name, m, got[:3])
				}
			}
			ids := []int32{39, 0, 7, 7, 12, 1}
			e := MustNewExec(backend, func(in []*Node) *Node {
				return build(in).qembed(in[len(in)-1], "t/w", &q)
			})
			out := e.MustCall(append(args, tensors.FromFlatDataAndDimensions(ids, 2, 3))...)[0]
			got, _ := tensors.CopyFlatData[float32](out)
			var want []float32
			for _, id := range ids {
				want = append(want, host[int(id)*k:(int(id)+1)*k]...)
			}
			// XLA may fuse scale*q + min into one multiply-add: the same value to a rounding.
			if e := testfix.RelL2(got, want); !slices.Equal(out.Shape().Dimensions, []int{2, 3, k}) || e > 1e-7 || be.kind == goBackend && !slices.Equal(got, want) {
				t.Errorf("%s: the quantized lookup differs from the dequantized table's rows by rel L2 %.3g (shape %v)", name, e, out.Shape().Dimensions)
			}
		}
	}
}
