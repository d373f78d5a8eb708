package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/testfix"
)

const fx = "../../fixtures"

func btc(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"btconvert"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// mustBtc runs btconvert and fails the test unless it exits 0; it returns stdout.
func mustBtc(t *testing.T, args ...string) string {
	t.Helper()
	code, out, stderr := btc(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return out
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := btc(t, "--version")
	if code != 0 || !strings.Contains(out, btconvert.Version().String()) || !strings.Contains(out, "GoMLX") {
		t.Fatalf("version: %d %q", code, out)
	}
	// The version says whether SIMD is built in and which matmul kernel this CPU gets.
	wantSIMD := "simd: off (built without GOEXPERIMENT=simd)"
	if backend.SIMDBuiltIn {
		wantSIMD = "simd: " + backend.SIMDStatus()
		if strings.Contains(wantSIMD, "without") {
			t.Errorf("a GOEXPERIMENT=simd build says %q", wantSIMD)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), wantSIMD) {
		t.Errorf("version %q does not end with %q", out, wantSIMD)
	}
	for _, cmd := range []string{"import", "inspect", "verify", "generate"} {
		code, out, _ := btc(t, cmd, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help: %d %q", cmd, code, out)
		}
	}
	// Help after the arguments, as people type it; a prompt that reads "--help" is just a prompt.
	code, out, _ = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--help")
	if code != 0 || !strings.Contains(out, "btconvert verify - ") {
		t.Errorf("verify MODEL --help: %d %q", code, out)
	}
	code, out, _ = btc(t, "generate", filepath.Join(fx, "bt-tiny"), "-p", "--help", "-n", "4", "-q")
	if code != 0 || !strings.HasPrefix(out, "--help") || strings.Contains(out, "USAGE") {
		t.Errorf("generate -p --help: %d %q", code, out)
	}
}

func TestImportInspectVerify(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bt")
	code, _, stderr := btc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", out, "--quiet")
	if code != 0 || stderr != "" {
		t.Fatalf("import: %d %q", code, stderr)
	}
	code, _, stderr = btc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", out)
	if code != 2 || stderr != "btconvert: "+out+": already exists (use --force to replace it)\n" {
		t.Fatalf("import again: %d %q", code, stderr)
	}
	code, js, _ := btc(t, "inspect", out, "--json")
	if code != 0 {
		t.Fatalf("inspect: %d", code)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	a := s["architecture"].(map[string]any)
	bd, _ := a["block_decoder"].(map[string]any)
	td, _ := a["token_decoder"].(map[string]any)
	if a["kind"] != "block" || a["block_length"] != 4.0 || a["embedder"].(map[string]any)["type"] != "concat" || s["total_params"] != 900352.0 ||
		bd["heads"] != 4.0 || bd["head_dim"] != 32.0 || bd["intermediate_size"] != 512.0 || bd["layers"] != 2.0 || td["hidden_size"] != 128.0 || td["expansion_ratio"] != 2.0 {
		t.Fatalf("inspect json: %v total %v", a, s["total_params"])
	}
	if o := bd["origin"].(map[string]any); o["heads"] != "yaml" || o["intermediate_size"] != "yaml" {
		t.Fatalf("origins %v", o)
	}
	if _, has := a["decoder"]; has {
		t.Fatalf("a block model has no 'decoder': %v", a)
	}
	tensors := s["tensors"].([]any)
	first := tensors[0].(map[string]any)
	if first["name"] != "embeddings.weight" || len(first["sha256"].(string)) != 64 {
		t.Fatalf("tensor entry %v", first)
	}
	// Vanilla: block keys are omitted.
	_, js, _ = btc(t, "inspect", filepath.Join(fx, "pythia-tiny"), "--json")
	json.Unmarshal([]byte(js), &s)
	a = s["architecture"].(map[string]any)
	if _, has := a["block_length"]; has || a["decoder"].(map[string]any)["layers"] != 4.0 || a["decoder"].(map[string]any)["origin"].(map[string]any)["heads"] != "config.json" || s["format"] != "hf-gpt-neox" {
		t.Fatalf("vanilla inspect: %v", s)
	}

	rep := filepath.Join(dir, "report.json")
	code, _, stderr = btc(t, "verify", out, "--reference", filepath.Join(fx, "bt-tiny", "reference.safetensors"), "--json-file", rep, "-q")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, stderr)
	}
	var r struct {
		Backend string
		Parity  struct {
			RelL2Err    float64 `json:"rel_l2_err"`
			GreedyMatch bool    `json:"greedy_match"`
		}
		Pass bool
	}
	b, _ := os.ReadFile(rep)
	json.Unmarshal(b, &r)
	// The default backend is auto: XLA's CPU plugin where it is installed (as in CI), except for
	// work too small to pay for its compile, as this check of a tiny model: go, either way.
	auto, _ := backend.Choose(backend.Auto)
	if os.Getenv("CI") == "true" && !strings.HasPrefix(auto, "xla:") {
		t.Fatalf("CI=true but auto picks %s: the PJRT CPU plugin is not installed (%s)", auto, testfix.XLAInstall)
	}
	if r.Backend != "go" || r.Parity.RelL2Err > 1e-5 || !r.Parity.GreedyMatch || !r.Pass {
		t.Fatalf("report (auto is %s) %s", auto, b)
	}
	// A threshold nobody meets fails with exit 1.
	code, _, stderr = btc(t, "verify", out, "--reference", filepath.Join(fx, "bt-tiny", "reference.safetensors"), "--max-rel-err", "1e-12", "-q")
	if code != 1 || !strings.Contains(stderr, "verification failed") {
		t.Fatalf("strict verify: %d %q", code, stderr)
	}
}

func TestGenerateJSON(t *testing.T) {
	code, out, stderr := btc(t, "generate", filepath.Join(fx, "pythia-tiny"), "--prompt", "The license", "--max-new-tokens", "12", "--json", "-q")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	var res struct {
		Rows []struct {
			IDs    []int  `json:"ids"`
			Text   string `json:"text"`
			Finish string `json:"finish"`
		} `json:"rows"`
	}
	json.Unmarshal([]byte(out), &res)
	if len(res.Rows) != 1 || len(res.Rows[0].IDs) != 12 || len(res.Rows[0].Text) != 12 || res.Rows[0].Finish != "length" {
		t.Fatalf("%s", out)
	}
	g := res.Rows[0]
	// Streaming prints the prompt and exactly the same continuation (greedy).
	code, out, _ = btc(t, "generate", filepath.Join(fx, "pythia-tiny"), "--prompt", "The license", "--max-new-tokens", "12", "-q")
	if code != 0 || out != "The license"+g.Text+"\n" {
		t.Fatalf("stream %q vs %q", out, g.Text)
	}
}

// Several prompts of different lengths in one batch: each row is what the prompt gives alone;
// --stop cuts a row before the stop string (never printed, also when streaming); the speeds and
// the peak memory go to stderr.
func TestGenerateBatchAndStop(t *testing.T) {
	model := filepath.Join(fx, "bt-tiny")
	type row struct {
		IDs    []int  `json:"ids"`
		Text   string `json:"text"`
		Finish string `json:"finish"`
		Pad    int    `json:"pad_tokens"`
	}
	gen := func(args ...string) []row {
		t.Helper()
		code, out, stderr := btc(t, append([]string{"generate", model, "-n", "24", "--json", "-q"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, stderr)
		}
		var res struct{ Rows []row }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		return res.Rows
	}
	long, short := "The GNU General Public License is a free", "Hello"
	batch := gen("-p", long, "-p", short)
	if len(batch) != 2 || batch[1].Pad != 35 {
		t.Fatalf("batch: %+v", batch)
	}
	for i, p := range []string{long, short} {
		alone := gen("-p", p)[0]
		if !slices.Equal(batch[i].IDs, alone.IDs) || batch[i].Text != alone.Text {
			t.Errorf("row %d: in the batch %q, alone %q", i, batch[i].Text, alone.Text)
		}
	}
	text := batch[0].Text
	stop := text[6:9]
	cut := text[:strings.Index(text, stop)]
	got := gen("-p", long, "--stop", stop)[0]
	if got.Text != cut || got.Finish != "stop" || len(got.IDs) >= 24 {
		t.Fatalf("--stop %q: %+v; want text %q", stop, got, cut)
	}
	// Spaces in prompts and stop strings are kept: "The GNU " is 8 byte tokens, and " " stops
	// the first word.
	if got := gen("-p", "The GNU ", "--stop", " ")[0]; got.Finish != "stop" || strings.Contains(got.Text, " ") || len(got.IDs) == 24 {
		t.Fatalf("--stop \" \": %+v", got)
	}
	if _, js, _ := btc(t, "generate", model, "-p", "The GNU ", "-n", "1", "--json", "-q"); !strings.Contains(js, `"prompt_tokens": 8,`) {
		t.Fatalf("a prompt's trailing space was dropped: %s", js)
	}
	code, out, stderr := btc(t, "generate", model, "-n", "24", "-p", long, "--stop", stop)
	if code != 0 || out != long+cut+"\n" {
		t.Fatalf("streamed with --stop: %d %q, want %q", code, out, long+cut+"\n")
	}
	if !regexp.MustCompile(`(?m)^prompt: 40 tokens, [0-9.]+ tokens/s; generation: [0-9]+ tokens, [0-9.]+ tokens/s; compile [0-9.]+ s; peak memory [0-9.]+ [KMG]iB$`).MatchString(stderr) {
		t.Errorf("no speeds and peak memory on stderr:\n%s", stderr)
	}
	// Without --json, a batch prints each row after the run.
	code, out, _ = btc(t, "generate", model, "-n", "24", "-p", long, "-p", short, "-q")
	if want := "--- 1/2 (length) ---\n" + long + batch[0].Text + "\n--- 2/2 (length) ---\n" + short + batch[1].Text + "\n"; code != 0 || out != want {
		t.Errorf("batch output:\n%q\nwant\n%q", out, want)
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	trunc := filepath.Join(dir, "model.safetensors")
	b, _ := os.ReadFile(filepath.Join(fx, "bt-tiny", "model.safetensors"))
	os.WriteFile(trunc, b[:len(b)-100], 0o644)
	out := filepath.Join(dir, "out")
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"import", trunc, "-o", out}, 2, "btconvert: " + trunc + ": truncated: tensors need 3732480 data bytes but the file holds 3732380 (file is 3739404 bytes)\n"},
		{[]string{"import", filepath.Join(dir, "missing"), "-o", out}, 2, "btconvert: " + filepath.Join(dir, "missing") + ": cannot open: no such file or directory\n"},
		{[]string{"import", "-o", out}, 2, "btconvert: import: expected one SRC (see btconvert import --help)\n"},
		{[]string{"import", filepath.Join(fx, "bt-tiny")}, 2, "btconvert: import: --output DIR is required\n"},
		{[]string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--dtype", "f8"}, 2, "btconvert: --dtype \"f8\": want keep, f32, bf16 or f16\n"},
		{[]string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--method", "skip"}, 2, "btconvert: --method only applies with --from-vanilla\n"},
		{[]string{"import", filepath.Join(fx, "pythia-tiny"), "-o", out, "--from-vanilla", "--block-layers", "9"}, 2, "btconvert: --method \"partition\": --block-layers must be between 1 and 3 for a 4-layer model, got 9\n"},
		{[]string{"inspect", filepath.Join(fx, "bt-tiny"), "--bogus"}, 2, "btconvert: inspect: unknown flag --bogus\n"},
		{[]string{"verify", filepath.Join(fx, "bt-tiny"), "--backend", "tpu9"}, 2, "btconvert: --backend \"tpu9\": unknown backend (want auto, go, xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so)\n"},
		{[]string{"verify", filepath.Join(fx, "bt-tiny"), "--compute-dtype", "f16"}, 2, "btconvert: --compute-dtype \"f16\": want f32 or bf16\n"},
		{[]string{"generate", filepath.Join(fx, "bt-tiny")}, 2, "btconvert: generate: --prompt TEXT (or --prompt-file FILE) is required\n"},
	}
	for _, c := range cases {
		code, _, stderr := btc(t, c.args...)
		// verify prints its backend line before failing on the dtype; keep the last line.
		lines := strings.SplitAfter(strings.TrimSuffix(stderr, "\n"), "\n")
		last := lines[len(lines)-1] + "\n"
		if code != c.code || last != c.msg {
			t.Errorf("%v:\n got %d %q\nwant %d %q", c.args, code, last, c.code, c.msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v left %s behind", c.args, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func TestCompareBackend(t *testing.T) {
	// A backend compared with itself always agrees: refused, naming both flags' values.
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "pythia-tiny"), "--backend", "go", "--compare-backend", "go")
	other := "xla:cpu"
	if _, ok := backend.FindPlugins(backend.PluginDirs())["cpu"]; !ok {
		other += " (scripts/install-xla-cpu.sh installs it)"
	}
	want := `btconvert: --compare-backend "go": the same backend as --backend "go" (both run go), and a backend compared with itself always agrees; compare with another, e.g. --compare-backend ` + other
	if last, ok := lastLineIs(stderr, want); code != 2 || !ok {
		t.Fatalf("go against go: %d %q\nwant 2 %q", code, last, want)
	}
	// The same backend in another configuration is another comparison.
	js := filepath.Join(t.TempDir(), "r.json")
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "pythia-tiny"), "--backend", "go", "--compare-backend", "go:creation_order", "--json-file", js, "-q")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	// Two go backends started, --quiet: a build without GOEXPERIMENT=simd says so once, one with it
	// says nothing.
	warnings := strings.Count(stderr, backend.SlowBuildWarning+"\n")
	if want := map[bool]int{true: 0, false: 1}[backend.SIMDBuiltIn]; warnings != want || len(stderr) != warnings*len(backend.SlowBuildWarning+"\n") {
		t.Errorf("SIMD built in %v: stderr %q, want %d warning line(s) and nothing else", backend.SIMDBuiltIn, stderr, want)
	}
	type report struct {
		CompareBackend struct {
			Backend     string
			RelL2Err    float64 `json:"rel_l2_err"`
			GreedyMatch bool    `json:"greedy_match"`
		} `json:"compare_backend"`
	}
	var r report
	b, _ := os.ReadFile(js)
	json.Unmarshal(b, &r)
	if r.CompareBackend.Backend != "go:creation_order" || r.CompareBackend.RelL2Err > 1e-6 || !r.CompareBackend.GreedyMatch {
		t.Fatalf("%s", b)
	}
	// XLA against go, and auto resolved by the same resolver as --backend.
	t.Run("xla", func(t *testing.T) {
		testfix.XLA(t)
		for _, args := range [][]string{{"--backend", "xla:cpu", "--compare-backend", "go"}, {"--backend", "go", "--compare-backend", "auto"}} {
			js := filepath.Join(t.TempDir(), "r.json")
			code, _, stderr := btc(t, append([]string{"verify", filepath.Join(fx, "bt-tiny"), "--json-file", js, "-q"}, args...)...)
			var r report
			b, _ := os.ReadFile(js)
			json.Unmarshal(b, &r)
			// Tolerance: two float32 implementations of the same graph (XLA fuses and reorders
			// sums): rel L2 about 3e-7 measured; 1e-5 is the fixtures' bound against float64.
			wantPrefix := map[string]string{"go": "go", "auto": "xla:"}[args[3]]
			if code != 0 || !strings.HasPrefix(r.CompareBackend.Backend, wantPrefix) || r.CompareBackend.RelL2Err > 1e-5 || !r.CompareBackend.GreedyMatch {
				t.Fatalf("%v: %d %s %s", args, code, stderr, b)
			}
		}
		// Running xla:cpu, comparing it with xla:cpu, by name, by path or as auto, is refused.
		t.Setenv("BTCONVERT_BACKEND", "")
		path := backend.FindPlugins(backend.PluginDirs())["cpu"]
		for _, spec := range []string{"xla:cpu", "xla:" + path, "auto"} {
			code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--backend", "xla:cpu", "--compare-backend", spec)
			want := fmt.Sprintf(`btconvert: --compare-backend %q: the same backend as --backend "xla:cpu" (both run xla:cpu), and a backend compared with itself always agrees; compare with another, e.g. --compare-backend go`, spec)
			if last, ok := lastLineIs(stderr, want); code != 2 || !ok {
				t.Errorf("auto against %s: %d %q\nwant 2 %q", spec, code, last, want)
			}
		}
	})
	// A plugin that is not installed: a clear error naming the flag that gave it, no fallback.
	for _, flag := range []string{"--backend", "--compare-backend"} {
		code, _, stderr = btc(t, "verify", filepath.Join(fx, "pythia-tiny"), flag, "xla:nosuchplugin", "-q")
		if code != 2 || !strings.Contains(stderr, flag+` "xla:nosuchplugin": no PJRT plugin "nosuchplugin" found in `) {
			t.Fatalf("%s without a plugin: %d %q", flag, code, stderr)
		}
	}
}

// Heads are never guessed: a checkpoint that does not say them is refused (exit 2, nothing written)
// until --heads or --config says them; a YAML edit the weights contradict is refused naming the
// tensor, the key, the value and its origin.
func TestImportNeedsHeads(t *testing.T) {
	copyBT := func(t *testing.T, edit func(yaml string) string) string {
		dir := t.TempDir()
		for _, f := range []string{"model.safetensors", "config.yaml"} {
			b, _ := os.ReadFile(filepath.Join(fx, "bt-tiny", f))
			if f == "config.yaml" {
				if edit == nil {
					continue
				}
				b = []byte(edit(string(b)))
			}
			os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		return dir
	}
	typo := func(y string) string { return strings.Replace(y, "num_attention_heads: 4", "num_attention_head: 4", 1) }
	ffn := func(y string) string {
		return strings.Replace(y, "intermediate_size: 512", "intermediate_size: 2048", 1)
	}
	for _, c := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"no config.yaml", nil, ": no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give --config NAME (an official config, e.g. block_main_b4_85) or --config PATH.yaml, or --heads (the official default for hidden 128 is 4 heads: --heads 4)"},
		{"unknown key", typo, `/config.yaml: block_decoder.config: unknown key "num_attention_head" (not a GPTNeoXConfig setting)`},
		{"FFN edit", ffn, `/model.safetensors: tensor "block_decoder.gpt_neox.layers.0.mlp.dense_h_to_4h.weight": shape [512 128] disagrees with the config (want [2048 128]): block_decoder.intermediate_size 2048 from config.yaml, as the official code resolves this config`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := copyBT(t, c.edit)
			out := filepath.Join(t.TempDir(), "out")
			code, _, stderr := btc(t, "import", src, "-o", out)
			if code != 2 || stderr != "btconvert: "+src+c.want+"\n" {
				t.Fatalf("got %d %q\nwant 2 %q", code, stderr, "btconvert: "+src+c.want+"\n")
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
				t.Fatalf("a refused import left %v", ents)
			}
			if c.name != "no config.yaml" {
				return
			}
			code, _, stderr = btc(t, "import", src, "-o", out, "--heads", "4", "-q")
			if code != 0 {
				t.Fatalf("with --heads 4: %d %s", code, stderr)
			}
			code, _, _ = btc(t, "verify", out, "--reference", filepath.Join(fx, "bt-tiny", "reference.safetensors"), "-q")
			if code != 0 {
				t.Fatalf("the model imported with --heads 4 fails parity")
			}
		})
	}
	// A base model outside the table: the fill-in gives heads and FFN, a warning names what comes
	// from GPTNeoXConfig's defaults, and the model is the trained one.
	src := copyBT(t, func(y string) string {
		return strings.NewReplacer("EleutherAI/pythia-410m-deduped", "my-org/my-neox", "    num_attention_heads: 4\n", "").Replace(y)
	})
	out := filepath.Join(t.TempDir(), "out")
	code, _, stderr := btc(t, "import", src, "-o", out)
	if code != 0 || !strings.Contains(stderr, `note: warning: block_decoder: model_name_or_path "my-org/my-neox" is not a base model btconvert knows, so rotary_pct, rotary_emb_base, layer_norm_eps, use_parallel_residual, hidden_act, max_position_embeddings are GPTNeoXConfig's defaults;`) {
		t.Fatalf("unknown base: %d %s", code, stderr)
	}
	if code, _, _ = btc(t, "verify", out, "--reference", filepath.Join(fx, "bt-tiny", "reference.safetensors"), "-q"); code != 0 {
		t.Fatal("the model imported on an unknown base fails parity")
	}
}

// A MEGABYTE checkpoint as the official download folders hold it (weights only): refused without
// a config, with the per-decoder defaults and the decoding ambiguity named; imported by name.
func TestImportMegabyteByName(t *testing.T) {
	blk, _, _ := arch.Released("block_megabyte_b4_5", arch.OriginYAML)
	cfg, _, err := blk.Resolve(nil, nil, arch.Provenance{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	testfix.SparseCheckpoint(t, src, cfg)
	out := filepath.Join(t.TempDir(), "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, ": no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give --config NAME (these shapes are those of block_megabyte_b4_5), or --heads (the official defaults for hidden 256 and 128 are 8 and 4 heads: --heads 8,4)"},
		{[]string{"--heads", "8,4"}, ": no config.yaml, and the decoding strategy cannot be read from the weights: the expansion layer gives 4 vectors = block_length 4, which fits both prefix and summation decoding: give --decoding prefix or --decoding summation (or --config NAME)"},
		{[]string{"--config", "block_megabyte_b4_85"}, `: tensor "block_decoder.gpt_neox.layers.5.input_layernorm.weight": missing from the checkpoint (the architecture needs it); 71 more missing: "block_decoder.gpt_neox.layers.5.input_layernorm.bias", "block_decoder.gpt_neox.layers.5.post_attention_layernorm.weight", "block_decoder.gpt_neox.layers.5.post_attention_layernorm.bias", "block_decoder.gpt_neox.layers.5.attention.query_key_value.weight", "block_decoder.gpt_neox.layers.5.attention.query_key_value.bias", ...`},
		{[]string{"--config", "block_megabyte_b4_5", "--heads", "8"}, ": token_decoder: num_attention_heads 4 from the official fill-in (hidden_size 128 // 32); --heads 8 disagrees (the official code builds 4 heads from this config)"},
	} {
		code, _, stderr := btc(t, append([]string{"import", src, "-o", out}, c.args...)...)
		if code != 2 || stderr != "btconvert: "+src+c.want+"\n" {
			t.Errorf("%v: got %d %q\nwant 2 %q", c.args, code, stderr, "btconvert: "+src+c.want+"\n")
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("a refused import wrote its output")
		}
	}
	code, js, stderr := btc(t, "import", src, "--config", "block_megabyte_b4_5", "--dry-run", "--json")
	if code != 0 || !strings.Contains(js, `"architecture": "Block Transformer: L_B=4, concat embedder, block decoder 5 layers D=256 (8 heads x 32, FFN 1024), token decoder 4 layers D=128 (4 heads x 32, FFN 512), summation decoding r=4, V=50304"`) {
		t.Fatalf("--config block_megabyte_b4_5: %d %s %s", code, js, stderr)
	}
	code, js, _ = btc(t, "inspect", src, "--heads", "8,4", "--decoding", "summation", "--json")
	var s struct {
		Architecture arch.Architecture `json:"architecture"`
	}
	json.Unmarshal([]byte(js), &s)
	if td := s.Architecture.TokenDecoder; code != 0 || td == nil || td.Heads != 4 || td.Origin["heads"] != "given" || td.Origin["decoding"] != "given" {
		t.Fatalf("inspect: %d %s", code, js)
	}
}

// auto passes over a PJRT plugin that does not load, and says so on the backend line.
func TestAutoBackendBrokenPlugin(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
	if err := os.WriteFile(plugin, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv("BTCONVERT_BACKEND", "")
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"))
	if code != 0 || !strings.Contains(stderr, "[auto: the XLA CPU PJRT plugin "+plugin+" cannot be loaded (no ELF header, so not a shared library or PJRT plugin), so the pure-Go backend]\n") {
		t.Fatalf("got %d %q", code, stderr)
	}
}

// --from-vanilla with a Block config builds that config's Block model: the official uptraining of
// b4_800 from pythia-1b (8 heads of 256) trains 16 heads of 128.
func TestUptrainToConfig(t *testing.T) {
	_, v, _ := arch.Released("vanilla_410", arch.OriginYAML)
	v.Base = "EleutherAI/pythia-1b-deduped"
	v.Settings = nil
	cfg, _, err := v.Resolve(nil, nil, arch.Provenance{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	testfix.SparseCheckpoint(t, src, cfg)
	os.WriteFile(filepath.Join(src, "config.json"), []byte(`{"model_type": "gpt_neox", "hidden_size": 2048, "num_attention_heads": 8,
		"num_hidden_layers": 16, "intermediate_size": 8192, "vocab_size": 50304, "rotary_pct": 0.25}`), 0o644)
	code, js, stderr := btc(t, "import", src, "--from-vanilla", "--config", "block_uptrain_b4_800_10", "--dry-run", "--json")
	if code != 0 || !strings.Contains(js, `block decoder 8 layers D=2048 (16 heads x 128, FFN 8192), token decoder 8 layers D=2048 (16 heads x 128, FFN 8192), prefix decoding r=2`) ||
		!strings.Contains(js, "heads from the Block config: block decoder 16 x 128, token decoder 16 x 128 (the vanilla model has 8 x 256)") {
		t.Fatalf("%d %s %s", code, js, stderr)
	}
	code, js, _ = btc(t, "import", src, "--from-vanilla", "--block-length", "4", "--dry-run", "--json")
	if code != 0 || !strings.Contains(js, "heads kept from the vanilla model (8 x 256); the official uptraining configs train a decoder of width 2048 with 16 heads of 128 (import with the official config, by name or as a Block YAML, to follow one)") {
		t.Fatalf("without a config: %d %s", code, js)
	}
	code, _, stderr = btc(t, "import", src, "--from-vanilla", "--config", "block_uptrain_b4_85_10", "--dry-run")
	if want := "btconvert: --config: the Block config does not fit the vanilla model: uptraining loads the vanilla token embeddings into a projection_layer embedder of width 2048; the config has a projection_layer embedder of width 768\n"; code != 2 || stderr != want {
		t.Fatalf("got %d %q\nwant %q", code, stderr, want)
	}
}

// backends lists what is installed and what auto picks, and says how to install XLA.
func TestBackendsCommand(t *testing.T) {
	orig, had := os.LookupEnv("PJRT_PLUGIN_LIBRARY_PATH")
	empty := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", empty)
	code, out, _ := btc(t, "backends")
	if code != 0 || !strings.Contains(out, "xla     no PJRT plugin in "+empty+" (scripts/install-xla-cpu.sh installs the CPU one)\n") ||
		!strings.HasSuffix(out, "auto picks go: no PJRT plugin installed, so the pure-Go backend\n") {
		t.Fatalf("no plugin: %d %q", code, out)
	}
	os.WriteFile(filepath.Join(empty, "pjrt_c_api_cpu_plugin.so"), []byte("not a library"), 0o644)
	code, out, _ = btc(t, "backends", "--json")
	var r struct {
		Auto    string
		Plugins []struct{ Name, Path, Error string }
	}
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Plugins) != 1 || r.Plugins[0].Error == "" || r.Auto != "go" {
		t.Fatalf("a broken plugin: %d %v %s", code, err, out)
	}
	t.Run("installed", func(t *testing.T) {
		// The variable as the test binary started: the broken plugin out of sight.
		if had {
			os.Setenv("PJRT_PLUGIN_LIBRARY_PATH", orig)
		} else {
			os.Unsetenv("PJRT_PLUGIN_LIBRARY_PATH")
		}
		testfix.XLA(t)
		code, out, _ := btc(t, "backends", "--json")
		var r struct {
			Plugins []struct {
				Name string
				API  string `json:"pjrt_api"`
			}
		}
		json.Unmarshal([]byte(out), &r)
		if code != 0 || len(r.Plugins) == 0 || r.Plugins[0].Name != "cpu" || !strings.HasPrefix(r.Plugins[0].API, "0.") {
			t.Fatalf("%d %s", code, out)
		}
	})
}

// --q-bits agrees with a preset of its width: q4_0 is 4 bits.
func TestQBitsWithPreset(t *testing.T) {
	if code, _, stderr := btc(t, "quantize", filepath.Join(fx, "bt-tiny"), "-o", filepath.Join(t.TempDir(), "q"), "--type", "q4_0", "--q-bits", "4", "--dry-run", "-q"); code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
}
