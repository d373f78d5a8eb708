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
// Every other tensor goes up as stored. (A tied table, also [in, out]: the Llama family's
// parity tests of its tied fixtures, on both backends.)
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
				wantInOut := map[string]bool{head: !c.int8, head + scheme.QWeightSuffix: c.int8 && onGo}
				stored := map[string]*formats.Tensor{}
				for _, st := range m.Tensors {
					stored[st.Key()] = st
				}
				for key, want := range wantInOut {
					if _, ok := stored[key]; ok && w.InOut[key] != want {
						t.Errorf("%s: [in, out] %v, want %v", key, w.InOut[key], want)
					}
				}
				for i, key := range w.Keys {
					st := stored[key]
					got := w.Tensors[i].Shape().Dimensions
					want := append([]int(nil), st.Shape...)
					if w.InOut[key] {
						want[0], want[1] = want[1], want[0]
					}
					if len(got) != len(want) || (len(got) == 2 && (got[0] != want[0] || got[1] != want[1])) {
						t.Fatalf("%s: on the device %v, want %v (stored %v)", key, got, want, st.Shape)
					}
					if !w.InOut[key] || st.DType != safetensors.F32 {
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
						if g, s := dev[rc[1]][rc[0]], f[rc[0]*cols+rc[1]]; g != s {
							t.Fatalf("%s: [%d, %d] on the device is %g, stored [%d, %d] %g", key, rc[1], rc[0], g, rc[0], rc[1], s)
						}
					}
				}
			})
		}
	})
}
