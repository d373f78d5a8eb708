package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/graph"
)

const fx = "../../fixtures"

func btc(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"btconvert"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := btc(t, "--version")
	if code != 0 || !strings.Contains(out, btconvert.Version().String()) || !strings.Contains(out, "GoMLX") {
		t.Fatalf("version: %d %q", code, out)
	}
	// The version says whether SIMD is built in and which matmul kernel this CPU gets.
	wantSIMD := "simd: off (built without GOEXPERIMENT=simd)"
	if graph.SIMDBuiltIn {
		wantSIMD = "simd: " + graph.SIMDStatus()
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
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir()) // auto finds no plugin: the go backend
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
	arch := s["architecture"].(map[string]any)
	if arch["kind"] != "block" || arch["block_length"] != 4.0 || arch["embedder"] != "concat" || arch["heads"] != 4.0 || s["total_params"] != 900352.0 {
		t.Fatalf("inspect json: %v total %v", arch, s["total_params"])
	}
	if _, has := arch["layers"]; has {
		t.Fatalf("a block model has no 'layers' key: %v", arch)
	}
	tensors := s["tensors"].([]any)
	first := tensors[0].(map[string]any)
	if first["name"] != "embeddings.weight" || len(first["sha256"].(string)) != 64 {
		t.Fatalf("tensor entry %v", first)
	}
	// Vanilla: block keys are omitted.
	_, js, _ = btc(t, "inspect", filepath.Join(fx, "pythia-tiny"), "--json")
	json.Unmarshal([]byte(js), &s)
	arch = s["architecture"].(map[string]any)
	if _, has := arch["block_length"]; has || arch["layers"] != 4.0 || s["format"] != "hf-gpt-neox" {
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
	if r.Backend != "go" || r.Parity.RelL2Err > 1e-5 || !r.Parity.GreedyMatch || !r.Pass {
		t.Fatalf("report %s", b)
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
	var g struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	}
	json.Unmarshal([]byte(out), &g)
	if len(g.IDs) != 12 || len(g.Text) != 12 {
		t.Fatalf("%s", out)
	}
	// Streaming prints the prompt and exactly the same continuation (greedy).
	code, out, _ = btc(t, "generate", filepath.Join(fx, "pythia-tiny"), "--prompt", "The license", "--max-new-tokens", "12", "-q")
	if code != 0 || out != "The license"+g.Text+"\n" {
		t.Fatalf("stream %q vs %q", out, g.Text)
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
	js := filepath.Join(t.TempDir(), "r.json")
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "pythia-tiny"), "--backend", "go", "--compare-backend", "go", "--json-file", js, "-q")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	// Two go backends started, --quiet: a build without GOEXPERIMENT=simd says so once, one with it
	// says nothing.
	warnings := strings.Count(stderr, graph.SlowBuildWarning+"\n")
	if want := map[bool]int{true: 0, false: 1}[graph.SIMDBuiltIn]; warnings != want || len(stderr) != warnings*len(graph.SlowBuildWarning+"\n") {
		t.Errorf("SIMD built in %v: stderr %q, want %d warning line(s) and nothing else", graph.SIMDBuiltIn, stderr, want)
	}
	var r struct {
		CompareBackend struct {
			Backend     string
			RelL2Err    float64 `json:"rel_l2_err"`
			GreedyMatch bool    `json:"greedy_match"`
		} `json:"compare_backend"`
	}
	b, _ := os.ReadFile(js)
	json.Unmarshal(b, &r)
	if r.CompareBackend.Backend != "go" || r.CompareBackend.RelL2Err != 0 || !r.CompareBackend.GreedyMatch {
		t.Fatalf("%s", b)
	}
	// No such plugin: a clear error, and no silent fallback to another backend. (A plugin name
	// nobody installs: GoMLX reads PJRT_PLUGIN_LIBRARY_PATH once, at start-up, and would find a
	// CPU plugin installed on this machine whatever the test sets.)
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir())
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "pythia-tiny"), "--backend", "xla:absent", "-q")
	if code != 2 || !strings.Contains(stderr, `--backend "xla:absent": no PJRT plugin "absent" found in `) {
		t.Fatalf("xla without the plugin: %d %q", code, stderr)
	}
}

// Heads are never guessed: a checkpoint that does not say them is refused (exit 2, nothing written)
// until --heads says them.
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
	unknownBase := func(y string) string {
		return strings.NewReplacer("EleutherAI/pythia-410m-deduped", "my-org/my-neox", "    num_attention_heads: 4\n", "").Replace(y)
	}
	typo := func(y string) string { return strings.Replace(y, "num_attention_heads: 4", "num_attention_head: 4", 1) }
	for _, c := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"no config.yaml", nil, ": no config.yaml beside the weights, and the number of attention heads cannot be read from them: pass --heads N (or give the official config.yaml with --config)"},
		{"unknown base", unknownBase, "/config.yaml: block_decoder: num_attention_heads is unknown (model_name_or_path \"my-org/my-neox\" is not a base model btconvert knows and block_decoder.config does not state it): state num_attention_heads under block_decoder.config in config.yaml, or pass --heads N"},
		{"unknown key", typo, `/config.yaml: block_decoder.config: unknown key "num_attention_head" (not a GPTNeoXConfig setting)`},
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
			if c.name == "unknown key" {
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
}

// auto never switches silently: a PJRT plugin it finds but cannot load is an error naming it,
// with the way on.
func TestAutoBackendBrokenPlugin(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
	if err := os.WriteFile(plugin, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv("BTCONVERT_BACKEND", "")
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"))
	prefix := `btconvert: --backend "auto": found the XLA CPU PJRT plugin ` + plugin + `, but it could not be started (--backend "xla:` + plugin + `": the PJRT plugin ` + plugin + ` could not be loaded: `
	if code != 2 || !strings.HasPrefix(stderr, prefix) || !strings.HasSuffix(stderr, "; pass --backend go to run on the pure-Go backend\n") {
		t.Fatalf("got %d %q", code, stderr)
	}
}
