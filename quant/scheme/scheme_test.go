package scheme

import (
	"fmt"
	"testing"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// Every scheme's record of a [6, 64] weight ([6, 256] for the k-quants, whose blocks are 256 wide)
// lists the stored parts FORMAT.md gives it.
func TestParts(t *testing.T) {
	want := map[string]string{
		"int8":           "[{.qweight I8 [6 64]} {.scales F32 [6]}]",
		"int4 sym":       "[{.qweight U8 [6 32]} {.scales F32 [6 1]}]",
		"int4 asym":      "[{.qweight U8 [6 32]} {.scales F32 [6 1]} {.mins F32 [6 1]}]",
		"q8_0 sym":       "[{.qweight U8 [6 68]}]",
		"q4_0 sym":       "[{.qweight U8 [6 36]}]",
		"q4_1 asym":      "[{.qweight U8 [6 40]}]",
		"q4_k asym":      "[{.qweight U8 [6 144]}]",
		"q6_k sym":       "[{.qweight U8 [6 210]}]",
		"int8 (f16 sc.)": "[{.qweight I8 [6 64]} {.scales F16 [6]}]",
	}
	got := map[string]string{}
	for _, s := range All() {
		for _, sym := range []bool{true, false} {
			if sym == s.Asymmetric && s.GGML != nil || !sym && !s.Asymmetric {
				continue
			}
			cols := 64
			if s.GGML != nil {
				cols = max(cols, s.GGML.Values)
			}
			q := s.Record(6, cols, 0, sym, safetensors.F32)
			name := string(s.Type)
			if s.Grouped {
				name += map[bool]string{true: " sym", false: " asym"}[sym]
			}
			if err := q.Validate([]int{6, cols}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got[name] = fmt.Sprint(q.Parts())
		}
	}
	q := record8(t)
	got["int8 (f16 sc.)"] = fmt.Sprint(q.Parts())
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: parts %s, want %s", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("schemes %v, want %v", got, want)
	}
}

func record8(t *testing.T) Quantization {
	s, err := Of(Int8)
	if err != nil {
		t.Fatal(err)
	}
	return s.Record(6, 64, 0, true, safetensors.F16)
}

// Two stored 4-bit values round-trip through their byte, the first in the low nibble.
func TestNibbles(t *testing.T) {
	for lo := 0; lo < 16; lo++ {
		for hi := 0; hi < 16; hi++ {
			b := PackNibbles(lo, hi)
			if b != byte(lo+16*hi) {
				t.Fatalf("PackNibbles(%d, %d) = %#x", lo, hi, b)
			}
			if l, h := Nibbles(b); l != lo || h != hi {
				t.Fatalf("Nibbles(%#x) = %d, %d", b, l, h)
			}
		}
	}
	if base, ok := IsPart("layers.0.mlp.weight.scales"); !ok || base != "layers.0.mlp.weight" {
		t.Errorf("IsPart: %q %v", base, ok)
	}
	if _, ok := IsPart("layers.0.mlp.weight"); ok {
		t.Error("IsPart of a plain weight")
	}
}

// A k-quant's fallback is a type of llama.cpp's blocks whose blocks divide its own, so that every
// row the k-quant takes the fallback takes too, and the fallback has none of its own.
func TestFallbacks(t *testing.T) {
	n := 0
	for _, s := range All() {
		if s.Fallback == "" {
			continue
		}
		n++
		f, err := Of(s.Fallback)
		if err != nil || s.GGML == nil || f.GGML == nil || s.GGML.Values%f.GGML.Values != 0 || f.Fallback != "" || f.Bits < s.Bits {
			t.Errorf("%s falls back to %s (%v)", s.Type, s.Fallback, err)
		}
	}
	if n != 2 {
		t.Errorf("%d schemes fall back, want the two k-quants", n)
	}
}
