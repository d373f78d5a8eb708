package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// Bad input, as an attacker would give it: each class gets one clear line, exit 2 (or 1 for a
// failed check), no panic, and nothing left behind.
func TestAttacks(t *testing.T) {
	work := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	base := filepath.Join(work, "bt")
	if code, _, stderr := btc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", base, "-q"); code != 0 {
		t.Fatal(stderr)
	}
	fifo := filepath.Join(work, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	nanModel := filepath.Join(work, "nan")
	{ // a checkpoint folder whose weights hold a NaN
		dir := testfix.Copy(t, "pythia-tiny")
		testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			for i := range w {
				if w[i].Name == "gpt_neox.layers.0.attention.dense.weight" {
					raw, _ := w[i].Data()
					raw[2], raw[3] = 0x00, 0x7e // an f16 NaN
				}
			}
			return w
		})
		nanModel = dir
	}
	hugeF32 := filepath.Join(work, "huge")
	{ // f32 weights past the f16 range
		dir := testfix.Copy(t, "bt-tiny")
		testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			for i := range w {
				if w[i].Name == "embedder.embeddings.weight" {
					raw, _ := w[i].Data()
					copy(raw, []byte{0, 0, 0x80, 0x47}) // 65536
				}
			}
			return w
		})
		hugeF32 = dir
	}
	out := filepath.Join(work, "out")
	cases := []struct {
		name string
		args []string
		code int
		msg  string // the whole last line of stderr, or its start when it ends with "..."
	}{
		{"force onto the input", []string{"quantize", base, "-o", base, "--type", "int8", "--force"}, 2,
			"btconvert: " + base + ": is, holds or lies inside the input " + base + "; refusing to replace it (choose another output)"},
		{"force onto the input's folder", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", fx, "--force"}, 2,
			"btconvert: " + fx + ": is, holds or lies inside the input " + filepath.Join(fx, "bt-tiny") + "; refusing to replace it (choose another output)"},
		{"value missing at the end", []string{"import", filepath.Join(fx, "bt-tiny"), "-o"}, 2, "btconvert: import: flag -o needs a value"},
		{"prompt missing at the end", []string{"generate", base, "--prompt"}, 2, "btconvert: generate: flag --prompt needs a value"},
		{"FIFO as a config", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--config", fifo}, 2,
			"btconvert: " + fifo + ": is not a regular file (only regular files are read)"},
		{"/dev/zero as weights", []string{"inspect", "/dev/zero"}, 2, "btconvert: /dev/zero: is not a regular file (only regular files are read)"},
		{"/dev/zero as eval text", []string{"verify", base, "--eval-text", "/dev/zero"}, 2, "btconvert: /dev/zero: is not a regular file (only regular files are read)"},
		{"calib window 0", []string{"quantize", base, "-o", out, "--type", "int4", "--calib", testfix.GPL2, "--calib-window", "0"}, 2, "btconvert: --calib-window 0: must be positive"},
		{"calib window below two blocks", []string{"quantize", base, "-o", out, "--type", "int4", "--calib", testfix.GPL2, "--calib-window", "5"}, 2,
			"btconvert: --calib-window 5: must be between 8 (two blocks) and 65536 tokens"},
		{"NaN temperature", []string{"generate", base, "-p", "x", "--temperature", "NaN"}, 2, "btconvert: --temperature NaN: must be a finite number >= 0 (0: greedy)"},
		{"Inf temperature", []string{"generate", base, "-p", "x", "--temperature", "Inf"}, 2, "btconvert: --temperature +Inf: must be a finite number >= 0 (0: greedy)"},
		{"NaN top-p", []string{"generate", base, "-p", "x", "--top-p", "NaN"}, 2, "btconvert: --top-p NaN: must be between 0 and 1 (0 or 1: off)"},
		{"huge generation", []string{"generate", base, "-p", "x", "-n", "9223372036854775807"}, 2, "btconvert: --max-new-tokens 9223372036854775807: must be between 1 and 16777216"},
		{"huge bench batch", []string{"verify", base, "--bench", "--batch", "100000000"}, 2, "btconvert: --batch \"100000000\": want a comma-separated list of numbers between 1 and 16777216"},
		{"bench batch past the memory", []string{"verify", base, "--bench", "--batch", "16000000", "-p", "4", "-n", "4"}, 2, "btconvert: --batch 16000000: at prompt 4 + generation 4 needs about ..."},
		{"huge init", []string{"init", "--hidden", "65536", "--layers", "2", "-o", out}, 2, "btconvert: tensor \"decoder/layers.0.attention.query_key_value.weight\": needs about ..."},
		{"shard size NaN", []string{"export", base, "-o", out, "--format", "official", "--shard-size", "NaN"}, 2, "btconvert: --shard-size \"NaN\": want a size like 2GB or 500MiB"},
		{"shard size tiny", []string{"export", base, "-o", out, "--format", "official", "--shard-size", "0.0001"}, 2, "btconvert: --shard-size \"0.0001\": want a size like 2GB or 500MiB"},
		{"expansion ratio 0", []string{"import", filepath.Join(fx, "pythia-tiny"), "-o", out, "--from-vanilla", "--expansion-ratio", "0"}, 2, "btconvert: --expansion-ratio 0: must be at least 1"},
		{"unknown command", []string{"imprt", "x"}, 2, "btconvert: unknown command \"imprt\"; did you mean \"import\"?"},
		{"unknown flag", []string{"verify", base, "--bnech"}, 2, "btconvert: verify: unknown flag --bnech; did you mean --bench?"},
		{"NaN weights", []string{"quantize", nanModel, "-o", out, "--type", "int8"}, 2,
			"btconvert: " + filepath.Join(nanModel, "model.safetensors") + ": tensor \"gpt_neox.layers.0.attention.dense.weight\": value NaN at index 1: non-finite weights cannot be quantized"},
		{"f16 overflow", []string{"import", hugeF32, "-o", out, "--dtype", "f16"}, 2,
			"btconvert: " + filepath.Join(hugeF32, "model.safetensors") + ": tensor \"embedder.embeddings.weight\": 1 values are beyond the f16 range (±65504) and would become infinite; keep f32 or use bf16"},
		{"threshold without a base", []string{"verify", base, "--max-ppl-ratio", "1.1"}, 2, "btconvert: --max-ppl-ratio 1.1: checks against a base model: give --against (and --eval-text)"},
		{"control bytes in a config", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--config", writeFile(t, work, "evil.yaml", "block_length: \"\x1b[31mred\"\n")}, 2,
			"btconvert: " + filepath.Join(work, "evil.yaml") + ": not valid YAML: ..."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := btc(t, c.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			ok := last == c.msg
			if prefix, cut := strings.CutSuffix(c.msg, "..."); cut {
				ok = strings.HasPrefix(last, prefix)
			}
			if code != c.code || !ok {
				t.Errorf("got %d %q\nwant %d %q", code, last, c.code, c.msg)
			}
			if strings.ContainsRune(stderr, 0x1b) {
				t.Errorf("a control byte reached the terminal: %q", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("%s left %s behind", c.name, out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(base, "config.json")); err != nil {
		t.Fatal("the input was damaged")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 3 { // bt, fifo, evil.yaml
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left in the work folder: %v", names)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	p := filepath.Join(dir, name)
	os.WriteFile(p, []byte(body), 0o644)
	return p
}

// A run whose measure is not finite fails (exit 1) and still writes valid JSON.
func TestNonFiniteMeasureFails(t *testing.T) {
	dir := testfix.Copy(t, "bt-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		for i := range w {
			if w[i].Name == "token_decoder.embed_out.weight" {
				raw, _ := w[i].Data()
				copy(raw, []byte{0, 0, 0xc0, 0x7f}) // NaN
			}
		}
		return w
	})
	js := filepath.Join(t.TempDir(), "r.json")
	code, out, stderr := btc(t, "verify", dir, "--eval-text", filepath.Join(fx, "README.md"), "--json-file", js, "-q")
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(stderr, "verification failed") {
		t.Fatalf("%d %s %s", code, out, stderr)
	}
	var r map[string]any
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &r); err != nil || r["pass"] != false || r["non_finite"] == nil {
		t.Fatalf("report %s (%v)", b, err)
	}
}

// A verify of any model import writes: a block length of 3.
func TestVerifyOddBlockLength(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bl3")
	if code, _, stderr := btc(t, "import", filepath.Join(fx, "pythia-tiny"), "--from-vanilla", "--block-length", "3", "-o", out, "-q"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := btc(t, "verify", out, "-q"); code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
}

// A failed write to stdout is a failure (exit 1), not a silent success.
func TestStdoutFull(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	var errb strings.Builder
	code := run([]string{"btconvert", "inspect", filepath.Join(fx, "bt-tiny"), "--json"}, full, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no space left on device") {
		t.Fatalf("%d %q", code, errb.String())
	}
}

// kill -9 in the middle of a long write leaves the destination untouched; the next run sweeps
// what the killed one left. Ctrl-C removes it at once.
func TestKilledWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "btconvert")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	parent := t.TempDir()
	dest := filepath.Join(parent, "big")
	// The destination is a model btconvert wrote (--force replaces nothing else).
	if out, err := exec.Command(bin, "init", "--hidden", "64", "--heads", "4", "--ffn", "64", "--layers", "1", "--vocab", "300", "-o", dest, "-q").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	old, _ := os.ReadFile(filepath.Join(dest, "manifest.json"))
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		cmd := exec.Command(bin, "init", "--preset", "block_main_b4_85", "-o", dest, "--force", "-q")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the temp output exists and is growing, then kill.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(filepath.Join(parent, ".btconvert-*.tmp", "*.safetensors")); len(m) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if b, _ := os.ReadFile(filepath.Join(dest, "manifest.json")); string(b) != string(old) {
			t.Fatalf("%v: the destination changed (%v)", sig, err)
		}
		left, _ := filepath.Glob(filepath.Join(parent, ".btconvert-*"))
		switch sig {
		case syscall.SIGKILL:
			if len(left) == 0 {
				t.Fatalf("kill -9 left no temp output: the test did not interrupt a write")
			}
			// A later run into the same folder sweeps it (the sweep leaves entries younger than a
			// minute alone: age them).
			for _, l := range left {
				past := time.Now().Add(-2 * time.Minute)
				os.Chtimes(l, past, past)
			}
			out, err := exec.Command(bin, "init", "--hidden", "64", "--heads", "4", "--ffn", "64", "--layers", "1", "--vocab", "300", "-o", filepath.Join(parent, "small"), "-q").CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if left, _ := filepath.Glob(filepath.Join(parent, ".btconvert-*")); len(left) != 0 {
				t.Fatalf("not swept: %v", left)
			}
		case syscall.SIGINT:
			if len(left) != 0 {
				t.Fatalf("Ctrl-C left %v", left)
			}
			if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.ExitStatus() != 130 {
				t.Fatalf("exit status %v, want 130", cmd.ProcessState)
			}
		}
	}
}
