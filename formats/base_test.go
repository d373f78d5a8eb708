package formats

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// synthetic writes an official checkpoint of a random Block Transformer with D = 128, 2 + 2 layers,
// 16 heads and an FFN of 4096 (what pythia-410m-deduped gives such a YAML), vocabulary 256, with
// the given config.yaml (none if yamlText is "").
func synthetic(t *testing.T, yamlText string) string {
	t.Helper()
	cfg, err := ShapeSpec{Block: true, Hidden: 128, BlockLayers: 2, TokenLayers: 2, Vocab: 256, BlockLength: 4}.Config()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := ExportOfficial(RandomModel(cfg, 1, F32), dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "config.yaml"))
	if yamlText != "" {
		os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(yamlText), 0o644)
	}
	return dir
}

// officialYAML is a released-style config: each decoder names pythia-410m-deduped and states only
// its layers and hidden size (and here the vocabulary), plus extra under each decoder's config.
func officialYAML(base, extra string) string {
	return `block_length: 4
max_length: 2048
embedder:
  cls: lookup
  projection_method: concat
  config:
    vocab_size: 256
    hidden_size: 32
block_decoder:
  cls: gpt-neo-x
  model_name_or_path: ` + base + `
  config:
    num_hidden_layers: 2
    hidden_size: 128
    vocab_size: 256` + extra + `
token_decoder:
  cls: gpt-neo-x
  model_name_or_path: ` + base + `
  expansion_method: expansion_layer
  expansion_ratio: 2
  decoding_strategy: prefix
  config:
    num_hidden_layers: 2
    hidden_size: 128
    vocab_size: 256` + extra + `
precision: bf16
`
}

// Heads and FFN come from the base model the YAML names, never from the hidden size.
func TestBaseModelGivesHeadsAndFFN(t *testing.T) {
	m := mustOpen(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "")))
	for _, d := range []*DecoderConfig{m.Config.BlockDecoder, &m.Config.TokenDecoder.DecoderConfig} {
		if d.Heads != 16 || d.HeadDim != 8 || d.RotaryDims != 2 || d.Intermediate != 4096 || d.MaxPositions != 2048 {
			t.Fatalf("resolved %+v, want 16 heads of 8, rotary dims 2, FFN 4096", *d)
		}
	}
	want := "block_decoder: num_hidden_layers 2, hidden_size 128, vocab_size 256 from config.yaml; num_attention_heads 16, intermediate_size 4096, " +
		"rotary_pct 0.25, rotary_emb_base 10000, layer_norm_eps 1e-05, use_parallel_residual true, hidden_act gelu, max_position_embeddings 2048 from EleutherAI/pythia-410m-deduped"
	if !slices.Contains(m.Notes, want) {
		t.Fatalf("notes %q lack %q", m.Notes, want)
	}
	if s := m.Config.Source; s == nil || s.MaxLength != 2048 || s.Precision != "bf16" || s.BaseModels[BlockDecoder] != "EleutherAI/pythia-410m-deduped" {
		t.Fatalf("source %+v", s)
	}
}

// A head count stated in the YAML wins over the base model's (the weights do not tell them apart).
func TestStatedHeadsOverrideBase(t *testing.T) {
	m := mustOpen(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 4")))
	if d := m.Config.BlockDecoder; d.Heads != 4 || d.HeadDim != 32 || d.RotaryDims != 8 || d.Intermediate != 4096 {
		t.Fatalf("resolved %+v", *d)
	}
}

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

func TestConfigResolutionErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		heads      int
		want       string // after "<dir>/"
	}{
		// The bug this resolution fixes: the old copies of the fixtures' YAMLs did not state heads and
		// FFN, so pythia-410m-deduped's FFN of 4096 meets weights trained with 512.
		{"base FFN vs weights", "", 0, ""},
		{"unknown key", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_head: 4"), 0,
			`config.yaml: block_decoder.config: unknown key "num_attention_head" (not a GPTNeoXConfig setting)`},
		{"unknown base", officialYAML("my-org/my-neox", ""), 0,
			`config.yaml: block_decoder: num_attention_heads is unknown (model_name_or_path "my-org/my-neox" is not a base model btconvert knows and block_decoder.config does not state it): state num_attention_heads under block_decoder.config in config.yaml, or pass --heads N`},
		{"heads disagree", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 4"), 8,
			"config.yaml: block_decoder.config states num_attention_heads 4; --heads 8 disagrees"},
		{"odd rotary", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 32"), 0,
			"config.yaml: block_decoder: rotary_pct 0.25 from EleutherAI/pythia-410m-deduped gives 1 rotary dims of a head of 4 (num_attention_heads 32 from config.yaml): they must be even and at most the head size"},
		{"bad value", officialYAML("EleutherAI/pythia-410m-deduped", "\n    layer_norm_eps: tiny"), 0,
			"config.yaml: block_decoder.config: layer_norm_eps: tiny is not a non-negative number"},
		{"no yaml, no heads", "", -1,
			": no config.yaml beside the weights, and the number of attention heads cannot be read from them: pass --heads N (or give the official config.yaml with --config)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var dir string
			switch c.name {
			case "base FFN vs weights":
				dir = copyFixture(t, "bt-tiny")
				y, _ := os.ReadFile(filepath.Join(dir, "config.yaml"))
				y = []byte(strings.NewReplacer("    num_attention_heads: 4\n", "", "    intermediate_size: 512\n", "").Replace(string(y)))
				os.WriteFile(filepath.Join(dir, "config.yaml"), y, 0o644)
				c.want = `/model.safetensors: tensor "block_decoder.gpt_neox.layers.0.mlp.dense_h_to_4h.weight": shape [512 128] disagrees with the config (want [4096 128]): intermediate_size 4096 from EleutherAI/pythia-410m-deduped`
			default:
				dir = synthetic(t, c.yaml)
				c.want = "/" + c.want
				if c.heads < 0 {
					c.want, c.heads = c.want[1:], 0
				}
			}
			_, err := Open(dir, OpenOptions{Heads: c.heads})
			if err == nil || err.Error() != dir+c.want {
				t.Fatalf("got  %v\nwant %s%s", err, dir, c.want)
			}
			if !IsInputError(err) {
				t.Fatal("not an InputError")
			}
		})
	}
}

// Without a YAML, --heads completes what the shapes say (FFN from dense_h_to_4h).
func TestInferWithHeads(t *testing.T) {
	dir := synthetic(t, "")
	m, err := Open(dir, OpenOptions{Heads: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := m.Config.TokenDecoder
	if d.Heads != 16 || d.Intermediate != 4096 || d.ExpansionRatio != 2 || m.Config.VocabSize != 256 || m.Config.BlockLength != 4 {
		t.Fatalf("inferred %+v", *d)
	}
}

// An export states heads and FFN, so it reads back as the same 16-head model (no base model guess).
func TestExportKeepsHeadsAndFFN(t *testing.T) {
	src := mustOpen(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "")))
	out := filepath.Join(t.TempDir(), "official")
	if err := ExportOfficial(src, out, ExportOptions{Name: "synthetic"}); err != nil {
		t.Fatal(err)
	}
	y, _ := os.ReadFile(filepath.Join(out, "config.yaml"))
	for _, want := range []string{"num_attention_heads: 16", "intermediate_size: 4096", "model_name_or_path: EleutherAI/pythia-410m-deduped",
		"max_length: 2048", "precision: bf16", "layer_norm_eps: 1.0e-05", "rotary_pct: 0.25"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("exported config.yaml lacks %q:\n%s", want, y)
		}
	}
	back := mustOpen(t, out)
	if !reflect.DeepEqual(back.Config, src.Config) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", back.Config.BlockDecoder, src.Config.BlockDecoder)
	}
}

// The official vanilla YAML: model_name_or_path plus model_config, here over pythia-14m.
func TestVanillaYAML(t *testing.T) {
	dir := copyFixture(t, "pythia-tiny")
	want := mustOpen(t, dir).Config
	os.Remove(filepath.Join(dir, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("name: pythia-tiny\nmodel: gpt-neo-x\nmodel_name_or_path: EleutherAI/pythia-14m\n"+
		"model_config:\n  num_hidden_layers: 4\n  vocab_size: 256\nmax_length: 2048\n"), 0o644)
	m := mustOpen(t, dir)
	if !reflect.DeepEqual(archOnly(m.Config), archOnly(want)) {
		t.Fatalf("yaml %+v\njson %+v", *m.Config.Decoder, *want.Decoder)
	}
	if !slices.Contains(m.Notes, "decoder: num_hidden_layers 4, vocab_size 256 from config.yaml; hidden_size 128, num_attention_heads 4, intermediate_size 512, "+
		"rotary_pct 0.25, rotary_emb_base 10000, layer_norm_eps 1e-05, use_parallel_residual true, hidden_act gelu, max_position_embeddings 2048 from EleutherAI/pythia-14m") {
		t.Fatalf("notes %q", m.Notes)
	}
}
