package quant

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant/scheme"
)

// q8_0, q4_0 and q4_1 give, byte for byte, the blocks llama.cpp's own quantizers give for the same
// weight (fixtures/ggml/golden.safetensors, made by gguf-py: fixtures/tools/make_ggml_golden.py),
// edge cases included (a zero block, ties of the largest magnitude, half steps, tiny and large
// values); and decoding them gives what llama.cpp's dequantizers give: d*q (q4_0: d*(q-8), q4_1:
// d*q+m) from the f16 scale.
func TestGGMLBlocksAsLlamaCpp(t *testing.T) {
	c, err := safetensors.OpenCheckpoint(filepath.Join(testfix.Dir(), "ggml", "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.Raw("weight")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := safetensors.ToFloat32(safetensors.F32, raw)
	for _, typ := range []scheme.Type{scheme.Q8_0, scheme.Q4_0, scheme.Q4_1} {
		sc, _ := scheme.Of(typ)
		q, want := goldenBlocks(t, c, typ, w)
		got, err := Decode(&q, Stored{Codes: want})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			b := want[i/32*sc.GGML.Bytes:][:sc.GGML.Bytes]
			d := getF16(b)
			j := i % 32
			var v float32
			switch typ {
			case scheme.Q8_0:
				v = d * float32(int8(b[2+j]))
			case scheme.Q4_0:
				v = d * float32(int(b[2+j%16]>>(4*(j/16))&15)-8)
			case scheme.Q4_1:
				v = d*float32(b[4+j%16]>>(4*(j/16))&15) + getF16(b[2:])
			}
			if got[i] != v {
				t.Fatalf("%s: weight %d decodes to %v, want %v", typ, i, got[i], v)
			}
		}
		rel := testfix.RelL2(got, w)
		t.Logf("%s: %.2f bits per weight, rel L2 %.4f", typ, float64(8*len(want))/float64(len(w)), rel)
		if bound := map[scheme.Type]float64{scheme.Q8_0: 0.01, scheme.Q4_0: 0.2, scheme.Q4_1: 0.2}[typ]; rel > bound {
			t.Errorf("%s: rel L2 %.3g from the weight, past %v", typ, rel, bound)
		}
	}
}

// A row that is not a whole number of llama.cpp's blocks is refused, naming the tensor's width.
func TestGGMLNeedsWholeBlocks(t *testing.T) {
	sc, _ := scheme.Of(scheme.Q4_0)
	q := sc.Record(4, 70, 0, true, safetensors.F32)
	err := q.Validate([]int{4, 70})
	if want := "q4_0 needs rows of whole blocks of 32 weights; a row here has 70"; fmt.Sprint(err) != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// q4_k and q6_k give, byte for byte, the super-blocks llama.cpp's reference quantizers give for the
// same weight (fixtures/ggml/golden_k.safetensors, made by ggml-quants.c itself:
// fixtures/tools/make_ggml_k_golden.py), edge cases included (a zero block, a zero sub-block and
// one whose 6-bit scale rounds to 0, ties, half steps, tiny, constant and large values); and
// decoding them gives exactly what llama.cpp's dequantizers give.
func TestKQuantsAsLlamaCpp(t *testing.T) {
	c, err := safetensors.OpenCheckpoint(filepath.Join(testfix.Dir(), "ggml", "golden_k.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f32 := func(name string) []float32 {
		raw, err := c.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := safetensors.ToFloat32(safetensors.F32, raw)
		return v
	}
	w := f32("weight")
	for _, typ := range []scheme.Type{scheme.Q4_K, scheme.Q6_K} {
		q, want := goldenBlocks(t, c, typ, w)
		got, err := Decode(&q, Stored{Codes: want})
		if err != nil {
			t.Fatal(err)
		}
		ref := f32(string(typ) + ".dequantized")
		for i := range got {
			if got[i] != ref[i] {
				t.Fatalf("%s: weight %d decodes to %v, llama.cpp's dequantizer %v", typ, i, got[i], ref[i])
			}
		}
		rel := testfix.RelL2(got, w)
		t.Logf("%s: %.4f bits per weight, rel L2 %.4f", typ, float64(8*len(want))/float64(len(w)), rel)
		if bound := map[scheme.Type]float64{scheme.Q4_K: 0.1, scheme.Q6_K: 0.03}[typ]; rel > bound {
			t.Errorf("%s: rel L2 %.3g from the weight, past %v", typ, rel, bound)
		}
	}
}

// goldenBlocks is the record of typ for the golden checkpoint's weight w and llama.cpp's bytes of
// it (the tensor named typ), after checking that btconvert encodes w to the same bytes (sameBlocks;
// the scale search asked for is not llama.cpp's: ignored).
func goldenBlocks(t *testing.T, c *safetensors.Checkpoint, typ scheme.Type, w []float32) (scheme.Quantization, []byte) {
	t.Helper()
	rows, cols := c.Info("weight").Shape[0], c.Info("weight").Shape[1]
	sc, _ := scheme.Of(typ)
	q := sc.Record(rows, cols, 0, false, safetensors.F32)
	if err := q.Validate([]int{rows, cols}); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	want, err := c.Raw(string(typ))
	if err != nil {
		t.Fatal(err)
	}
	sameBlocks(t, w, &q, want)
	return q, want
}

// sameBlocks checks that w encoded as q (with the scale search asked for, which llama.cpp's types
// ignore) gives llama.cpp's bytes want, naming the first byte that differs.
func sameBlocks(t *testing.T, w []float32, q *scheme.Quantization, want []byte) {
	t.Helper()
	st, err := Encode(w, q, nil, Options{Search: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Codes) != len(want) {
		t.Fatalf("%s: %d bytes, llama.cpp's %d", q.Type, len(st.Codes), len(want))
	}
	blk, row := q.Scheme().GGML.Bytes, len(want)/q.Rows
	for i := range want {
		if st.Codes[i] != want[i] {
			t.Errorf("%s: byte %d (row %d, block %d, byte %d of it) is %#x, llama.cpp's %#x", q.Type, i, i/row, i%row/blk, i%blk, st.Codes[i], want[i])
			return
		}
	}
}
