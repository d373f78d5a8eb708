package arch_test

import (
	"fmt"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Every tensor of the fixtures' configs has its own identity (component, part, layer, parameter),
// its name is the one its identity gives, and no two identities share a name: a name stands for
// exactly one identity and back.
func TestTableIdentities(t *testing.T) {
	neox := layerParts([]arch.Part{arch.PartLN1, arch.PartLN2, arch.PartAttnQKV, arch.PartAttnOut, arch.PartMLPUp, arch.PartMLPDown}, true)
	roberta := layerParts([]arch.Part{arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV, arch.PartAttnOut, arch.PartAttnNorm, arch.PartMLPUp,
		arch.PartMLPDown, arch.PartMLPNorm}, true)
	t5 := layerParts([]arch.Part{arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV, arch.PartAttnOut, arch.PartLN1, arch.PartCrossQ,
		arch.PartCrossK, arch.PartCrossV, arch.PartCrossOut, arch.PartCrossNorm, arch.PartMLPUp, arch.PartMLPDown, arch.PartLN2}, false)
	type stack struct {
		layers int
		parts  map[partParam]bool
	}
	blockNeoX := map[string]stack{arch.BlockDecoder: {2, neox}, arch.TokenDecoder: {2, neox}}
	for _, c := range []struct {
		fixture string
		n       int
		layers  map[string]stack
	}{
		// embeddings, 2 block layers x 12 + final norm, expansion, embed_in, 2 token layers x 12 + final norm, embed_out
		{"bt-tiny", 1 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1, blockNeoX},
		// the same with a projection_layer embedder (weight and bias)
		{"bt-from-pythia-tiny", 3 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1, blockNeoX},
		// embed_in, 4 layers x 12, final norm, embed_out
		{"pythia-tiny", 1 + 4*12 + 2 + 1, map[string]stack{arch.Decoder: {4, neox}}},
		// RoBERTa embedder: 3 tables, their LayerNorm, 2 layers x 16, projection; then as
		// bt-from-pythia-tiny
		{"bt-roberta-prefix-tiny", 3 + 2 + 2*16 + 2 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1,
			map[string]stack{arch.Embedder: {2, roberta}, arch.BlockDecoder: {2, neox}, arch.TokenDecoder: {2, neox}}},
		{"bt-cls-sum-tiny", 3 + 2 + 2*16 + 2 + 2*12 + 2 + 2 + 1 + 2*12 + 2 + 1,
			map[string]stack{arch.Embedder: {2, roberta}, arch.BlockDecoder: {2, neox}, arch.TokenDecoder: {2, neox}}},
		// T5 token decoder: expansion, token table, relative bias table, 2 layers x 13 weights, final norm
		{"bt-cls-cross-attn-tiny", 3 + 2 + 2*16 + 2 + 2*12 + 2 + 2 + 1 + 1 + 2*13 + 1,
			map[string]stack{arch.Embedder: {2, roberta}, arch.BlockDecoder: {2, neox}, arch.TokenDecoder: {2, t5}}},
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
				if s.Part.InLayer() != (s.Layer >= 0) || s.Layer < arch.NoLayer || s.Layer >= c.layers[s.Component].layers {
					t.Errorf("%s: part %s, layer %d", s.Key(), s.Part, s.Layer)
				}
				if w := wantRole(s.Part, s.Param); s.Role != w {
					t.Errorf("%s: role %d, want %d", s.Key(), s.Role, w)
				}
			}
			// Every layer has exactly the parts of its kind of stack (GPT-NeoX and RoBERTa: each with
			// a weight and a bias; T5: weights only).
			for comp, st := range c.layers {
				for i := 0; i < st.layers; i++ {
					got := map[partParam]bool{}
					for id := range ids {
						if id.Component == comp && id.Layer == i {
							got[partParam{id.Part, id.Param}] = true
						}
					}
					if fmt.Sprint(got) != fmt.Sprint(st.parts) {
						t.Errorf("%s layer %d has %v, want %v", comp, i, got, st.parts)
					}
				}
			}
		})
	}
}

type partParam struct {
	part  arch.Part
	param arch.Param
}

// layerParts are the parts with a weight (and a bias).
func layerParts(parts []arch.Part, bias bool) map[partParam]bool {
	out := map[partParam]bool{}
	for _, p := range parts {
		out[partParam{p, arch.Weight}] = true
		if bias {
			out[partParam{p, arch.Bias}] = true
		}
	}
	return out
}

// wantRole is the coarse role each part's parameters keep.
func wantRole(p arch.Part, param arch.Param) arch.Role {
	switch p {
	case arch.PartEmbeddings, arch.PartEmbedIn, arch.PartPositions, arch.PartTokenTypes, arch.PartRelBias:
		return arch.RoleEmbedding
	case arch.PartLN1, arch.PartLN2, arch.PartFinalNorm, arch.PartEmbedNorm, arch.PartAttnNorm, arch.PartMLPNorm, arch.PartCrossNorm:
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
	cfg.Quantization = map[string]scheme.Quantization{id.Key(): {Type: scheme.Int8, Symmetric: true, ScaleDType: "F32", Rows: 512, Cols: 128}}
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

// Which norm feeds each Linear of a RoBERTa encoder (post-LayerNorm: a layer's query, key and
// value read the previous layer's last LayerNorm, layer 0 the embeddings') and of a T5 decoder
// (pre-norm; the cross-attention's keys and values read the expanded vectors, no norm).
func TestAblationFeeders(t *testing.T) {
	cfg := testfix.Open(t, testfix.Path("bt-cls-cross-attn-tiny")).Config
	fed := map[string]string{}
	for _, s := range arch.Tensors(cfg) {
		if s.Role == arch.RoleLinear {
			fed[s.Key()] = s.FedBy
		}
	}
	for key, want := range map[string]string{
		"embedder/layers.0.attention.query.weight":            "embedder/embeddings_layernorm",
		"embedder/layers.1.attention.value.weight":            "embedder/layers.0.mlp_layernorm",
		"embedder/layers.0.attention.dense.weight":            "",
		"embedder/layers.0.mlp.dense_h_to_4h.weight":          "embedder/layers.0.attention_layernorm",
		"embedder/projection_layer.weight":                    "embedder/layers.1.mlp_layernorm",
		"token_decoder/expansion_layer.weight":                "block_decoder/final_layer_norm",
		"token_decoder/layers.1.attention.key.weight":         "token_decoder/layers.1.input_layernorm",
		"token_decoder/layers.0.cross_attention.query.weight": "token_decoder/layers.0.cross_attention_layernorm",
		"token_decoder/layers.0.cross_attention.key.weight":   "",
		"token_decoder/layers.1.mlp.dense_h_to_4h.weight":     "token_decoder/layers.1.post_attention_layernorm",
		"token_decoder/layers.1.cross_attention.dense.weight": "",
	} {
		if got, ok := fed[key]; !ok || got != want {
			t.Errorf("%s fed by %q (a Linear: %v), want %q", key, got, ok, want)
		}
	}
	// RoBERTa: 6 per layer and the projection; block decoder: 4 per layer; the expansion; T5: 10 per
	// layer (no head: it is the token table).
	if len(fed) != 2*6+1+2*4+1+2*10 {
		t.Errorf("%d Linears", len(fed))
	}
}
