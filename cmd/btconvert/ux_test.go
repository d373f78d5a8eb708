package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/verify/bench"
)

// Names other tools use are answered with the command line that does the same here; near misses
// get a "did you mean"; every unknown flag, top-level or a command's, gets the one message format.
func TestGuessesAndUnknownFlags(t *testing.T) {
	model := filepath.Join(fx, "bt-tiny")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, `unknown command "bench"; did you mean "verify MODEL --bench"?`},
		{[]string{"benchmark", model}, `unknown command "benchmark"; did you mean "verify MODEL --bench"?`},
		{[]string{"perplexity"}, `unknown command "perplexity"; did you mean "verify MODEL --eval-text FILE"?`},
		{[]string{"ppl"}, `unknown command "ppl"; did you mean "verify MODEL --eval-text FILE"?`},
		{[]string{"convert", model}, `unknown command "convert"; did you mean "import"?`},
		{[]string{"improt"}, `unknown command "improt"; did you mean "import"?`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" (commands: import, inspect, verify, generate, quantize, export, init, backends, completion)`},
		{[]string{"--verison"}, "unknown flag --verison; did you mean --version?"},
		{[]string{"-verison"}, "unknown flag -verison; did you mean --version?"},
		{[]string{"--frobnicate"}, "unknown flag --frobnicate"},
		{[]string{"--quiet", "import", model}, `unknown flag --quiet; did you mean "btconvert import ... --quiet"?`},
		{[]string{"verify", model, "--bnech"}, "verify: unknown flag --bnech; did you mean --bench?"},
		{[]string{"verify", model, "--dtype", "bf16"}, "verify: unknown flag --dtype; did you mean --compute-dtype?"},
		{[]string{"generate", model, "--dtype=bf16"}, "generate: unknown flag --dtype; did you mean --compute-dtype?"},
		{[]string{"verify", model, "--perplexity", "x"}, "verify: unknown flag --perplexity; did you mean --eval-text?"},
		{[]string{"import", model, "--outfile", "x"}, "import: unknown flag --outfile; did you mean --output?"},
		{[]string{"import", model, "--outtype", "bf16"}, "import: unknown flag --outtype; did you mean --dtype?"},
		{[]string{"quantize", model, "--dtype", "int4"}, "quantize: unknown flag --dtype; did you mean --type?"},
		{[]string{"inspect", model, "--bogus"}, "inspect: unknown flag --bogus"},
	} {
		code, out, stderr := btc(t, c.args...)
		if want := "btconvert: " + c.want + "\n"; code != 2 || out != "" || stderr != want {
			t.Errorf("%v:\n got %d %q\nwant 2 %q", c.args, code, stderr, want)
		}
	}
	// Known top-level flags still work.
	if code, out, _ := btc(t, "--version"); code != 0 || !strings.HasPrefix(out, "btconvert version ") {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, out, _ := btc(t, "--help"); code != 0 || !strings.Contains(out, "Examples") {
		t.Errorf("--help: %d %q", code, out)
	}
}

// Every llama.cpp / mlx-lm quantization name btconvert does not offer is refused saying what to
// use instead; without --type, quantize writes int4 in groups of 64 with a scale and a minimum,
// mlx-lm's default, and --q-bits alone picks the type.
func TestQuantTypeNames(t *testing.T) {
	model := filepath.Join(fx, "bt-tiny")
	for _, c := range []struct{ typ, want string }{
		{"q4_k_m", "llama.cpp's mix of q4_k with some tensors kept in q5_k or q6_k; use --type q4_k (llama.cpp's 4-bit k-quant) and --tensor-type 'REGEX=q6_k' for the tensors to keep wider"},
		{"Q5_K_S", "a llama.cpp k-quant (super-blocks of 256 with quantized scales) of 5 bits, a GGUF encoding btconvert does not write; use q6_k (6.56 bits) to stay closer to the original, q4_k (4.5 bits) to be smaller"},
		{"q5_0", "5 bits in groups of 32 (llama.cpp); btconvert has no 5-bit type: use q6_k or int8 to stay closer to the original, or q4_0 / q4_1 (llama.cpp's 4-bit blocks of 32) to be smaller"},
		{"q8_k", "llama.cpp's intermediate for dot products, never a model's type; use q8_0 (llama.cpp's blocks of 32) or int8 (per output row)"},
		{"iq4_xs", "a llama.cpp i-quant (codebooks chosen with an importance matrix), a GGUF encoding btconvert does not write; use int4 with --calib FILE (GPTQ, or --calib-method imatrix for importance-weighted scales)"},
		{"bf16", "a storage dtype, not a quantization: import --dtype bf16 (or export --format official --dtype bf16) converts the weights; quantize --tensor-type 'REGEX=bf16' keeps chosen tensors in it"},
		{"4bit", "means int4 here (mlx-lm's default 4 bits: groups of 64 with a scale and a bias, as int4 without --sym); use --type int4 or --q-bits 4"},
		{"8bit", "means int8 here (symmetric per output row, not mlx-lm's groups of 64); use --type int8 or --q-bits 8"},
	} {
		// No --output: the type is explained before the usage is checked.
		code, _, stderr := btc(t, "quantize", model, "--type", c.typ)
		if want := fmt.Sprintf("btconvert: --type %q: %s\n", c.typ, c.want); code != 2 || stderr != want {
			t.Errorf("--type %s:\n got %d %q\nwant 2 %q", c.typ, code, stderr, want)
		}
	}
	// The same names in a --tensor-type override; a storage dtype there is what it means.
	code, _, stderr := btc(t, "quantize", model, "--dry-run", "--tensor-type", `embed_out\.weight$=q4_k_m`)
	if want := "btconvert: --tensor-type \"embed_out\\\\.weight$=q4_k_m\": llama.cpp's mix of q4_k with some tensors kept in q5_k or q6_k; use --type q4_k (llama.cpp's 4-bit k-quant) and --tensor-type 'REGEX=q6_k' for the tensors to keep wider\n"; code != 2 || stderr != want {
		t.Errorf("--tensor-type:\n got %d %q\nwant 2 %q", code, stderr, want)
	}
	mustBtc(t, "quantize", model, "--dry-run", "-q", "--tensor-type", `embed_out\.weight$=bf16`)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, `"type":"int4","group_size":64,"symmetric":false`},
		{[]string{"--q-bits", "8"}, `"type":"int8"`},
		{[]string{"--sym", "--group-size", "32"}, `"type":"int4","group_size":32,"symmetric":true`},
	} {
		code, js, stderr := btc(t, append([]string{"quantize", model, "--dry-run", "--json", "-q"}, c.args...)...)
		var res struct {
			With json.RawMessage `json:"quantized_with"`
		}
		json.Unmarshal([]byte(js), &res)
		var compact bytes.Buffer
		json.Compact(&compact, res.With)
		if code != 0 || !strings.Contains(compact.String(), c.want) {
			t.Errorf("%v: %d %s %s", c.args, code, compact.String(), stderr)
		}
	}
	code, out, _ := btc(t, "quantize", "--help")
	if code != 0 || !regexp.MustCompile(`--type value +int8, int4, .*\(default: "int4"\)`).MatchString(out) {
		t.Errorf("quantize --help does not show the default type:\n%s", out)
	}
}

// A quiet run prints nothing: the plan table belongs to --dry-run and to runs that are not quiet.
func TestQuantizeQuiet(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := btc(t, "quantize", filepath.Join(fx, "bt-tiny"), "-o", filepath.Join(dir, "q"), "--type", "int8", "--backend", "go", "-q")
	if code != 0 || out != "" || stderr != "" {
		t.Fatalf("quantize -q: %d\nstdout %q\nstderr %q", code, out, stderr)
	}
	code, out, _ = btc(t, "quantize", filepath.Join(fx, "bt-tiny"), "--type", "int8", "--dry-run", "-q")
	if code != 0 || !strings.Contains(out, "│ total ") {
		t.Fatalf("quantize --dry-run -q prints no plan: %d %q", code, out)
	}
}

// The backend line is one short line: the backend, the threads the go backend computes with (not
// its pool's target) and why; --verbose adds where the PJRT plugins are.
func TestBackendLine(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // -t sets it
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--backend", "go", "-t", "2")
	if first, _, _ := strings.Cut(stderr, "\n"); code != 0 || first != "backend: go (2 threads) [asked for]" {
		t.Fatalf("%d %q", code, stderr)
	}
	dir := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv("BTCONVERT_BACKEND", "")
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--verbose", "-t", "1")
	lines := strings.Split(stderr, "\n")
	if code != 0 || len(lines) < 2 || lines[0] != "backend: go (1 threads) [auto: no PJRT plugin installed, so the pure-Go backend]" || lines[1] != "plugins: none in "+dir {
		t.Fatalf("--verbose: %d %q", code, stderr)
	}
	// The missing CPU plugin: the project's installer first, GoMLX's (which needs GitHub) second.
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--backend", "xla:cpu")
	want := `btconvert: --backend "xla:cpu": no PJRT plugin "cpu" found in ` + dir + "; install it with scripts/install-xla-cpu.sh (from PyPI, hash-checked), point PJRT_PLUGIN_LIBRARY_PATH at the folder holding pjrt_c_api_cpu_plugin.so, or give its path (xla:/path/to/plugin.so); where GitHub is reachable, GoMLX's installer also works: go run github.com/gomlx/go-xla/cmd/pjrt_installer@latest -autoinstall"
	if last, ok := lastLineIs(stderr, want); code != 2 || !ok {
		t.Fatalf("no plugin:\n got %d %q\nwant 2 %q", code, last, want)
	}
	t.Run("xla", func(t *testing.T) {
		os.Unsetenv("PJRT_PLUGIN_LIBRARY_PATH")
		path, ok := backend.FindPlugins(backend.PluginDirs())["cpu"]
		if !ok {
			t.Skip("the PJRT CPU plugin is not installed (scripts/install-xla-cpu.sh)")
		}
		code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--backend", "xla:cpu", "--verbose")
		if !strings.HasPrefix(stderr, "backend: xla:cpu [asked for]\nplugins: ") || !strings.Contains(stderr, "xla:cpu "+path) || code != 0 {
			t.Fatalf("%d %q", code, stderr)
		}
	})
}

// The CSV leaves total_tok_s empty where it was not measured (the JSON omits it), instead of a 0
// that reads as a rate.
func TestCSVTotal(t *testing.T) {
	var w bytes.Buffer
	bench.CSVRow(&w, bench.Result{Model: "m", PrefillTokS: 10, DecodeTokS: 5})
	bench.CSVRow(&w, bench.Result{Model: "m", Pair: true, TotalTokS: 7.5})
	rows := strings.Split(strings.TrimSpace(w.String()), "\n")
	if col := strings.Split(rows[0], ",")[14]; col != "" {
		t.Errorf("a prefill + decode row: total_tok_s %q, want empty", col)
	}
	if col := strings.Split(rows[1], ",")[14]; col != "7.500" {
		t.Errorf("a -pg row: total_tok_s %q, want 7.500", col)
	}
}

// An output whose folder does not exist is refused before any work, naming the folder, for every
// command's outputs; nothing is created.
func TestMissingOutputFolder(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such")
	model := filepath.Join(fx, "bt-tiny")
	x := filepath.Join(missing, "x")
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"import", model, "-o", x}, x},
		{[]string{"quantize", model, "-o", x, "--type", "int8"}, x},
		{[]string{"quantize", model, "-o", filepath.Join(dir, "q"), "--calib", "/usr/share/common-licenses/GPL-2", "--calib-out", x}, x},
		{[]string{"export", model, "-o", x, "--format", "official"}, x},
		{[]string{"export", model, "-o", x + ".btz"}, x + ".btz"},
		{[]string{"init", "--hidden", "64", "--heads", "4", "--layers", "1", "--vocab", "300", "-o", x}, x},
		{[]string{"verify", model, "--json-file", x}, x},
		{[]string{"verify", model, "--bench", "--batch", "1", "-p", "8", "-n", "8", "--plot", x + ".png"}, x + ".png"},
	} {
		code, _, stderr := btc(t, c.args...)
		want := "btconvert: " + c.out + ": cannot be written: the folder " + missing + " does not exist (create it first)\n"
		if code != 2 || stderr != want {
			t.Errorf("%v:\n got %d %q\nwant 2 %q", c.args, code, stderr, want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%v created %v", c.args, ents)
		}
	}
}
