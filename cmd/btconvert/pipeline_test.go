package main

import (
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
)

// The README's pipeline on the bundled fixture: import -> quantize -> verify (--record) -> export.
func TestPipeline(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "bt")
	q8 := filepath.Join(dir, "bt-q8")
	mustBtc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", base, "-q")

	// Bad quantize flags are usage errors with clear messages, and write nothing.
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--type", "int3"}, `btconvert: --type "int3": want int8, int4, q8_0, q4_0, q4_1, q4_k or q6_k`},
		{[]string{"--type", "int4", "--group-size", "48"}, "btconvert: --group-size 48: want 32, 64 or 128"},
		{[]string{"--type", "int4", "--tensor-type", "nothing_like_this=int8"}, `btconvert: --tensor-type "nothing_like_this=int8": matches no tensor`},
		{[]string{"--type", "int4", "--tensor-type", "final_layer_norm=int8"}, "btconvert: block_decoder/final_layer_norm.weight: a 1D tensor (LayerNorm or bias) cannot be int8; only 2D weights are quantized"},
		{[]string{"--type", "int4", "--tensor-type", "embeddings=int4"}, "btconvert: embedder/embeddings.weight: embedding tables can be int8, q8_0 or q6_k, not int4"},
		{[]string{"--type", "int4", "--tensor-type", "x=int5"}, `btconvert: --tensor-type "x=int5": type "int5" is not one of f32 bf16 f16 int8 int4`},
	} {
		code, _, stderr := btc(t, append([]string{"quantize", base, "-o", q8}, c.args...)...)
		if code != 2 || !strings.HasPrefix(stderr, c.msg) {
			t.Errorf("%v: %d %q, want %q", c.args, code, stderr, c.msg)
		}
	}
	if _, err := os.Stat(q8); err == nil {
		t.Fatal("a failed quantize left output")
	}

	// The dry run prints the plan and writes nothing.
	plan := mustBtc(t, "quantize", base, "-o", q8, "--type", "int8", "--dry-run", "--json")
	var p struct {
		Plan struct {
			Tensors []struct {
				Name, To string
			}
		}
	}
	if err := json.Unmarshal([]byte(plan), &p); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, e := range p.Plan.Tensors {
		kinds[e.Name] = e.To
	}
	if kinds["layers.0.attention.query_key_value.weight"] != "int8" || kinds["embed_out.weight"] != "int8" ||
		kinds["expansion_layer.weight"] != "int8" || kinds["embeddings.weight"] != "int8" || kinds["layers.0.input_layernorm.weight"] != "f32" {
		t.Fatalf("plan: %v", kinds)
	}
	if _, err := os.Stat(q8); err == nil {
		t.Fatal("dry run wrote output")
	}

	// A real run ends with the plan table, unless quiet (TestQuantizeQuiet).
	out := mustBtc(t, "quantize", base, "-o", q8, "--type", "int8")
	if !strings.Contains(out, "quantized weights") {
		t.Fatalf("a real run ends with the plan table:\n%s", out)
	}
	var cfg struct {
		Quantization map[string]struct{ Type string }
	}
	b, _ := os.ReadFile(filepath.Join(q8, "config.json"))
	json.Unmarshal(b, &cfg)
	if len(cfg.Quantization) != 2*2*4+2+2 || cfg.Quantization["token_decoder/embed_out.weight"].Type != "int8" || cfg.Quantization["embedder/embeddings.weight"].Type != "int8" {
		t.Fatalf("config.json quantization: %d entries %v", len(cfg.Quantization), cfg.Quantization["token_decoder/embed_out.weight"])
	}
	// inspect reports the packed (device) size.
	js := mustBtc(t, "inspect", q8, "--json")
	var s struct {
		TotalBytes int64 `json:"total_bytes"`
	}
	json.Unmarshal([]byte(js), &s)
	if s.TotalBytes < 900_000 || s.TotalBytes > 1_000_000 { // 945,152: linear weights and token tables int8
		t.Fatalf("int8 bt-tiny stores %d bytes", s.TotalBytes)
	}

	// A quantized model is not exported without a passing report.
	code, _, stderr := btc(t, "export", q8, "-o", filepath.Join(dir, "q8.btz"), "--format", "bundle")
	if code != 2 || !strings.Contains(stderr, "is quantized and has no recorded verification report; run: btconvert verify "+q8+" --against BASE --eval-text FILE --record") {
		t.Fatalf("export without report: %d %q", code, stderr)
	}
	// A failing report is recorded but does not unlock export.
	code, _, _ = btc(t, "verify", q8, "--against", base, "--eval-text", filepath.Join(fx, "README.md"), "--min-top1", "0.9999", "--record", "-q")
	if code != 1 {
		t.Fatalf("impossible top-1 threshold passed")
	}
	code, _, stderr = btc(t, "export", q8, "-o", filepath.Join(dir, "q8.btz"), "--format", "bundle")
	if code != 2 || !strings.Contains(stderr, "its recorded verification report failed") {
		t.Fatalf("export with a failed report: %d %q", code, stderr)
	}
	mustBtc(t, "verify", q8, "--against", base, "--eval-text", filepath.Join(fx, "README.md"), "--max-ppl-ratio", "1.01", "--min-top1", "0.95", "--record", "-q")
	mustBtc(t, "export", q8, "-o", filepath.Join(dir, "q8.btz"), "--format", "bundle", "-q")
	// The bundle is usable directly, and carries the report.
	gen := mustBtc(t, "generate", filepath.Join(dir, "q8.btz"), "--prompt", "The GNU", "--max-new-tokens", "8", "--json", "-q")
	if !strings.Contains(gen, `"ids"`) {
		t.Fatalf("generate from bundle: %s", gen)
	}
	mustBtc(t, "export", filepath.Join(dir, "q8.btz"), "-o", filepath.Join(dir, "official"), "--format", "official", "--dtype", "bf16", "-q")
	js = mustBtc(t, "inspect", filepath.Join(dir, "official"), "--json")
	if !strings.Contains(js, `"format": "official-block-transformer"`) || !strings.Contains(js, `"BF16"`) {
		t.Fatalf("official export of the quantized bundle: %.300s", js)
	}
}

// A small bench run on one thread: the report's shape, positive and consistent numbers, a plot.
func TestBenchSmall(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // --threads sets it for the process
	dir := t.TempDir()
	js, png := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.png")
	code, out, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--against", filepath.Join(fx, "pythia-tiny"),
		"--batch", "1,2", "--prompt-len", "16", "--gen-len", "8", "--reps", "2", "--warmup", "1", "--json-file", js, "--plot", png, "-q", "-t", "1")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	for _, want := range []string{"pp16", "tg8", "bt-tiny", "pythia-tiny", "TOKEN DECODER", "throughput ratio bt-tiny / pythia-tiny:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b, _ := os.ReadFile(js)
	var raw struct {
		Bench []map[string]any `json:"bench"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Bench) != 4 {
		t.Fatalf("%d rows", len(raw.Bench))
	}
	for _, row := range raw.Bench {
		for _, k := range []string{"model", "backend", "batch", "prompt_len", "gen_len", "prefill_tok_s", "decode_tok_s", "decode_tok_s_min", "decode_tok_s_max", "compile_s", "weight_bytes", "peak_mem_bytes"} {
			if _, ok := row[k]; !ok {
				t.Fatalf("row lacks %s: %v", k, row)
			}
		}
		num := func(k string) float64 { return row[k].(float64) }
		if num("threads") != 1 {
			t.Errorf("threads %v, want 1 (-t 1)", row["threads"])
		}
		if num("prefill_tok_s") <= 0 || num("decode_tok_s") <= 0 || num("weight_bytes") <= 0 || num("peak_mem_bytes") < num("weight_bytes") {
			t.Errorf("non-positive or inconsistent: %v", row)
		}
		if !(num("decode_tok_s_min") <= num("decode_tok_s") && num("decode_tok_s") <= num("decode_tok_s_max")) {
			t.Errorf("median outside min-max: %v", row)
		}
		if row["model"] == "bt-tiny" {
			split := row["split"].(map[string]any)
			sum := split["embedder"].(float64) + split["block_decoder"].(float64) + split["token_decoder"].(float64)
			if sum < 0.999 || sum > 1.001 {
				t.Errorf("split does not add up: %v", split)
			}
		}
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := pngDecode(f)
	if err != nil || img.Bounds().Dx() < 300 {
		t.Fatalf("plot: %v", err)
	}
}

func TestInit(t *testing.T) {
	code, out, _ := btc(t, "init", "--list")
	// b4_85 with the official fill-in: 12 heads of 64, FFN 3072 (173,164,032 weights).
	if code != 0 || !regexp.MustCompile(`block_main_b4_85 +│ 6 x D 768, 12 x 64 heads, FFN 3072 +│ 6 x D 768, 12 x 64 heads, FFN 3072 +│ prefix r=2 +│ 173\.16 M`).MatchString(out) || !strings.Contains(out, "vanilla_410") {
		t.Fatalf("init --list: %s", out)
	}
	code, out, _ = btc(t, "init", "--list", "--json")
	var rows []struct {
		Name         string            `json:"name"`
		Architecture arch.Architecture `json:"architecture"`
	}
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("init --list --json: %d %v", code, err)
	}
	for _, r := range rows {
		if r.Name == "block_megabyte_b4_5" {
			bd, td := r.Architecture.BlockDecoder, r.Architecture.TokenDecoder
			if bd.HiddenSize != 256 || bd.Heads != 8 || td.HiddenSize != 128 || td.Heads != 4 || td.IntermediateSize != 512 || td.Origin["heads"] != "fill-in" || td.Decoding != "summation" {
				t.Fatalf("megabyte_b4_5: %+v %+v", bd, td)
			}
		}
	}
	dir := filepath.Join(t.TempDir(), "m")
	code, _, stderr := btc(t, "init", "--hidden", "64", "--heads", "4", "--block-layers", "1", "--token-layers", "1", "--vocab", "300", "-o", dir, "--seed", "3", "-q")
	if code != 0 {
		t.Fatal(stderr)
	}
	code, js, _ := btc(t, "inspect", dir, "--json")
	if code != 0 || !strings.Contains(js, `"vocab_size": 300`) || !strings.Contains(js, `"hidden_size": 64`) {
		t.Fatalf("%s", js)
	}
	// Reproducible: the same seed gives the same bytes.
	dir2 := filepath.Join(t.TempDir(), "m")
	btc(t, "init", "--hidden", "64", "--heads", "4", "--block-layers", "1", "--token-layers", "1", "--vocab", "300", "-o", dir2, "--seed", "3", "-q")
	a, _ := os.ReadFile(filepath.Join(dir, "token_decoder.safetensors"))
	b, _ := os.ReadFile(filepath.Join(dir2, "token_decoder.safetensors"))
	if string(a) != string(b) {
		t.Fatal("same seed, different weights")
	}
	code, _, stderr = btc(t, "init", "--preset", "block_main_b4_9000", "-o", dir2)
	if code != 2 || !strings.HasPrefix(stderr, `btconvert: --preset "block_main_b4_9000": want one of block_main_b4_5`) {
		t.Fatalf("%d %s", code, stderr)
	}
}

var pngDecode, pngEncode = png.Decode, png.Encode

// Every output is checked before anything is measured; a plot of one batch and one model draws;
// -pg tests and JSON lines.
func TestBenchOutputsAndPairs(t *testing.T) {
	dir := t.TempDir()
	png := filepath.Join(dir, "bench.png")
	os.WriteFile(png, []byte("not ours"), 0o644)
	code, out, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "-p", "8", "-n", "8", "--plot", png)
	if code != 2 || out != "" || stderr != "btconvert: "+png+": already exists (use --force to replace it)\n" {
		t.Fatalf("existing plot: %d %q %q", code, out, stderr)
	}
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "-p", "8", "-n", "8", "--plot", png, "--force")
	if code != 2 || stderr != "btconvert: "+png+": exists and is not a btconvert plot; not replaced (--force replaces only what btconvert wrote)\n" {
		t.Fatalf("a file that is not a plot: %d %q", code, stderr)
	}
	// A user's picture is a PNG too, and no more replaced than any other file.
	photo := filepath.Join(dir, "photo.png")
	if f, err := os.Create(photo); err == nil {
		pngEncode(f, image.NewGray(image.Rect(0, 0, 1, 1)))
		f.Close()
	}
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "-p", "8", "-n", "8", "--plot", photo, "--force")
	if code != 2 || stderr != "btconvert: "+photo+": exists and is not a btconvert plot; not replaced (--force replaces only what btconvert wrote)\n" {
		t.Fatalf("a user's PNG: %d %q", code, stderr)
	}
	// The same for verify's report: refused before the model is even opened (no backend line).
	code, out, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--json-file", png)
	if code != 2 || out != "" || stderr != "btconvert: "+png+": already exists (use --force to replace it)\n" {
		t.Fatalf("existing verify --json-file: %d %q %q", code, out, stderr)
	}
	os.Remove(png)
	code, out, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "--pg", "8,8", "--reps", "1", "--warmup", "0",
		"--plot", png, "--output-format", "jsonl", "-q")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	var row struct {
		Pair      bool    `json:"pair"`
		TotalTokS float64 `json:"total_tok_s"`
		PromptLen int     `json:"prompt_len"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &row); err != nil || !row.Pair || row.TotalTokS <= 0 || row.PromptLen != 8 {
		t.Fatalf("jsonl: %v %q", err, out)
	}
	if f, err := os.Open(png); err != nil {
		t.Fatal("no plot of one batch and one model")
	} else {
		defer f.Close()
		if _, err := pngDecode(f); err != nil {
			t.Fatal(err)
		}
	}
	// Its own plot, --force replaces.
	mustBtc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "--pg", "8,8", "--reps", "1", "--warmup", "0", "--plot", png, "--force", "-q")
}
