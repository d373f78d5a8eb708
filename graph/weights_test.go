package graph

import (
	"fmt"
	"testing"

	"github.com/gomlx/compute"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Float Linear weights go up [in, out] on both backends: the layout both multiply faster
// (BenchmarkMatmulRate). int8 codes do on go only: XLA's integer product reads them [out, in].
// Every other tensor goes up as stored, and every value stays where it was. (A tied table, also
// [in, out]: the Llama family's parity tests of its tied fixtures, on both backends.)
func TestWeightsLayout(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		onGo := kindOf(b) == goBackend
		for _, c := range []struct {
			name string
			int8 bool
		}{{"bt-tiny", false}, {"pythia-tiny", false}, {"pythia-tiny", true}} {
			t.Run(fmt.Sprintf("%s/int8=%v", c.name, c.int8), func(t *testing.T) {
				m := testfix.Open(t, testfix.Path(c.name))
				if c.int8 {
					plan, err := quant.MakePlan(m, quant.Settings{Type: quant.Int8})
					if err != nil {
						t.Fatal(err)
					}
					m = quant.Apply(m, plan, nil)
				}
				w, err := LoadWeights(m, b)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Free()
				component, d := arch.Decoder, m.Config.Decoder
				if m.Config.IsBlock() {
					component, d = arch.TokenDecoder, &m.Config.TokenDecoder.DecoderConfig
				}
				head := component + "/" + d.HeadName() + ".weight"
				// Every 2-D Linear weight: f32 ones [in, out] on both backends, int8 codes on go only.
				want := map[string]bool{}
				for _, sp := range arch.Tensors(m.Config) {
					if sp.Role != arch.RoleLinear || len(sp.Shape) != 2 {
						continue
					}
					switch q := m.Config.QuantOf(sp.Component, sp.Name); {
					case q == nil:
						want[sp.Key()] = true
					case q.Scheme().Bits == 8 && !q.Scheme().Grouped:
						want[sp.Key()+scheme.QWeightSuffix] = onGo
					}
				}
				if !c.int8 && !want[head] || c.int8 && want[head+scheme.QWeightSuffix] != onGo || len(want) < 8 {
					t.Fatalf("the specs name %d Linear weights, head %s: %v", len(want), head, want)
				}
				stored := map[string]*formats.Tensor{}
				for _, st := range m.Tensors {
					stored[st.Key()] = st
				}
				for _, key := range w.Keys {
					if w.InOut[key] != want[key] {
						t.Errorf("%s: [in, out] %v, want %v", key, w.InOut[key], want[key])
					}
				}
				for i, key := range w.Keys {
					st := stored[key]
					got := w.Tensors[i].Shape().Dimensions
					shape := append([]int(nil), st.Shape...)
					if w.InOut[key] {
						shape[0], shape[1] = shape[1], shape[0]
					}
					if len(got) != len(shape) || (len(got) == 2 && (got[0] != shape[0] || got[1] != shape[1])) {
						t.Fatalf("%s: on the device %v, want %v (stored %v)", key, got, shape, st.Shape)
					}
					if len(st.Shape) != 2 || st.DType != safetensors.F32 {
						continue
					}
					raw, err := st.Raw()
					if err != nil {
						t.Fatal(err)
					}
					f, err := safetensors.ToFloat32(st.DType, raw)
					if err != nil {
						t.Fatal(err)
					}
					dev := w.Tensors[i].Value().([][]float32)
					rows, cols := st.Shape[0], st.Shape[1]
					for _, rc := range [][2]int{{0, 0}, {rows - 1, 0}, {0, cols - 1}, {rows / 2, cols / 3}, {rows - 1, cols - 1}} {
						row, col := rc[0], rc[1]
						var g float32
						if w.InOut[key] {
							g = dev[col][row]
						} else {
							g = dev[row][col]
						}
						if g != f[row*cols+col] {
							t.Fatalf("%s: stored [%d, %d] is %g, on the device (as [in, out]: %v) %g", key, row, col, f[row*cols+col], w.InOut[key], g)
						}
					}
				}
			})
		}
	})
}

// transpose, tile by tile and in bands over the cores, puts every value where the plain double loop
// does: shapes with partial tiles, one row or column, and large enough to split.
func TestTranspose(t *testing.T) {
	for _, s := range [][2]int{{1, 1}, {1, 70}, {70, 1}, {33, 65}, {64, 32}, {1025, 1031}, {4099, 257}} {
		rows, cols := s[0], s[1]
		v := make([]int32, rows*cols)
		for i := range v {
			v[i] = int32(i)
		}
		got := transpose(v, rows, cols)
		for r := range rows {
			for c := range cols {
				if got[c*rows+r] != v[r*cols+c] {
					t.Fatalf("%dx%d: [%d, %d] is %d, want %d", rows, cols, c, r, got[c*rows+r], v[r*cols+c])
				}
			}
		}
	}
}
