package randinit_test

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// A random model has the config's tensors in its order, each initialised as its role says:
// LayerNorms (1, 0), biases 0, Linear and Embedding weights normal with std 0.02.
func TestModel(t *testing.T) {
	cfg := testfix.Open(t, testfix.Path("bt-from-pythia-tiny")).Config // projection_layer embedder: every role
	m := randinit.Model(cfg, 7, safetensors.F32)
	if m.Format != randinit.Format || !slices.Equal(m.Notes, []string{"random initialisation (normal std 0.02, seed 7)"}) {
		t.Fatalf("format %s notes %q", m.Format, m.Notes)
	}
	specs := arch.Tensors(cfg)
	if len(m.Tensors) != len(specs) {
		t.Fatalf("%d tensors, want %d", len(m.Tensors), len(specs))
	}
	random := 0
	for i, s := range specs {
		tt := m.Tensors[i]
		if tt.Key() != s.Key() || !slices.Equal(tt.Shape, s.Shape) || tt.DType != safetensors.F32 {
			t.Fatalf("tensor %d is %s %s%v, want %s %v", i, tt.Key(), tt.DType, tt.Shape, s.Key(), s.Shape)
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		var sum, sq float64
		for _, x := range v {
			sum += float64(x)
			sq += float64(x) * float64(x)
		}
		n := float64(len(v))
		mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
		switch s.Role {
		case arch.RoleNormWeight:
			if mean != 1 || std != 0 {
				t.Errorf("%s: mean %g std %g, want all 1", s.Key(), mean, std)
			}
		case arch.RoleNormBias, arch.RoleBias:
			if sq != 0 {
				t.Errorf("%s: not all 0", s.Key())
			}
		default:
			// Every weight here has at least 128 x 128 values: the sample std is within 3% of
			// 0.02 and the mean within 0.001 of 0 (over 5 standard errors each).
			if n < 128*128 || math.Abs(std-randinit.Std) > 0.03*randinit.Std || math.Abs(mean) > 0.001 {
				t.Errorf("%s: %g values, mean %g, std %g", s.Key(), n, mean, std)
			}
			random++
		}
	}
	// embeddings, projection, 2 x 2 layers x 4 Linears, expansion, embed_in, embed_out
	if random != 3+16+2 {
		t.Errorf("%d random tensors", random)
	}
}

// The same seed gives the same bytes, whatever is read first and in whichever dtype is asked;
// another seed or another tensor of the same shape gives others.
func TestReproducible(t *testing.T) {
	cfg := testfix.Open(t, testfix.Path("bt-tiny")).Config
	raw := func(seed uint64, dt safetensors.DType, key string) []byte {
		for _, tt := range randinit.Model(cfg, seed, dt).Tensors {
			if tt.Key() == key {
				b, err := tt.Raw()
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
		t.Fatalf("no %s", key)
		return nil
	}
	const qkv0, qkv1 = "token_decoder/layers.0.attention.query_key_value.weight", "token_decoder/layers.1.attention.query_key_value.weight"
	a := raw(1, safetensors.F32, qkv1)
	m := randinit.Model(cfg, 1, safetensors.F32)
	for _, tt := range slices.Backward(m.Tensors) { // every tensor read, in reverse
		b, _ := tt.Raw()
		if tt.Key() == qkv1 && !bytes.Equal(a, b) {
			t.Fatal("reading the others first changed a tensor")
		}
	}
	if bytes.Equal(a, raw(2, safetensors.F32, qkv1)) || bytes.Equal(a, raw(1, safetensors.F32, qkv0)) {
		t.Fatal("another seed or another tensor gave the same values")
	}
	// bf16 is the f32 values rounded.
	bf, err := safetensors.ToFloat32(safetensors.BF16, raw(1, safetensors.BF16, qkv1))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := safetensors.ToFloat32(safetensors.F32, a)
	for i := range f {
		if math.Abs(float64(bf[i]-f[i])) > math.Abs(float64(f[i]))/128 {
			t.Fatalf("bf16 value %d is %g, f32 %g", i, bf[i], f[i])
		}
	}
}
