package source_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/families/gptneox"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/internal/testfix"
)

func open(path string) (*formats.Model, error) {
	return source.Open(path, formats.OpenOptions{})
}

// archOnly is the config without its provenance (base model names, training length, precision).
func archOnly(c *arch.Config) *arch.Config {
	a := *c
	a.Source, a.Origins = nil, nil
	return &a
}

// Every tensor of an imported official checkpoint is the checkpoint's own bytes.
func TestImportOfficialKeepsBytes(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-tiny"))
	if m.Format != official.Format || !slices.Contains(m.Notes, "dropped block_decoder.gpt_neox.embed_in.weight (present in official checkpoints, never used by the model)") {
		t.Fatalf("format %s notes %v", m.Format, m.Notes)
	}
	dir := testfix.Imported(t, "bt-tiny")
	src, _ := safetensors.Open(filepath.Join(testfix.Path("bt-tiny"), "model.safetensors"))
	defer src.Close()
	out := testfix.Open(t, dir)
	if len(out.Tensors) != len(src.Tensors)-1 {
		t.Fatalf("%d tensors, source has %d (+ the unused embed_in)", len(out.Tensors), len(src.Tensors))
	}
	for _, ot := range out.Tensors {
		want, err := src.Raw(official.Name(out.Config, arch.Find(out.Config, ot.Component, ot.Name).ID()))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := ot.Raw()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the checkpoint", ot.Key())
		}
	}
	// The manifest hashes what is on disk.
	man, _, err := modeldir.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range man.Files {
		if err := modeldir.CheckFile(dir, man, f.Name, true); err != nil {
			t.Fatalf("manifest entry %+v: %v", f, err)
		}
	}
}

// Without config.yaml the architecture is read off the shapes (heads given) and equals the YAML one.
func TestInferOfficialConfig(t *testing.T) {
	for _, name := range []string{"bt-tiny", "bt-from-pythia-tiny"} {
		dir := t.TempDir()
		data, _ := os.ReadFile(filepath.Join(testfix.Path(name), "model.safetensors"))
		os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644)
		inferred, err := source.Open(dir, formats.OpenOptions{Heads: arch.Heads{4}})
		if err != nil {
			t.Fatal(err)
		}
		defer inferred.Close()
		withYAML := testfix.Open(t, testfix.Path(name))
		if !reflect.DeepEqual(archOnly(inferred.Config), archOnly(withYAML.Config)) {
			a, _ := json.Marshal(inferred.Config)
			b, _ := json.Marshal(withYAML.Config)
			t.Fatalf("%s: inferred %s\nyaml %s", name, a, b)
		}
	}
}

func TestNeoXConfigSpellings(t *testing.T) {
	base, _ := os.ReadFile(filepath.Join(testfix.Path("pythia-tiny"), "config.json"))
	weights, _ := os.ReadFile(filepath.Join(testfix.Path("pythia-tiny"), "model.safetensors"))
	want := testfix.Open(t, testfix.Path("pythia-tiny")).Config
	if want.Decoder.RotaryDims != 8 || want.Decoder.Heads != 4 || !want.Decoder.ParallelResidual {
		t.Fatalf("pythia-tiny config %+v", want.Decoder)
	}
	for name, edit := range map[string]func(m map[string]any){
		"partial_rotary_factor": func(m map[string]any) {
			delete(m, "rotary_pct")
			m["partial_rotary_factor"] = 0.25
			delete(m, "rotary_emb_base")
			m["rope_theta"] = 10000
		},
		"rope_parameters": func(m map[string]any) {
			delete(m, "rotary_pct")
			delete(m, "rotary_emb_base")
			m["rope_parameters"] = map[string]any{"partial_rotary_factor": 0.25, "rope_theta": 10000, "rope_type": "default"}
		},
	} {
		var m map[string]any
		json.Unmarshal(base, &m)
		edit(m)
		dir := t.TempDir()
		cj, _ := json.Marshal(m)
		os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644)
		os.WriteFile(filepath.Join(dir, "model.safetensors"), weights, 0o644)
		got := testfix.Open(t, dir).Config
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v want %+v", name, got.Decoder, want.Decoder)
		}
	}
}

// The lm_head.weight spelling of the output head (transformers 5.x) is the same model, sharded.
func TestNeoXLMHead(t *testing.T) {
	src := testfix.Open(t, testfix.Path("pythia-tiny"))
	dir := t.TempDir()
	var wts []safetensors.WriteTensor
	for _, tt := range src.Tensors {
		name := "gpt_neox." + tt.Name
		if tt.Name == "embed_out.weight" {
			name = "lm_head.weight"
		}
		wts = append(wts, safetensors.WriteTensor{Name: name, DType: tt.DType, Shape: tt.Shape, Data: tt.Raw})
	}
	if _, err := safetensors.WriteSharded(dir, 400_000, nil, wts, nil); err != nil {
		t.Fatal(err)
	}
	cj, _ := os.ReadFile(filepath.Join(testfix.Path("pythia-tiny"), "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644)
	if _, err := os.Stat(filepath.Join(dir, safetensors.IndexName)); err != nil {
		t.Fatal("expected a sharded checkpoint")
	}
	m := testfix.Open(t, dir)
	for i, tt := range m.Tensors {
		a, _ := tt.Raw()
		b, _ := src.Tensors[i].Raw()
		if tt.Key() != src.Tensors[i].Key() || !bytes.Equal(a, b) {
			t.Fatalf("%s differs", tt.Key())
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	drop := func(name string) func([]safetensors.WriteTensor) []safetensors.WriteTensor {
		return func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			return slices.DeleteFunc(w, func(x safetensors.WriteTensor) bool { return x.Name == name })
		}
	}
	cases := []struct {
		name    string
		fixture string
		edit    func(dir string)
		want    string // message after "<dir>"
	}{
		{"missing tensor", "bt-tiny", func(d string) { testfix.Rewrite(t, d, drop("token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias")) },
			`: tensor "token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias": missing from the checkpoint (the architecture needs it)`},
		{"shape vs config", "bt-tiny", func(d string) {
			y, _ := os.ReadFile(filepath.Join(d, "config.yaml"))
			os.WriteFile(filepath.Join(d, "config.yaml"), bytes.Replace(y, []byte("expansion_ratio: 2"), []byte("expansion_ratio: 3"), 1), 0o644)
		}, `/model.safetensors: tensor "token_decoder.expansion_layer.weight": shape [256 128] disagrees with the config (want [384 128])`},
		{"extra tensor", "bt-tiny", func(d string) {
			testfix.Rewrite(t, d, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
				return append(w, safetensors.WriteTensor{Name: "block_decoder.gpt_neox.layers.2.attention.dense.bias", DType: safetensors.F32, Shape: []int{128},
					Data: func() ([]byte, error) { return make([]byte, 512), nil }})
			})
		}, `/model.safetensors: tensor "block_decoder.gpt_neox.layers.2.attention.dense.bias": not part of a Block Transformer with this architecture (check --config)`},
		{"neox missing head", "pythia-tiny", func(d string) {
			testfix.Rewrite(t, d, drop("gpt_neox.layers.3.attention.dense.weight"))
		}, `: tensor "gpt_neox.layers.3.attention.dense.weight": missing from the checkpoint (config.json asks for it)`},
		{"neox no config", "pythia-tiny", func(d string) { os.Remove(filepath.Join(d, "config.json")) },
			": GPT-NeoX weights but no config.json beside them, and the attention heads cannot be read from them: give --config (config.json, the official YAML, or an official config: vanilla_31, vanilla_70, vanilla_160, vanilla_410), or --heads N to read the rest off the weights"},
		{"bad yaml", "bt-tiny", func(d string) { os.WriteFile(filepath.Join(d, "config.yaml"), []byte("block_length: [\n"), 0o644) },
			"/config.yaml: not valid YAML:"},
		{"no weights", "bt-tiny", func(d string) { os.Remove(filepath.Join(d, "model.safetensors")) },
			": no model.safetensors or model.safetensors.index.json here"},
		{"int weights", "pythia-tiny", func(d string) {
			testfix.Rewrite(t, d, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
				for i := range w {
					if w[i].Name == "gpt_neox.final_layer_norm.bias" {
						w[i].DType = safetensors.I16
					}
				}
				return w
			})
		}, `/model.safetensors: tensor "gpt_neox.final_layer_norm.bias": dtype I16 is not a float type`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := testfix.Copy(t, c.fixture)
			c.edit(dir)
			_, err := open(dir)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := testfix.ErrText(err); !strings.HasPrefix(got, dir+c.want) {
				t.Fatalf("got  %s\nwant %s%s", got, dir, c.want)
			}
			if !errs.IsInput(err) {
				t.Fatal("not an InputError")
			}
		})
	}
}

// synthetic writes an official checkpoint of a random Block Transformer with D = 128, 2 + 2 layers,
// 4 heads and an FFN of 512 (what the official fill-in gives such a YAML), vocabulary 256, with
// the given config.yaml (none if yamlText is "").
func synthetic(t *testing.T, yamlText string) string {
	t.Helper()
	cfg, err := arch.Shape{Block: true, Hidden: 128, BlockLayers: 2, TokenLayers: 2, Vocab: 256, BlockLength: 4}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.BlockDecoder; d.Heads != 4 || d.Intermediate != 512 {
		t.Fatalf("shape %+v", *d)
	}
	dir := testfix.Export(t, randinitModel(cfg), formats.ExportOptions{})
	os.Remove(filepath.Join(dir, "config.yaml"))
	if yamlText != "" {
		os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(yamlText), 0o644)
	}
	return dir
}

// officialYAML is a config as the official repository writes them: each decoder names base and
// states only its layers and hidden size (and here the vocabulary), plus extra under each
// decoder's config.
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

// Heads and FFN come from the official fill-in (width 128: 4 heads of 32, FFN 512), not from the
// base model (pythia-410m-deduped: 16 heads, FFN 4096); the rest from the base model.
func TestFillInGivesHeadsAndFFN(t *testing.T) {
	m := testfix.Open(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "")))
	for _, d := range []*arch.DecoderConfig{m.Config.BlockDecoder, &m.Config.TokenDecoder.DecoderConfig} {
		if d.Heads != 4 || d.HeadDim != 32 || d.RotaryDims != 8 || d.Intermediate != 512 || d.MaxPositions != 2048 {
			t.Fatalf("resolved %+v, want 4 heads of 32, rotary dims 8, FFN 512", *d)
		}
	}
	want := "block_decoder: num_hidden_layers 2, hidden_size 128, vocab_size 256 from config.yaml; num_attention_heads 4 from the official fill-in (hidden_size 128 // 32); " +
		"intermediate_size 512 from the official fill-in (4 x hidden_size 128); rotary_pct 0.25, rotary_emb_base 10000, layer_norm_eps 1e-05, use_parallel_residual true, hidden_act gelu, max_position_embeddings 2048 from EleutherAI/pythia-410m-deduped"
	if !slices.Contains(m.Notes, want) {
		t.Fatalf("notes %q lack %q", m.Notes, want)
	}
	if s := m.Config.Source; s == nil || s.MaxLength != 2048 || s.Precision != "bf16" || s.BaseModels[arch.BlockDecoder] != "EleutherAI/pythia-410m-deduped" {
		t.Fatalf("source %+v", s)
	}
	a := m.Config.Summary()
	if o := a.BlockDecoder.Origin; o["heads"] != "fill-in" || o["intermediate_size"] != "fill-in" || o["hidden_size"] != "yaml" || o["layers"] != "yaml" || o["head_dim"] != "fill-in" {
		t.Fatalf("origins %v", o)
	}
}

// Stated values win over the fill-in (the weights do not tell head counts apart).
func TestStatedHeadsOverrideFillIn(t *testing.T) {
	m := testfix.Open(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 8")))
	if d := m.Config.BlockDecoder; d.Heads != 8 || d.HeadDim != 16 || d.RotaryDims != 4 || d.Intermediate != 512 {
		t.Fatalf("resolved %+v", *d)
	}
	if o := m.Config.Origins; o["block_decoder.heads"] != "yaml" || o["block_decoder.intermediate_size"] != "fill-in" {
		t.Fatalf("origins %v", o)
	}
}

func TestConfigResolutionErrors(t *testing.T) {
	summation := strings.NewReplacer("  expansion_ratio: 2\n", "", "decoding_strategy: prefix", "decoding_strategy: summation")
	cases := []struct {
		name, yaml string
		heads      arch.Heads
		want       string // after "<dir>/"
	}{
		// A stated value the weights disagree with: the message names the tensor, the key, the
		// value and where it came from.
		{"stated FFN vs weights", officialYAML("EleutherAI/pythia-410m-deduped", "\n    intermediate_size: 1024"), nil,
			`model.safetensors: tensor "block_decoder.gpt_neox.layers.0.mlp.dense_h_to_4h.weight": shape [512 128] disagrees with the config (want [1024 128]): block_decoder.intermediate_size 1024 from config.yaml, as the official code resolves this config`},
		{"unknown key", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_head: 4"), nil,
			`config.yaml: block_decoder.config: unknown key "num_attention_head" (not a GPTNeoXConfig setting)`},
		{"heads disagree with the YAML", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 4"), arch.Heads{8},
			"config.yaml: block_decoder: num_attention_heads 4 from config.yaml; --heads 8 disagrees (the official code builds 4 heads from this config)"},
		{"heads disagree with the fill-in", officialYAML("EleutherAI/pythia-410m-deduped", ""), arch.Heads{16},
			"config.yaml: block_decoder: num_attention_heads 4 from the official fill-in (hidden_size 128 // 32); --heads 16 disagrees (the official code builds 4 heads from this config)"},
		{"odd rotary", officialYAML("EleutherAI/pythia-410m-deduped", "\n    num_attention_heads: 32"), nil,
			"config.yaml: block_decoder: rotary_pct 0.25 from EleutherAI/pythia-410m-deduped gives 1 rotary dims of a head of 4 (num_attention_heads 32 from config.yaml): they must be even, not negative and at most the head size"},
		{"bad value", officialYAML("EleutherAI/pythia-410m-deduped", "\n    layer_norm_eps: tiny"), nil,
			"config.yaml: block_decoder.config: layer_norm_eps: tiny is not a non-negative number"},
		{"no hidden", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "    hidden_size: 128\n", "", 1), nil,
			"config.yaml: block_decoder.config states no hidden_size: the official code needs it to fill in num_attention_heads and intermediate_size (state all three, or hidden_size)"},
		{"prefix without ratio", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "  expansion_ratio: 2\n", "", 1), nil,
			"config.yaml: token_decoder.expansion_ratio is not stated: the official code requires it for prefix decoding"},
		{"no decoding", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "  decoding_strategy: prefix\n", "", 1), nil,
			"config.yaml: token_decoder.decoding_strategy is not stated (the official code needs prefix, summation or cross_attention)"},
		{"summation ratio", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "decoding_strategy: prefix", "decoding_strategy: summation", 1), nil,
			"config.yaml: token_decoder.expansion_ratio 2: summation decoding needs expansion_ratio = block_length (4)"},
		{"summation, ratio omitted, weights of prefix r=2", summation.Replace(officialYAML("EleutherAI/pythia-410m-deduped", "")), nil,
			`model.safetensors: tensor "token_decoder.expansion_layer.weight": shape [256 128] disagrees with the config (want [512 128]): expansion_ratio 4 from the official default for summation decoding (block_length 4) x token_decoder.hidden_size 128 from config.yaml, as the official code resolves this config`},
		{"roberta without a base", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "cls: lookup", "cls: roberta", 1), nil,
			"config.yaml: embedder.model_name_or_path is not stated: the official code builds the embedder from that model's config (btconvert knows roberta-base)"},
		{"cross_attention without t5", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "decoding_strategy: prefix", "decoding_strategy: cross_attention", 1), nil,
			"config.yaml: token_decoder.decoding_strategy cross_attention needs token_decoder.cls t5 (the official code supports it for the T5 token decoder only)"},
		{"gpt-neo", strings.Replace(officialYAML("EleutherAI/pythia-410m-deduped", ""), "cls: gpt-neo-x", "cls: gpt-neo", 1), nil,
			"config.yaml: block_decoder.cls gpt-neo is not supported yet (btconvert runs lookup, roberta and roberta_cls embedders, gpt-neo-x decoders with prefix or summation decoding, and t5 token decoders with cross_attention decoding)"},
		{"no yaml, no heads", "", nil,
			": no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give --config NAME (an official config, e.g. block_main_b4_85) or --config PATH.yaml, or --heads (the official default for hidden 128 is 4 heads: --heads 4)"},
		{"no yaml, --decoding summation on prefix weights", "", arch.Heads{4},
			""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := synthetic(t, c.yaml)
			o := formats.OpenOptions{Heads: c.heads}
			want := dir + "/" + c.want
			switch {
			case c.yaml == "" && c.heads == nil:
				want = dir + c.want
			case c.yaml == "":
				o.Decoding = arch.Summation
				want = dir + `/model.safetensors: tensor "token_decoder.expansion_layer.weight": gives 2 vectors; summation decoding needs block_length 4 of them (--decoding summation does not fit these weights)`
			}
			_, err := source.Open(dir, o)
			if err == nil || testfix.ErrText(err) != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
			if !errs.IsInput(err) {
				t.Fatal("not an InputError")
			}
		})
	}
}

// Without a YAML, the given head count completes what the shapes say (FFN from dense_h_to_4h);
// prefix decoding when the expansion layer's width rules summation out.
func TestInferWithHeads(t *testing.T) {
	m, err := source.Open(synthetic(t, ""), formats.OpenOptions{Heads: arch.Heads{16}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := m.Config.TokenDecoder
	if d.Heads != 16 || d.Intermediate != 512 || d.ExpansionRatio != 2 || d.Decoding != arch.Prefix || m.Config.VocabSize != 256 || m.Config.BlockLength != 4 {
		t.Fatalf("inferred %+v", *d)
	}
	if o := m.Config.Summary().TokenDecoder.Origin; o["heads"] != "given" || o["intermediate_size"] != "shapes" || o["decoding"] != "shapes" {
		t.Fatalf("origins %v", o)
	}
}

// An export states heads and FFN, so it reads back as the same model whatever the base model.
func TestExportKeepsHeadsAndFFN(t *testing.T) {
	src := testfix.Open(t, synthetic(t, officialYAML("EleutherAI/pythia-410m-deduped", "")))
	out := testfix.Export(t, src, formats.ExportOptions{Name: "synthetic"})
	y, _ := os.ReadFile(filepath.Join(out, "config.yaml"))
	for _, want := range []string{"num_attention_heads: 4", "intermediate_size: 512", "model_name_or_path: EleutherAI/pythia-410m-deduped",
		"max_length: 2048", "precision: bf16", "layer_norm_eps: 1.0e-05", "rotary_pct: 0.25", "decoding_strategy: prefix", "expansion_ratio: 2"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("exported config.yaml lacks %q:\n%s", want, y)
		}
	}
	back := testfix.Open(t, out)
	if !reflect.DeepEqual(archOnly(back.Config), archOnly(src.Config)) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", back.Config.BlockDecoder, src.Config.BlockDecoder)
	}
}

// The official vanilla YAML: model_name_or_path plus model_config, here over pythia-14m.
func TestVanillaYAML(t *testing.T) {
	dir := testfix.Copy(t, "pythia-tiny")
	want := testfix.Open(t, dir).Config
	os.Remove(filepath.Join(dir, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("name: pythia-tiny\nmodel: gpt-neo-x\nmodel_name_or_path: EleutherAI/pythia-14m\n"+
		"model_config:\n  num_hidden_layers: 4\n  vocab_size: 256\nmax_length: 2048\n"), 0o644)
	m := testfix.Open(t, dir)
	if m.Format != gptneox.Format || !reflect.DeepEqual(archOnly(m.Config), archOnly(want)) {
		t.Fatalf("yaml %+v\njson %+v", *m.Config.Decoder, *want.Decoder)
	}
	if !slices.Contains(m.Notes, "decoder: num_hidden_layers 4, vocab_size 256 from config.yaml; hidden_size 128, num_attention_heads 4, intermediate_size 512, "+
		"rotary_pct 0.25, rotary_emb_base 10000, layer_norm_eps 1e-05, use_parallel_residual true, hidden_act gelu, max_position_embeddings 2048 from EleutherAI/pythia-14m") {
		t.Fatalf("notes %q", m.Notes)
	}
	// A vanilla YAML gets no fill-in: the unknown base leaves the heads open.
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("model_name_or_path: my-org/neox\nmodel_config:\n  num_hidden_layers: 4\n  hidden_size: 128\n"), 0o644)
	_, err := source.Open(dir, formats.OpenOptions{})
	if want := dir + `/config.yaml: decoder: num_attention_heads is unknown (model_name_or_path "my-org/neox" is not a base model btconvert knows and model_config does not state it): state num_attention_heads under model_config in config.yaml, or pass --heads N`; err == nil || testfix.ErrText(err) != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// Our folder and bundles refuse the options that only complete a checkpoint.
func TestCheckpointOptionsOnly(t *testing.T) {
	dir := testfix.Imported(t, "pythia-tiny")
	_, err := source.Open(dir, formats.OpenOptions{Heads: arch.Heads{4}})
	if want := dir + ": is a btconvert model folder; --heads applies to checkpoints only"; err == nil || testfix.ErrText(err) != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func randinitModel(cfg *arch.Config) *formats.Model { return randinit.Model(cfg, 1, safetensors.F32) }

// A checkpoint of a family this program was built without is named with the family it needs.
func TestCheckpointOfAMissingFamily(t *testing.T) {
	all := source.Layouts
	defer func() { source.Layouts = all }()
	source.Layouts = slices.DeleteFunc(slices.Clone(all), func(l formats.Layout) bool { return l.Format() == gptneox.Format })
	dir := testfix.Path("pythia-tiny")
	_, err := open(dir)
	if want := dir + ": holds a GPT-NeoX checkpoint (gpt_neox.embed_in.weight), but this program was built without the GPT-NeoX family (package families/gptneox)"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	// A checkpoint that shares the Llama family's token table name but not its layers (Phi-3's
	// fused qkv_proj) is not taken for one (this test binary has no Llama family either).
	phi := t.TempDir()
	data := func() ([]byte, error) { return make([]byte, 4*4*2), nil }
	if _, err := safetensors.Write(filepath.Join(phi, "model.safetensors"), nil, []safetensors.WriteTensor{
		{Name: "model.embed_tokens.weight", DType: safetensors.F16, Shape: []int{4, 4}, Data: data},
		{Name: "model.layers.0.self_attn.qkv_proj.weight", DType: safetensors.F16, Shape: []int{4, 4}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := open(phi); err == nil || !strings.Contains(err.Error(), "not a checkpoint of a layout btconvert reads") {
		t.Fatalf("a checkpoint of no family: %v", err)
	}
}
