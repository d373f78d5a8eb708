package arch

import (
	"strings"
	"testing"

	"github.com/btconvert/btconvert/quant/scheme"
)

// Every official config resolves to the shapes the official code builds: per decoder width,
// heads, head dim, FFN and layers (the block-mode fill-in where the YAML is silent), expansion
// ratio and decoding.
func TestReleasedConfigs(t *testing.T) {
	type stack struct{ D, heads, hd, ffn, layers int }
	type want struct {
		L, embDim int
		emb       EmbedderType
		bd, td    stack
		ratio     int
		dec       Decoding
	}
	main := func(embDim, layers, D, heads, hd int) want {
		s := stack{D, heads, hd, 4 * D, layers}
		return want{L: 4, embDim: embDim, emb: Concat, bd: s, td: s, ratio: 2, dec: Prefix}
	}
	up := func(layers, D, heads, hd int) want {
		w := main(D, layers, D, heads, hd)
		w.emb = ProjectionLayer
		return w
	}
	mega := func(embDim int, bd, td stack) want {
		return want{L: 4, embDim: embDim, emb: Concat, bd: bd, td: td, ratio: 4, dec: Summation}
	}
	ablation := main(192, 6, 768, 12, 64)
	ablation.ratio = 1
	b1 := main(768, 6, 768, 12, 64)
	b1.L, b1.ratio = 1, 1
	// The ablations' RoBERTa embedders are 256 wide (projection_layer, what their null method
	// means); the T5 token decoder's stack is d_model 768, 12 heads of d_kv 64, d_ff 3072, 6 layers.
	robertaPrefix := main(256, 6, 768, 12, 64)
	robertaPrefix.emb, robertaPrefix.ratio = ProjectionLayer, 1
	clsSum := robertaPrefix
	clsSum.ratio, clsSum.dec = 4, Summation
	clsCross := clsSum
	clsCross.dec = CrossAttention
	cases := map[string]want{
		"block_main_b4_5":                     main(64, 3, 256, 8, 32),
		"block_main_b4_19":                    main(128, 3, 512, 8, 64),
		"block_main_b4_85":                    main(192, 6, 768, 12, 64),
		"block_main_b4_300":                   main(256, 12, 1024, 16, 64),
		"block_main_b4_800":                   main(512, 8, 2048, 16, 128),
		"block_main_b4_1.2b":                  main(512, 12, 2048, 16, 128),
		"block_main_b4_85_flop_v70":           main(192, 6, 768, 12, 64),
		"block_main_b4_300_flop_v70":          main(256, 12, 1024, 16, 64),
		"block_main_b4_800_flop_v70":          main(512, 8, 2048, 16, 128),
		"block_main_b4_1.2b_flop_v70":         main(512, 12, 2048, 16, 128),
		"block_megabyte_b4_5":                 mega(64, stack{256, 8, 32, 1024, 5}, stack{128, 4, 32, 512, 4}),
		"block_megabyte_b4_19":                mega(128, stack{512, 8, 64, 2048, 5}, stack{256, 8, 32, 1024, 4}),
		"block_megabyte_b4_85":                mega(192, stack{768, 12, 64, 3072, 11}, stack{512, 8, 64, 2048, 4}),
		"block_uptrain_b4_85_10":              up(6, 768, 12, 64),
		"block_uptrain_b4_300_10":             up(12, 1024, 16, 64),
		"block_uptrain_b4_800_10":             up(8, 2048, 16, 128),
		"block_vanilla_ablation_b1_85":        b1,
		"block_ablation_b4_85_lookup_prefix":  ablation,
		"block_ablation_b4_85_roberta_prefix": robertaPrefix,
		"block_ablation_b4_85_cls_sum":        clsSum,
		"block_ablation_b4_85_cls_cross_attn": clsCross,
	}
	for _, name := range ReleasedNames() {
		blk, van, err := Released(name, OriginYAML)
		if err != nil {
			t.Fatal(err)
		}
		if van != nil {
			continue
		}
		w, ok := cases[name]
		if !ok {
			t.Errorf("%s: no expectation", name)
			continue
		}
		c, _, err := blk.Resolve(nil, nil, Provenance{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := want{L: c.BlockLength, embDim: c.Embedder.Dim, emb: c.Embedder.Type, ratio: c.TokenDecoder.ExpansionRatio, dec: c.TokenDecoder.Decoding}
		got.bd = stack{c.BlockDecoder.Hidden, c.BlockDecoder.Heads, c.BlockDecoder.HeadDim, c.BlockDecoder.Intermediate, c.BlockDecoder.Layers}
		tdFFN := "fill-in"
		if own := c.TokenDecoder.Own; own != nil {
			s := own.Shape()
			got.td, tdFFN = stack{s.Hidden, s.Heads, s.HeadDim, s.Intermediate, s.Layers}, "yaml"
		} else {
			d := c.TokenDecoder.DecoderConfig
			got.td = stack{d.Hidden, d.Heads, d.HeadDim, d.Intermediate, d.Layers}
		}
		if got != w {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, w)
		}
		if c.VocabSize != 50304 || c.Source == nil || c.Source.MaxLength != 2048 {
			t.Errorf("%s: vocab %d, source %+v", name, c.VocabSize, c.Source)
		}
		if o := c.Origins; o["block_decoder.heads"] != "fill-in" || o["token_decoder.intermediate_size"] != tdFFN || o["block_decoder.hidden_size"] != "yaml" {
			t.Errorf("%s: origins %v", name, o)
		}
	}
	for name, want := range map[string][4]int{ // layers, hidden, heads, FFN: no fill-in for vanilla configs
		"vanilla_31": {6, 256, 8, 4096}, "vanilla_70": {6, 512, 8, 2048}, "vanilla_160": {12, 768, 12, 3072}, "vanilla_410": {24, 1024, 16, 4096},
	} {
		_, van, err := Released(name, OriginYAML)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := van.Resolve(nil, nil, Provenance{})
		if err != nil {
			t.Fatal(err)
		}
		d := c.Decoder
		if got := [4]int{d.Layers, d.Hidden, d.Heads, d.Intermediate}; got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if _, _, err := Released("block_main_b4_86", OriginYAML); err == nil || !strings.HasPrefix(err.Error(), `"block_main_b4_86" is not an official config name (want one of block_main_b4_5, `) {
		t.Errorf("unknown name: %v", err)
	}
}

// The presets are official configs resolved like an import of their YAML.
func TestPresets(t *testing.T) {
	for name, want := range map[string][3]int{"block_main_b4_85": {12, 64, 3072}, "block_main_b4_5": {8, 32, 1024}, "vanilla_31": {8, 32, 4096}, "vanilla_160": {12, 64, 3072}} {
		p, err := FindPreset(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Config()
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
	c, _ := p.Config()
	if n := ParamCount(c); n != 173_164_032 {
		t.Errorf("b4_85 has %d weights, want 173,164,032", n)
	}
	if c.Origins["block_decoder.heads"] != "fill-in" || c.Origins["block_decoder.layers"] != "preset" {
		t.Errorf("origins %v", c.Origins)
	}
	var err error
	// Flags on top of a preset: a new width gets the fill-in again, and the concat embedder follows.
	c, err = Shape{Preset: "block_main_b4_5", Hidden: 512}.Config()
	if err != nil || c.BlockDecoder.Heads != 8 || c.BlockDecoder.HeadDim != 64 || c.BlockDecoder.Intermediate != 2048 || c.Embedder.Dim != 128 {
		t.Errorf("b4_5 at hidden 512: %v %+v", err, c)
	}
	for _, tc := range []struct {
		s    Shape
		want string
	}{
		{Shape{Block: true, Hidden: 1000, BlockLayers: 1, TokenLayers: 1}, "Hidden 1000: block_decoder.config states no num_attention_heads and the official fill-in fails: hidden_size 1000 is not a multiple of 64, the head size the official code gives this width (give Heads)"},
		{Shape{Preset: "block_main_b4_5", Layers: 4}, "Layers 4: is for vanilla models; preset block_main_b4_5 is a block model (give BlockLayers and TokenLayers)"},
		{Shape{Preset: "nope"}, "Preset \"nope\": want one of block_main_b4_5, block_main_b4_19, block_main_b4_85, block_main_b4_300, block_main_b4_800, block_main_b4_1.2b, block_megabyte_b4_5, block_megabyte_b4_19, block_megabyte_b4_85, block_ablation_b4_85_roberta_prefix, block_ablation_b4_85_cls_sum, block_ablation_b4_85_cls_cross_attn, vanilla_31, vanilla_70, vanilla_160, vanilla_410"},
	} {
		var err error
		if tc.s.Preset == "nope" {
			_, err = FindPreset("nope")
		} else {
			_, err = tc.s.Config()
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("%+v:\n got %v\nwant %s", tc.s, err, tc.want)
		}
	}
}

// The fill-in rule at the edges of its head sizes.
func TestOfficialHeads(t *testing.T) {
	for hidden, want := range map[int]int{128: 4, 256: 8, 384: 6, 768: 12, 1536: 24, 2048: 16, 2560: 20} {
		if got, err := OfficialHeads(hidden); err != nil || got != want {
			t.Errorf("hidden %d: %d %v, want %d", hidden, got, err, want)
		}
	}
	if _, err := OfficialHeads(1600); err == nil {
		t.Error("1600 accepted (128 does not divide it)")
	}
}

// The table says what each tensor is and which LayerNorm feeds each Linear.
func TestTensorTable(t *testing.T) {
	p, _ := FindPreset("block_main_b4_5")
	c, _ := p.Config()
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
	b, _ := p.Config()
	if s := b.Scoring(64); s.Rows != 60 || s.First != 4 || s.Stride != 60 || s.Row(4) != 0 {
		t.Errorf("block %+v", s)
	}
	p, _ = FindPreset("vanilla_31")
	v, _ := p.Config()
	if s := v.Scoring(64); s.Rows != 63 || s.First != 1 || s.Stride != 64 || s.Row(63) != 62 {
		t.Errorf("vanilla %+v", s)
	}
}

func TestQuantizationValidate(t *testing.T) {
	ok := scheme.Quantization{Type: scheme.Int4, GroupSize: 64, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 128}
	if err := ok.Validate([]int{8, 100}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    scheme.Quantization
		want string
	}{
		{scheme.Quantization{Type: scheme.Int4, GroupSize: 0, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 128}, "group_size 0 must be at least 2"},
		{scheme.Quantization{Type: scheme.Int4, GroupSize: 64, ScaleDType: "F32", Rows: 8, Cols: 100, PaddedCols: 100}, "padded_cols 100, want cols 100 rounded up to a whole group of 64 (128)"},
		{scheme.Quantization{Type: scheme.Int8, Symmetric: true, ScaleDType: "F32", Rows: 8, Cols: 99}, "rows x cols 8 x 99 disagree with the tensor's shape [8 100]"},
	} {
		if err := c.q.Validate([]int{8, 100}); err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v, want %s", c.q, err, c.want)
		}
	}
}

// The family registry's checks: an unknown family is refused by name, a GPT-NeoX stack (named or
// not) takes no family settings, stop ids are ids of the vocabulary, and the format version
// follows what a config uses.
func TestFamilyChecks(t *testing.T) {
	base := func() *Config {
		p, err := FindPreset("vanilla_31")
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Config()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := base(); c.Version() != 1 || c.Validate() != nil {
		t.Fatalf("a GPT-NeoX preset: version %d, %v", c.Version(), c.Validate())
	}
	for _, c := range []struct {
		edit func(c *Config)
		want string
	}{
		{func(c *Config) { c.Decoder.Family = "mamba" }, `decoder: decoder family "mamba" is not one this build knows (gpt-neox)`},
		// Llama is btconvert's, but this test binary is built without it.
		{func(c *Config) { c.Decoder.Family = "llama" }, "decoder: this program was built without the Llama family (package families/llama)"},
		{func(c *Config) { c.Decoder.KVHeads = 4 }, "decoder: a GPT-NeoX stack has no num_kv_heads or options"},
		{func(c *Config) { c.Decoder.Family, c.Decoder.KVHeads = FamilyNeoX, 4 }, "decoder: a GPT-NeoX stack has no num_kv_heads or options"},
		{func(c *Config) { c.Decoder.KVHeads = 3 }, "decoder: num_kv_heads 3 must divide num_heads 8"},
		{func(c *Config) { c.StopTokenIDs = []int{5, 50304} }, "stop_token_ids: 50304 must be an id of the vocabulary (0 to 50303)"},
		{func(c *Config) { c.StopTokenIDs = make([]int, 65) }, "stop_token_ids: 65 ids (at most 64)"},
	} {
		cfg := base()
		c.edit(cfg)
		if err := cfg.Validate(); err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
	c := base()
	c.StopTokenIDs = []int{7}
	if c.Validate() != nil || c.Version() != 2 {
		t.Errorf("stop ids: version %d, %v", c.Version(), c.Validate())
	}
	c = base()
	c.Decoder.Family = FamilyNeoX // named out loud: still GPT-NeoX everywhere
	if !c.Decoder.IsNeoX() || c.Version() != 1 || c.Validate() != nil || !strings.HasPrefix(c.Describe(), "vanilla GPT-NeoX: ") {
		t.Errorf("family named gpt-neox: %s, version %d, %v", c.Describe(), c.Version(), c.Validate())
	}
}

// A program built without the family a config needs says which family, wherever it meets the
// config: resolving an official YAML, validating our config.json, listing the tensors (none).
func TestWithoutTheFamilies(t *testing.T) {
	blk, _, err := Released("block_main_b4_5", OriginPreset)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := FindPreset("block_main_b4_5")
	cfg, err := p.Config()
	if err != nil {
		t.Fatal(err)
	}
	_, van, _ := Released("vanilla_31", OriginPreset)

	// The lookup embedder (families/lookup).
	partKinds.Lock()
	lookup := encoderClasses[ClassLookup]
	delete(encoderClasses, ClassLookup)
	partKinds.Unlock()
	const noLookup = "this program was built without the lookup embedder family (package families/lookup)"
	if _, _, err := blk.Resolve(nil, nil, Provenance{}); err == nil || err.Error() != `embedder.cls "lookup": `+noLookup {
		t.Errorf("resolving without the lookup embedder: %v", err)
	}
	if err := cfg.Validate(); err == nil || err.Error() != "embedder: "+noLookup {
		t.Errorf("validating without the lookup embedder: %v", err)
	}
	for _, s := range Tensors(cfg) { // the rest of the table, without the missing embedder's
		if s.Component == Embedder && s.Part == PartEmbeddings {
			t.Errorf("%s listed without the lookup embedder", s.Key())
		}
	}
	partKinds.Lock()
	encoderClasses[ClassLookup] = lookup
	partKinds.Unlock()

	// GPT-NeoX (families/gptneox): its HF config resolves the official YAML's decoders, and its
	// stack is the decoders' family.
	decoderClass.Lock()
	neoxHF := decoderClass.c
	decoderClass.c = nil
	decoderClass.Unlock()
	const noNeoX = "this program was built without the GPT-NeoX family (package families/gptneox)"
	if _, _, err := blk.Resolve(nil, nil, Provenance{}); err == nil || err.Error() != "block_decoder: "+noNeoX {
		t.Errorf("resolving a Block YAML without GPT-NeoX: %v", err)
	}
	if _, _, err := van.Resolve(nil, nil, Provenance{}); err == nil || err.Error() != "decoder: "+noNeoX {
		t.Errorf("resolving a vanilla YAML without GPT-NeoX: %v", err)
	}
	if _, err := (Shape{Preset: "block_main_b4_5", Base: "EleutherAI/pythia-70m"}).Config(); err == nil || !strings.Contains(err.Error(), noNeoX) {
		t.Errorf("a preset on another base without GPT-NeoX: %v", err)
	}
	decoderClass.Lock()
	decoderClass.c = neoxHF
	decoderClass.Unlock()
	families.Lock()
	neox := families.m[FamilyNeoX]
	delete(families.m, FamilyNeoX)
	families.Unlock()
	if err := cfg.Validate(); err == nil || err.Error() != "block_decoder: "+noNeoX {
		t.Errorf("validating without GPT-NeoX: %v", err)
	}
	families.Lock()
	families.m[FamilyNeoX] = neox
	families.Unlock()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with the families back: %v", err)
	}
}
