package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/families/roberta"
	"github.com/btconvert/btconvert/families/t5"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// The official ablation configs on the command line (on the go backend; the graph and verify
// tests run both backends): each fixture imports with its config.yaml as it is, passes parity
// against its reference, and exports back to its checkpoint bit for bit (the unused embed_in
// zero-filled, a T5 token table under its three names); int8 passes verify --against.
func TestAblationPipeline(t *testing.T) {
	dir := t.TempDir()
	for _, name := range testfix.Ablations {
		out := filepath.Join(dir, name)
		mustBtc(t, "import", filepath.Join(fx, name), "-o", out, "-q")
		js := mustBtc(t, "verify", out, "--reference", filepath.Join(fx, name, "reference.safetensors"), "--backend", "go", "--json", "-q")
		var r struct {
			Parity struct {
				RelL2Err    float64 `json:"rel_l2_err"`
				GreedyMatch bool    `json:"greedy_match"`
			}
			Pass bool
		}
		if err := json.Unmarshal([]byte(js), &r); err != nil || r.Parity.RelL2Err > 1e-5 || !r.Parity.GreedyMatch || !r.Pass {
			t.Fatalf("%s: verify %v %s", name, err, js)
		}
		official := filepath.Join(dir, name+"-official")
		mustBtc(t, "export", out, "-o", official, "--format", "official", "-q")
		got, err := safetensors.Open(filepath.Join(official, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := safetensors.Open(filepath.Join(fx, name, "model.safetensors"))
		if len(got.Tensors) != len(want.Tensors) {
			t.Fatalf("%s: exported %d tensors, the checkpoint has %d", name, len(got.Tensors), len(want.Tensors))
		}
		for _, ti := range want.Tensors {
			a, err := got.Raw(ti.Name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			b, _ := want.Raw(ti.Name)
			if ti.Name == "block_decoder.gpt_neox.embed_in.weight" {
				b = make([]byte, len(b))
			}
			if !bytes.Equal(a, b) || got.Info(ti.Name).DType != ti.DType {
				t.Errorf("%s: exported %s differs from the checkpoint", name, ti.Name)
			}
		}
		got.Close()
		want.Close()
	}
	base := filepath.Join(dir, "bt-cls-cross-attn-tiny")
	q8 := filepath.Join(dir, "q8")
	plan := mustBtc(t, "quantize", base, "-o", q8, "--type", "int8", "--json", "-q")
	if !strings.Contains(plan, `"name": "layers.1.cross_attention.key.weight"`) {
		t.Fatalf("plan %.300s", plan)
	}
	mustBtc(t, "verify", q8, "--against", base, "--eval-text", filepath.Join(fx, "README.md"), "--max-ppl-ratio", "1.01", "--min-top1", "0.95",
		"--backend", "go", "--record", "-q")
	mustBtc(t, "export", q8, "-o", filepath.Join(dir, "q8.btz"), "--format", "bundle", "-q")
	gen := mustBtc(t, "generate", filepath.Join(dir, "q8.btz"), "--prompt", "The GNU", "--max-new-tokens", "8", "--backend", "go", "--json", "-q")
	if !strings.Contains(gen, `"ids"`) {
		t.Fatalf("generate from the bundle: %s", gen)
	}
}

// The ablation checkpoints as the official download folders hold them (weights only): refused
// without a config, naming the released config whose shapes they have; imported by name, with
// the architecture the official code builds.
func TestImportAblationByName(t *testing.T) {
	for name, want := range map[string]string{
		"block_ablation_b4_85_roberta_prefix": "Block Transformer: L_B=4, roberta (3 layers D=256 (8 heads x 32, FFN 1024)) projection_layer embedder, block decoder 6 layers D=768 (12 heads x 64, FFN 3072), token decoder 6 layers D=768 (12 heads x 64, FFN 3072), prefix decoding r=1, V=50304",
		"block_ablation_b4_85_cls_sum":        "Block Transformer: L_B=4, roberta_cls (3 layers D=256 (8 heads x 32, FFN 1024), 3 CLS) projection_layer embedder, block decoder 6 layers D=768 (12 heads x 64, FFN 3072), token decoder 6 layers D=768 (12 heads x 64, FFN 3072), summation decoding r=4, V=50304",
		"block_ablation_b4_85_cls_cross_attn": "Block Transformer: L_B=4, roberta_cls (3 layers D=256 (8 heads x 32, FFN 1024), 3 CLS) projection_layer embedder, block decoder 6 layers D=768 (12 heads x 64, FFN 3072), token decoder T5 6 layers d=768 (12 heads x 64, FFN 3072), cross_attention decoding r=4, V=50304",
	} {
		blk, _, _ := arch.Released(name, arch.OriginYAML)
		cfg, _, err := blk.Resolve(nil, nil, arch.Provenance{})
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		testfix.SparseCheckpoint(t, src, cfg)
		code, _, stderr := btc(t, "import", src, "-o", filepath.Join(t.TempDir(), "out"))
		refusal := "btconvert: " + src + ": no config.yaml beside the weights, and a RoBERTa embedder's or T5 token decoder's architecture (heads, token ids, positions) cannot be read from them: give --config NAME (these shapes are those of " + name + ")\n"
		if code != 2 || stderr != refusal {
			t.Errorf("%s without a config: %d %q\nwant 2 %q", name, code, stderr, refusal)
		}
		code, js, stderr := btc(t, "import", src, "--config", name, "--dry-run", "--json")
		if code != 0 || !strings.Contains(js, `"architecture": "`+want+`"`) {
			t.Errorf("--config %s: %d %s %s", name, code, js, stderr)
		}
	}
}

// init builds the ablation presets (here with smaller widths on top) as random models that run.
func TestInitAblation(t *testing.T) {
	code, out, _ := btc(t, "init", "--list")
	if code != 0 || !strings.Contains(out, "block_ablation_b4_85_cls_cross_attn") || !strings.Contains(out, "cross_attention r=4") {
		t.Fatalf("init --list: %s", out)
	}
	dir := filepath.Join(t.TempDir(), "m")
	code, _, stderr := btc(t, "init", "--preset", "block_ablation_b4_85_cls_cross_attn", "--hidden", "64", "--embedder-dim", "32",
		"--block-layers", "1", "--token-layers", "1", "--vocab", "300", "-o", dir, "-q")
	if code != 0 {
		t.Fatal(stderr)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var cfg arch.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	r, _ := cfg.Embedder.Encoder.(*roberta.Config)
	td, _ := cfg.TokenDecoder.Own.(*t5.Config)
	if r == nil || td == nil || cfg.Embedder.Dim != 32 || r.Heads != 1 || r.Layers != 3 || r.CLSTokens != 3 || td.Hidden != 64 || td.Heads != 12 ||
		td.Layers != 1 || cfg.BlockDecoder.Hidden != 64 || cfg.VocabSize != 300 || cfg.Origins["token_decoder.layers"] != "shape" {
		t.Fatalf("config %s", b)
	}
	if code, _, stderr = btc(t, "verify", dir, "--backend", "go", "-q"); code != 0 {
		t.Fatalf("self-check of the random model: %s", stderr)
	}
}
