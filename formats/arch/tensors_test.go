package arch_test

import (
	"fmt"
	"testing"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/internal/testfix"
)

// Every tensor of the fixtures' configs has its own identity (component, part, layer, parameter),
// its name is the one its identity gives, and no two identities share a name: a name stands for
// exactly one identity and back.
func TestTableIdentities(t *testing.T) {
	for _, c := range []struct {
		fixture string
		n       int
		layers  map[string]int
	}{
		// embeddings, 2 block layers x 12 + final norm, expansion, embed_in, 2 token layers x 12 + final norm, embed_out
		{"bt-tiny", 1 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1, map[string]int{arch.BlockDecoder: 2, arch.TokenDecoder: 2}},
		// the same with a projection_layer embedder (weight and bias)
		{"bt-from-pythia-tiny", 3 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1, map[string]int{arch.BlockDecoder: 2, arch.TokenDecoder: 2}},
		// embed_in, 4 layers x 12, final norm, embed_out
		{"pythia-tiny", 1 + 4*12 + 2 + 1, map[string]int{arch.Decoder: 4}},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			cfg := testfix.Open(t, testfix.Path(c.fixture)).Config
			specs := arch.Tensors(cfg)
			if len(specs) != c.n {
				t.Fatalf("%d tensors, want %d", len(specs), c.n)
			}
			ids := map[arch.ID]string{}
			names := map[string]arch.ID{}
			for _, s := range specs {
				id := s.ID()
				if prev, ok := ids[id]; ok {
					t.Errorf("%s and %s share the identity %v", prev, s.Key(), id)
				}
				ids[id] = s.Key()
				if prev, ok := names[s.Key()]; ok {
					t.Errorf("%v and %v share the name %s", prev, id, s.Key())
				}
				names[s.Key()] = id
				if s.Name != id.Name() || s.Key() != id.Key() {
					t.Errorf("%s: the identity %v names it %s", s.Key(), id, id.Key())
				}
				if s.Part.InLayer() != (s.Layer >= 0) || s.Layer < arch.NoLayer || s.Layer >= c.layers[s.Component] {
					t.Errorf("%s: part %s, layer %d", s.Key(), s.Part, s.Layer)
				}
				if w := wantRole(s.Part, s.Param); s.Role != w {
					t.Errorf("%s: role %d, want %d", s.Key(), s.Role, w)
				}
			}
			// Every layer has all its parts, each with a weight and a bias.
			for comp, n := range c.layers {
				for i := 0; i < n; i++ {
					for _, p := range []arch.Part{arch.PartLN1, arch.PartLN2, arch.PartAttnQKV, arch.PartAttnOut, arch.PartMLPUp, arch.PartMLPDown} {
						for _, param := range []arch.Param{arch.Weight, arch.Bias} {
							if _, ok := ids[arch.ID{Component: comp, Part: p, Layer: i, Param: param}]; !ok {
								t.Errorf("%s layer %d has no %s.%s", comp, i, p, param)
							}
						}
					}
				}
			}
		})
	}
}

// wantRole is the coarse role each part's parameters keep.
func wantRole(p arch.Part, param arch.Param) arch.Role {
	switch p {
	case arch.PartEmbeddings, arch.PartEmbedIn:
		return arch.RoleEmbedding
	case arch.PartLN1, arch.PartLN2, arch.PartFinalNorm:
		if param == arch.Bias {
			return arch.RoleNormBias
		}
		return arch.RoleNormWeight
	}
	if param == arch.Bias {
		return arch.RoleBias
	}
	return arch.RoleLinear
}

// Names from identities, exactly.
func TestIDNames(t *testing.T) {
	for _, c := range []struct {
		id   arch.ID
		key  string
		text string
	}{
		{arch.ID{Component: arch.TokenDecoder, Part: arch.PartAttnQKV, Layer: 1, Param: arch.Weight},
			"token_decoder/layers.1.attention.query_key_value.weight", "token_decoder attn_qkv.weight of layer 1"},
		{arch.ID{Component: arch.BlockDecoder, Part: arch.PartLN1, Layer: 0, Param: arch.Bias},
			"block_decoder/layers.0.input_layernorm.bias", "block_decoder ln1.bias of layer 0"},
		{arch.ID{Component: arch.Decoder, Part: arch.PartLN2, Layer: 3, Param: arch.Weight},
			"decoder/layers.3.post_attention_layernorm.weight", "decoder ln2.weight of layer 3"},
		{arch.ID{Component: arch.Decoder, Part: arch.PartAttnOut, Layer: 2, Param: arch.Bias},
			"decoder/layers.2.attention.dense.bias", "decoder attn_out.bias of layer 2"},
		{arch.ID{Component: arch.Decoder, Part: arch.PartMLPUp, Layer: 0, Param: arch.Weight},
			"decoder/layers.0.mlp.dense_h_to_4h.weight", "decoder mlp_up.weight of layer 0"},
		{arch.ID{Component: arch.Decoder, Part: arch.PartMLPDown, Layer: 0, Param: arch.Bias},
			"decoder/layers.0.mlp.dense_4h_to_h.bias", "decoder mlp_down.bias of layer 0"},
		{arch.ID{Component: arch.BlockDecoder, Part: arch.PartFinalNorm, Layer: arch.NoLayer, Param: arch.Bias},
			"block_decoder/final_layer_norm.bias", "block_decoder final_norm.bias"},
		{arch.ID{Component: arch.Embedder, Part: arch.PartEmbeddings, Layer: arch.NoLayer, Param: arch.Weight},
			"embedder/embeddings.weight", "embedder embeddings.weight"},
		{arch.ID{Component: arch.Embedder, Part: arch.PartProjection, Layer: arch.NoLayer, Param: arch.Bias},
			"embedder/projection_layer.bias", "embedder projection.bias"},
		{arch.ID{Component: arch.TokenDecoder, Part: arch.PartExpansion, Layer: arch.NoLayer, Param: arch.Weight},
			"token_decoder/expansion_layer.weight", "token_decoder expansion.weight"},
		{arch.ID{Component: arch.TokenDecoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer, Param: arch.Weight},
			"token_decoder/embed_in.weight", "token_decoder embed_in.weight"},
		{arch.ID{Component: arch.Decoder, Part: arch.PartEmbedOut, Layer: arch.NoLayer, Param: arch.Weight},
			"decoder/embed_out.weight", "decoder embed_out.weight"},
	} {
		if c.id.Key() != c.key || c.id.String() != c.text {
			t.Errorf("%#v: %s (%s), want %s (%s)", c.id, c.id.Key(), c.id, c.key, c.text)
		}
	}
}

// The stored parts of a quantized tensor keep its identity; the parts are told by their role.
func TestStoredPartsKeepIdentity(t *testing.T) {
	cfg := *testfix.Open(t, testfix.Path("bt-tiny")).Config
	id := arch.ID{Component: arch.TokenDecoder, Part: arch.PartMLPUp, Layer: 1, Param: arch.Weight}
	cfg.Quantization = map[string]arch.Quantization{id.Key(): {Type: arch.Int8, Symmetric: true, ScaleDType: "F32", Rows: 512, Cols: 128}}
	var got []string
	for _, s := range arch.StoredTensors(&cfg) {
		if s.ID() == id {
			got = append(got, fmt.Sprintf("%s %v %v", s.Name, s.Role == arch.RoleQuantPart, s.Shape))
		}
	}
	want := []string{"layers.1.mlp.dense_h_to_4h.weight.qweight true [512 128]", "layers.1.mlp.dense_h_to_4h.weight.scales true [512]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parts %q, want %q", got, want)
	}
}
