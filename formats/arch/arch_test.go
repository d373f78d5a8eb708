package arch

import (
	"testing"
)

func TestBaseModelTable(t *testing.T) {
	for name, want := range map[string][5]int{ // hidden, layers, heads, FFN, vocab
		"EleutherAI/pythia-14m":          {128, 6, 4, 512, 50304},
		"EleutherAI/pythia-160m-deduped": {768, 12, 12, 3072, 50304},
		"EleutherAI/pythia-1.4b":         {2048, 24, 16, 8192, 50304},
		"EleutherAI/pythia-12b-deduped":  {5120, 36, 40, 20480, 50688},
	} {
		c, ok := BaseModel(name)
		if got := [5]int{c.Hidden, c.Layers, c.Heads, c.Intermediate, c.Vocab}; !ok || got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if _, ok := BaseModel("EleutherAI/pythia-3b"); ok {
		t.Error("unknown size accepted")
	}
	if n := len(BaseModelNames()); n != 20 {
		t.Errorf("%d base models, want 10 sizes x 2", n)
	}
}

// The presets are the official configs: the block models on pythia-410m-deduped's 16 heads and FFN
// of 4096 whatever their width.
func TestPresets(t *testing.T) {
	for name, want := range map[string][3]int{"block_main_b4_85": {16, 48, 4096}, "block_main_b4_5": {16, 16, 4096}, "vanilla_31": {8, 32, 4096}, "vanilla_160": {12, 64, 3072}} {
		p, err := FindPreset(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Shape().Config()
		if err != nil {
			t.Fatal(err)
		}
		d := c.Decoder
		if c.IsBlock() {
			d = c.BlockDecoder
		}
		if got := [3]int{d.Heads, d.HeadDim, d.Intermediate}; got != want {
			t.Errorf("%s: heads, head dim, FFN %v, want %v", name, got, want)
		}
	}
	p, _ := FindPreset("block_main_b4_85")
	c, _ := p.Shape().Config()
	if n := ParamCount(c); n != 192_050_688 {
		t.Errorf("b4_85 has %d weights, want 192,050,688", n)
	}
}

// The table says what each tensor is and which LayerNorm feeds each Linear.
func TestTensorTable(t *testing.T) {
	p, _ := FindPreset("block_main_b4_5")
	c, _ := p.Shape().Config()
	roles := map[Role]int{}
	fed := map[string]string{}
	for _, s := range Tensors(c) {
		roles[s.Role]++
		if s.FedBy != "" {
			fed[s.Key()] = s.FedBy
		}
	}
	// 6 layers x (4 linears, 4 biases, 2 norms) + final norms, embedder table, expansion, tables, head.
	if roles[RoleLinear] != 6*4+2 || roles[RoleBias] != 6*4+1 || roles[RoleNormWeight] != 6*2+2 || roles[RoleEmbedding] != 2 {
		t.Fatalf("roles %v", roles)
	}
	for key, want := range map[string]string{
		"block_decoder/layers.0.attention.query_key_value.weight": "block_decoder/layers.0.input_layernorm",
		"token_decoder/layers.2.mlp.dense_h_to_4h.weight":         "token_decoder/layers.2.post_attention_layernorm",
		"token_decoder/expansion_layer.weight":                    "block_decoder/final_layer_norm",
		"token_decoder/embed_out.weight":                          "token_decoder/final_layer_norm",
	} {
		if fed[key] != want {
			t.Errorf("%s fed by %q, want %q", key, fed[key], want)
		}
	}
	if len(fed) != 6*2+2 {
		t.Errorf("%d linears fed by a LayerNorm, want 14", len(fed))
	}
}

func TestScoringRule(t *testing.T) {
	p, _ := FindPreset("block_main_b4_5")
	b, _ := p.Shape().Config()
	if s := b.Scoring(64); s.Rows != 60 || s.First != 4 || s.Stride != 60 || s.Row(4) != 0 {
		t.Errorf("block %+v", s)
	}
	p, _ = FindPreset("vanilla_31")
	v, _ := p.Shape().Config()
	if s := v.Scoring(64); s.Rows != 63 || s.First != 1 || s.Stride != 64 || s.Row(63) != 62 {
		t.Errorf("vanilla %+v", s)
	}
}

func TestQuantizationValidate(t *testing.T) {
	ok := Quantization{Type: Int4, GroupSize: 64, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 128}
	if err := ok.Validate([]int{8, 100}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    Quantization
		want string
	}{
		{Quantization{Type: Int4, GroupSize: 0, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 128}, "group_size 0 must be at least 2"},
		{Quantization{Type: Int4, GroupSize: 64, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 100}, "padded_cols 100, want cols 100 rounded up to a whole group of 64 (128)"},
		{Quantization{Type: Int8, Symmetric: true, ScaleDType: "F32", Rows: 8, Cols: 99}, "rows x cols 8 x 99 disagree with the tensor's shape [8 100]"},
	} {
		if err := c.q.Validate([]int{8, 100}); err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v, want %s", c.q, err, c.want)
		}
	}
}
