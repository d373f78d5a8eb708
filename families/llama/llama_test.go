package llama_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/families/llama"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/uptrain"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
	"github.com/btconvert/btconvert/verify"
)

// The fixtures: tiny random models made by transformers' own Llama, Mistral and Qwen2 classes,
// with references computed by those classes in float64 (fixtures/tools/make_llama_fixtures.py).
var fixtures = []string{"llama-tiny", "mistral-tiny", "qwen2-tiny", "llama3-tiny"}

func load(t *testing.T, b compute.Backend, name string) *graph.Engine {
	t.Helper()
	m := testfix.Open(t, testfix.Path(name))
	e, err := graph.Load(m, b, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Scoring matches the reference within rel L2 1e-5, and greedy generation (batch 2, KV caches of
// the key/value heads only) gives its tokens, on every backend.
func TestParity(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		for _, name := range fixtures {
			e := load(t, b, name)
			r := testfix.LoadReference(t, name)
			got, shape, err := e.Score(r.IDs, r.B, r.T)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(shape, r.LogitsShape) {
				t.Fatalf("%s: shape %v want %v", name, shape, r.LogitsShape)
			}
			if d := testfix.RelL2(got, r.Logits); d > 1e-5 {
				t.Errorf("%s: rel L2 %.3g > 1e-5", name, d)
			} else {
				t.Logf("%s: rel L2 %.3g", name, d)
			}
			g, err := e.Generate(r.Prompts, graph.GenerateOptions{MaxNewTokens: len(r.Greedy[0])})
			if err != nil {
				t.Fatal(err)
			}
			for i := range r.Greedy {
				if !slices.Equal(g.Tokens[i], r.Greedy[i]) {
					t.Errorf("%s row %d:\n got %v\nwant %v", name, i, g.Tokens[i], r.Greedy[i])
				}
			}
		}
	})
}

// What each fixture's config.json says arrives in our config: grouped-query heads, tying, biases,
// rope settings.
func TestConfigRead(t *testing.T) {
	for _, c := range []struct {
		name, describe string
		kv             int
		theta          float64
		opt            string
	}{
		{"llama-tiny", "vanilla Llama-family 2 layers D=64 (4 heads x 16, 2 key/value heads, FFN 176), V=256", 2, 10000,
			`{"rope_linear_factor":2,"model_type":"llama","tied_head":false}`},
		{"mistral-tiny", "vanilla Llama-family 2 layers D=64 (4 heads x 16, 1 key/value heads, FFN 176), V=256", 1, 10000,
			`{"model_type":"mistral","tied_head":false,"sliding_window":4096}`},
		{"qwen2-tiny", "vanilla Llama-family 2 layers D=64 (4 heads x 16, 2 key/value heads, FFN 176), V=256", 2, 1e6,
			`{"qkv_bias":true,"model_type":"qwen2","tied_head":true,"sliding_window":4096}`},
		{"llama3-tiny", "vanilla Llama-family 2 layers D=64 (4 heads x 16, 2 key/value heads, FFN 176), V=256", 2, 500000,
			`{"rope_llama3":{"factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64},"model_type":"llama","tied_head":true}`},
	} {
		m := testfix.Open(t, testfix.Path(c.name))
		d := m.Config.Decoder
		if m.Format != llama.Format || m.Config.Describe() != c.describe || d.KVHeadCount() != c.kv || d.RotaryBase != c.theta ||
			d.RotaryDims != 16 || string(d.Options) != c.opt || m.Config.BOSTokenID != 1 || m.Config.EOSTokenID != 2 {
			t.Errorf("%s: %s %q kv %d theta %g rot %d options %s bos %d eos %d", c.name, m.Format, m.Config.Describe(), d.KVHeadCount(),
				d.RotaryBase, d.RotaryDims, d.Options, m.Config.BOSTokenID, m.Config.EOSTokenID)
		}
	}
}

// The special ids as HF's classes and generate take them: the class's defaults for absent ids
// (LlamaConfig: BOS 1, EOS 2), every id of an eos_token_id list, generation_config.json's list over
// config.json's, and -1 as no pad; export writes them back.
func TestTokenIDs(t *testing.T) {
	for _, c := range []struct {
		set      map[string]any
		genCfg   string
		bos, eos int
		stop     []int
		pad      int
	}{
		{map[string]any{"bos_token_id": absent, "eos_token_id": absent}, "", 1, 2, nil, 2},
		{map[string]any{"eos_token_id": []int{2, 67}, "pad_token_id": -1}, "", 1, 2, []int{67}, 2},
		{map[string]any{"pad_token_id": 0}, `{"eos_token_id": [5, 2, 9]}`, 1, 5, []int{2, 9}, 0},
	} {
		dir := testfix.Copy(t, "llama-tiny")
		editConfig(t, dir, c.set)
		os.Remove(filepath.Join(dir, "generation_config.json"))
		if c.genCfg != "" {
			os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(c.genCfg), 0o644)
		}
		m := testfix.Open(t, dir)
		cfg := m.Config
		if cfg.BOSTokenID != c.bos || cfg.EOSTokenID != c.eos || !slices.Equal(cfg.StopTokenIDs, c.stop) || cfg.PadTokenID != c.pad {
			t.Errorf("%v %s: bos %d eos %d stop %v pad %d", c.set, c.genCfg, cfg.BOSTokenID, cfg.EOSTokenID, cfg.StopTokenIDs, cfg.PadTokenID)
		}
		out := testfix.Export(t, m, formats.ExportOptions{})
		back := testfix.Open(t, out)
		if b := back.Config; b.EOSTokenID != c.eos || !slices.Equal(b.StopTokenIDs, c.stop) || b.PadTokenID != c.pad {
			t.Errorf("%v: exported back as eos %d stop %v pad %d", c.set, b.EOSTokenID, b.StopTokenIDs, b.PadTokenID)
		}
	}
}

// A generation ends at the first of the model's stop ids, as at its EOS.
func TestStopTokenIDs(t *testing.T) {
	r := testfix.LoadReference(t, "llama-tiny")
	m := testfix.Open(t, testfix.Path("llama-tiny"))
	cfg := *m.Config
	cfg.StopTokenIDs = []int{int(r.Greedy[0][5])}
	first := slices.Index(r.Greedy[0], r.Greedy[0][5])
	m.Config = &cfg
	e, err := graph.Load(m, testfix.Backend(t), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	g, err := e.Generate(r.Prompts[:1], graph.GenerateOptions{MaxNewTokens: len(r.Greedy[0]), StopAtEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Tokens[0], r.Greedy[0][:first]) || g.Finish[0] != graph.FinishEOS {
		t.Errorf("got %v (%s), want %v then the stop id", g.Tokens[0], g.Finish[0], r.Greedy[0][:first])
	}
}

// Export writes the HF layout back bit for bit: the same tensor names, dtypes, shapes and bytes
// (a tied head once, as the token table), and a config.json that reads back to the same config.
func TestExportBitForBit(t *testing.T) {
	for _, name := range fixtures {
		m := testfix.Open(t, testfix.Path(name))
		out := testfix.Export(t, m, formats.ExportOptions{})
		testfix.SameCheckpoint(t, filepath.Join(testfix.Path(name), "model.safetensors"), filepath.Join(out, "model.safetensors"))
		back := testfix.Open(t, out)
		a, _ := json.Marshal(m.Config)
		b, _ := json.Marshal(back.Config)
		if string(a) != string(b) {
			t.Errorf("%s: exported config reads back as\n%s\nwant\n%s", name, b, a)
		}
		// transformers 4.x refuses a rope_scaling factor written as an integer.
		if cj, _ := os.ReadFile(filepath.Join(out, "config.json")); name == "llama-tiny" && !strings.Contains(string(cj), `"factor": 2.0`) {
			t.Errorf("%s: config.json does not write the rope factor as a float:\n%s", name, cj)
		}
	}
}

// absent, as a value of editConfig, removes the key.
var absent = &struct{}{}

// editConfig sets (or with absent, removes) keys of dir/config.json.
func editConfig(t *testing.T, dir string, set map[string]any) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == absent {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// What the family does not run is refused at import, naming the key; nothing is misread.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		fixture string
		set     map[string]any
		msg     string
	}{
		{"llama-tiny", map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}},
			`rope_scaling type "dynamic" is not supported (none, linear or llama3)`},
		{"llama-tiny", map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 8.0}},
			`rope_scaling type "yarn" is not supported (none, linear or llama3)`},
		{"llama-tiny", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0}},
			`rope_scaling.low_freq_factor null: want a number`},
		{"llama-tiny", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 32}},
			`rope_scaling low_freq_factor 4 and high_freq_factor 1: want 0 < low < high`},
		{"mistral-tiny", map[string]any{"sliding_window": 32},
			"sliding_window 32 is under max_position_embeddings 256: sliding-window attention is not supported yet"},
		{"qwen2-tiny", map[string]any{"use_sliding_window": true, "sliding_window": 128},
			"sliding_window 128 is under max_position_embeddings 256: sliding-window attention is not supported yet"},
		{"llama-tiny", map[string]any{"vision_config": map[string]any{}},
			"vision_config / text_config: a multimodal model is not supported (btconvert reads Llama, Mistral and Qwen2 text models)"},
		{"llama-tiny", map[string]any{"model_type": "gemma"},
			`model_type "gemma" is not a Llama-family model btconvert reads (llama, mistral, qwen2)`},
		{"llama-tiny", map[string]any{"architectures": []string{"LlamaForSequenceClassification"}},
			"architectures [LlamaForSequenceClassification]: want [LlamaForCausalLM] for model_type llama (other heads than the causal LM's are not supported)"},
		{"llama-tiny", map[string]any{"hidden_act": "gelu"},
			`hidden_act "gelu" is not supported (a Llama-family MLP is SwiGLU: silu)`},
		{"llama-tiny", map[string]any{"num_key_value_heads": 3},
			"num_key_value_heads 3 must divide num_attention_heads 4"},
		{"llama-tiny", map[string]any{"head_dim": 32},
			"head_dim 32 other than hidden_size / num_attention_heads (16) is not supported yet"},
		{"llama-tiny", map[string]any{"tie_word_embeddings": true},
			"tie_word_embeddings is true but the checkpoint has its own lm_head.weight: set it false to use that head"},
		{"qwen2-tiny", map[string]any{"tie_word_embeddings": false},
			`tensor "lm_head.weight": missing from the checkpoint (config.json asks for it)`},
		{"mistral-tiny", map[string]any{"sliding_window": absent, "max_position_embeddings": 8192},
			"sliding_window 4096 is under max_position_embeddings 8192: sliding-window attention is not supported yet"},
		{"llama-tiny", map[string]any{"quantization_config": map[string]any{"load_in_8bit": true}},
			"quantization_config: a checkpoint quantized by another tool is not read; import the float model (btconvert quantize writes its own types)"},
		{"llama-tiny", map[string]any{"hidden_size": "64"},
			"hidden_size: a JSON string where a whole number belongs"},
		{"llama-tiny", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": "2"}},
			`rope_scaling.factor "2": want a number from 1 to 1024`},
		{"llama-tiny", map[string]any{"rms_norm_eps": 0},
			"rms_norm_eps 0 must be positive"},
		{"qwen2-tiny", map[string]any{"eos_token_id": nil},
			"eos_token_id is absent or null: btconvert needs the id a generation ends at (state it in config.json; generate --ignore-eos then still runs to -n)"},
		{"llama-tiny", map[string]any{"eos_token_id": []int{2, 9999}},
			"eos_token_id 9999 is not an id of the vocabulary (0 to 255)"},
		{"llama-tiny", map[string]any{"num_key_value_heads": 4},
			`tensor "model.layers.0.self_attn.k_proj.weight": shape [32 64] disagrees with the config (want [64 64]): num_key_value_heads 4 from config.json x head_dim 16 (hidden_size / num_attention_heads)`},
	} {
		dir := testfix.Copy(t, c.fixture)
		os.Remove(filepath.Join(dir, "generation_config.json"))
		editConfig(t, dir, c.set)
		m, err := source.Open(dir, formats.OpenOptions{})
		if err == nil {
			m.Close()
		}
		if err == nil || !strings.HasSuffix(testfix.ErrText(err), c.msg) {
			t.Errorf("%s %v: got %v\nwant %q", c.fixture, c.set, err, c.msg)
		}
	}
}

// Prompts of different lengths in one batch (left-padded, each row masked on its own) give each
// row the tokens it gets alone: the grouped-query attention takes the per-row mask.
func TestPaddedBatch(t *testing.T) {
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		e := load(t, b, "qwen2-tiny")
		r := testfix.LoadReference(t, "qwen2-tiny")
		short := r.Prompts[1][:9]
		both, err := e.Generate([][]int32{r.Prompts[0], short}, graph.GenerateOptions{MaxNewTokens: 12})
		if err != nil {
			t.Fatal(err)
		}
		alone, err := e.Generate([][]int32{short}, graph.GenerateOptions{MaxNewTokens: 12})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(both.Tokens[0], r.Greedy[0][:12]) || !slices.Equal(both.Tokens[1], alone.Tokens[0]) {
			t.Errorf("batched %v / %v, want %v / %v", both.Tokens[0], both.Tokens[1], r.Greedy[0][:12], alone.Tokens[0])
		}
	})
}

// The uptraining recipe on a Llama-family model: a Block Transformer whose decoders are Llama-family
// stacks holding the vanilla layers (partition: layer 0 in the block decoder, layer 1 in the token
// decoder), whose cached generation agrees with its full forward on every backend, and which the
// official layout cannot hold.
func TestFromVanilla(t *testing.T) {
	v := testfix.Open(t, testfix.Path("llama-tiny"))
	m, err := uptrain.Uptrain(v, uptrain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	for _, d := range []*arch.DecoderConfig{c.BlockDecoder, &c.TokenDecoder.DecoderConfig} {
		if d.Family != llama.Family || d.KVHeadCount() != 2 || d.Layers != 1 || string(d.Options) != string(v.Config.Decoder.Options) {
			t.Fatalf("decoder %+v", d)
		}
	}
	same := func(comp, name, vname string) {
		a, err := m.Tensor(comp, name).Raw()
		if err != nil {
			t.Fatal(err)
		}
		b, err := v.Tensor(arch.Decoder, vname).Raw()
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s/%s is not the vanilla %s", comp, name, vname)
		}
	}
	same(arch.BlockDecoder, "layers.0.self_attn.k_proj.weight", "layers.0.self_attn.k_proj.weight")
	same(arch.TokenDecoder, "layers.0.mlp.gate_proj.weight", "layers.1.mlp.gate_proj.weight")
	same(arch.TokenDecoder, "final_layer_norm.weight", "final_layer_norm.weight")
	if n := m.Tensor(arch.BlockDecoder, "final_layer_norm.bias"); n != nil {
		t.Error("an RMS norm has no bias")
	}
	if l := source.ExportLayout(c); l != nil {
		t.Errorf("the %s layout claims a Block Transformer with Llama-family decoders", l.Format())
	}
	testfix.EachBackend(t, func(t *testing.T, b compute.Backend) {
		e, err := graph.Load(m, b, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		sc, err := verify.RunSelfCheck(e, 1)
		if err != nil {
			t.Fatal(err)
		}
		if sc.CacheRelL2Err > 1e-5 || sc.Top1Agreement != 1 {
			t.Errorf("cached generation against the full forward: rel L2 %.3g, top-1 %.3f", sc.CacheRelL2Err, sc.Top1Agreement)
		}
	})
}

// A sharded bf16 folder (HF's index and shards) reads as the same model in bf16, and runs.
func TestShardedBF16(t *testing.T) {
	m := testfix.Open(t, testfix.Path("qwen2-tiny"))
	out := testfix.Export(t, m, formats.ExportOptions{DType: "BF16", ShardSize: 100 << 10})
	if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
		t.Fatalf("no shards: %v", err)
	}
	back := testfix.Open(t, out)
	for _, ts := range back.Tensors {
		if ts.DType != "BF16" {
			t.Fatalf("%s/%s is %s", ts.Component, ts.Name, ts.DType)
		}
	}
	e, err := graph.Load(back, testfix.Backend(t), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := testfix.LoadReference(t, "qwen2-tiny")
	got, _, err := e.Score(r.IDs, r.B, r.T)
	if err != nil {
		t.Fatal(err)
	}
	if d := testfix.RelL2(got, r.Logits); d > 0.05 || d < 1e-4 {
		t.Errorf("bf16 weights: rel L2 %.3g, want between 1e-4 (rounded) and 0.05", d)
	}
}

// Quantization takes every Linear of the family's table (int8 round-to-nearest, int4 with GPTQ on
// a calibration text), and the quantized models compute what their weights say: their logits equal
// those of the same weights dequantized into a float model (rel L2 1e-5), and int8 stays nearer the
// float reference than int4. qwen2-tiny's head is its token table (int8, as tables are): read as
// the head's product and as the lookup alike.
func TestQuantize(t *testing.T) {
	for _, name := range []string{"llama-tiny", "qwen2-tiny"} {
		t.Run(name, func(t *testing.T) { testQuantize(t, name) })
	}
}

func testQuantize(t *testing.T, name string) {
	r := testfix.LoadReference(t, name)
	relL2 := map[string]float64{}
	for _, c := range []struct {
		typ   quant.Type
		calib string
	}{{"int8", ""}, {"int4", testfix.GPL2}} {
		out := filepath.Join(t.TempDir(), string(c.typ))
		res, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: testfix.Path(name), Output: out,
			Settings: quant.Settings{Type: c.typ}, Calib: c.calib})
		if err != nil {
			t.Fatal(err)
		}
		m := testfix.Open(t, out)
		var linears int
		for key, q := range m.Config.Quantization {
			if strings.Contains(key, "_proj.weight") {
				linears++
				if q.Type != scheme.Type(c.typ) {
					t.Errorf("%s: %s is %s", c.typ, key, q.Type)
				}
			}
		}
		if linears != 2*7 {
			t.Errorf("%s: %d of the 14 Linears quantized", c.typ, linears)
		}
		if want := map[bool]string{true: "gptq", false: "rtn"}[c.calib != ""]; res.Provenance.Method != want {
			t.Errorf("%s: method %s, want %s", c.typ, res.Provenance.Method, want)
		}
		plain, err := quant.Dequantized(m, "F32")
		if err != nil {
			t.Fatal(err)
		}
		score := func(m *formats.Model) []float32 {
			e, err := graph.Load(m, testfix.Backend(t), dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			got, _, err := e.Score(r.IDs, r.B, r.T)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		got := score(m)
		if d := testfix.RelL2(got, score(plain)); d > 1e-5 {
			t.Errorf("%s: rel L2 %.3g to the dequantized weights' logits", c.typ, d)
		}
		relL2[string(c.typ)] = testfix.RelL2(got, r.Logits)
	}
	if !(relL2["int8"] < relL2["int4"]) {
		t.Errorf("rel L2 to the float reference: %v", relL2)
	}
	t.Logf("rel L2 to the float reference: %v", relL2)
}

// Our folder of a Llama-family model is written as format version 2 (what version 1 builds cannot
// run, they refuse by its version), reads back, and is refused if its config claims version 1.
func TestFolderVersion(t *testing.T) {
	dir := testfix.Imported(t, "llama-tiny")
	var c struct {
		FormatVersion int `json:"format_version"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if json.Unmarshal(b, &c); c.FormatVersion != 2 {
		t.Fatalf("format_version %d, want 2", c.FormatVersion)
	}
	testfix.Open(t, dir)
	bad := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(bad, []byte(strings.Replace(string(b), `"format_version": 2`, `"format_version": 1`, 1)), 0o644)
	_, err = modeldir.ReadConfig(bad)
	if want := `format_version 1, but the config uses what version 2 added (decoder families, key/value heads, stop ids)`; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
	}
}
