package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
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
	bigPrompt := filepath.Join(work, "big-prompt.txt") // 1 MiB, the most one prompt may have
	os.WriteFile(bigPrompt, bytes.Repeat([]byte("a"), 1<<20), 0o644)
	var nanModel string
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
	weightsOnly := testfix.Copy(t, "pythia-tiny") // no config.json: --heads gives the count
	os.Remove(filepath.Join(weightsOnly, "config.json"))
	var hugeF32 string
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
	cases := []attack{
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
		{"NaN temperature", []string{"generate", base, "-p", "x", "--temperature", "NaN"}, 2, "btconvert: --temperature NaN: must be a finite number"},
		{"Inf temperature", []string{"generate", base, "-p", "x", "--temperature", "Inf"}, 2, "btconvert: --temperature +Inf: must be a finite number"},
		{"NaN top-p", []string{"generate", base, "-p", "x", "--top-p", "NaN"}, 2, "btconvert: --top-p NaN: must be a finite number"},
		{"min-p past 1", []string{"generate", base, "-p", "x", "--min-p", "2"}, 2, "btconvert: --min-p 2: must be between 0 and 1 (0: off)"},
		{"negative repeat penalty", []string{"generate", base, "-p", "x", "--repeat-penalty", "-1"}, 2, "btconvert: --repeat-penalty -1: must be between 0 and 100 (1 or 0: off)"},
		{"no threads", []string{"generate", base, "-p", "x", "-t", "0"}, 2, "btconvert: --threads 0: want 1 to 4096"},
		{"an empty prompt among others", []string{"generate", base, "-p", "x", "-p", ""}, 2, "btconvert: generate: prompt 2 is empty"},
		{"a batch past its bytes", append([]string{"generate", base}, repeatArgs("-f", bigPrompt, 17)...), 2, "btconvert: generate: the prompts hold more than 16777216 bytes; a batch may hold at most that"},
		{"a stop string too long", []string{"generate", base, "-p", "x", "--stop", strings.Repeat("s", 5000)}, 2, "btconvert: --stop \"ssssssssssssssss...\": a stop string may have at most 4096 bytes"},
		{"huge generation", []string{"generate", base, "-p", "x", "-n", "9223372036854775807"}, 2, "btconvert: --max-new-tokens 9223372036854775807: must be between 1 and 16777216"},
		{"huge bench batch", []string{"verify", base, "--bench", "--batch", "100000000"}, 2, "btconvert: --batch \"100000000\": want a comma-separated list of numbers between 1 and 16777216"},
		{"bench batch past the memory", []string{"verify", base, "--bench", "--batch", "16000000", "-p", "4", "-n", "8"}, 2, "btconvert: --batch 16000000: at prompt 4 + generation 8 needs about ..."},
		{"bench generation shorter than two blocks", []string{"verify", base, "--bench", "-p", "8", "-n", "2"}, 2, "btconvert: --gen-len 2: bt generates whole blocks of 4 tokens: measure decode with at least 8 (two blocks)"},
		{"huge init", []string{"init", "--hidden", "65536", "--layers", "2", "-o", out}, 2, "btconvert: tensor \"decoder/layers.0.attention.query_key_value.weight\": needs about ..."},
		{"shard size NaN", []string{"export", base, "-o", out, "--format", "official", "--shard-size", "NaN"}, 2, "btconvert: --shard-size \"NaN\": want a size like 2GB or 500MiB"},
		{"shard size tiny", []string{"export", base, "-o", out, "--format", "official", "--shard-size", "0.0001"}, 2, "btconvert: --shard-size \"0.0001\": want a size like 2GB or 500MiB"},
		{"expansion ratio 0", []string{"import", filepath.Join(fx, "pythia-tiny"), "-o", out, "--from-vanilla", "--expansion-ratio", "0"}, 2, "btconvert: --expansion-ratio 0: must be at least 1"},
		{"heads past a config's bound", []string{"import", weightsOnly, "-o", out, "--heads", "5000"}, 2,
			"btconvert: " + weightsOnly + ": decoder: --heads 5000 is out of range (at most 4096)"},
		{"unknown command", []string{"imprt", "x"}, 2, "btconvert: unknown command \"imprt\"; did you mean \"import\"?"},
		{"unknown flag", []string{"verify", base, "--bnech"}, 2, "btconvert: verify: unknown flag --bnech; did you mean --bench?"},
		{"NaN weights", []string{"quantize", nanModel, "-o", out, "--type", "int8"}, 2,
			"btconvert: " + filepath.Join(nanModel, "model.safetensors") + ": tensor \"gpt_neox.layers.0.attention.dense.weight\": value NaN at index 1: weights must be finite numbers"},
		{"f16 overflow", []string{"import", hugeF32, "-o", out, "--dtype", "f16"}, 2,
			"btconvert: " + filepath.Join(hugeF32, "model.safetensors") + ": tensor \"embedder.embeddings.weight\": 1 values are beyond the f16 range (±65504) and would become infinite; keep f32 or use bf16"},
		{"threshold without a base", []string{"verify", base, "--max-ppl-ratio", "1.1"}, 2, "btconvert: --max-ppl-ratio 1.1: checks against a base model: give --against (and --eval-text)"},
		{"control bytes in a config", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--config", writeFile(t, work, "evil.yaml", "block_length: \"\x1b[31mred\"\n")}, 2,
			"btconvert: " + filepath.Join(work, "evil.yaml") + ": block_length: \"\\x1b[31mred\" is a string, not an integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := btc(t, c.args...)
			last, ok := lastLineIs(stderr, c.msg)
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
	if ents, _ := os.ReadDir(work); len(ents) != 4 { // bt, fifo, evil.yaml, big-prompt.txt
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
				for j := 0; j < 4*128; j += 4 { // finite weights whose logit overflows to infinity
					copy(raw[j:], []byte{0xe6, 0xb1, 0x61, 0x7f}) // 3e38
				}
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
// what the killed one left. Ctrl-C, SIGTERM and a hang-up remove it at once, each with its exit
// status.
func TestKilledWrite(t *testing.T) {
	bin := testBinary(t)
	parent := t.TempDir()
	dest := filepath.Join(parent, "big")
	// The destination is a model btconvert wrote (--force replaces nothing else).
	if out, err := exec.Command(bin, "init", "--hidden", "64", "--heads", "4", "--ffn", "64", "--layers", "1", "--vocab", "300", "-o", dest, "-q").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	old, _ := os.ReadFile(filepath.Join(dest, "manifest.json"))
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
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
		default:
			if len(left) != 0 {
				t.Fatalf("%v left %v", sig, left)
			}
			want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143, syscall.SIGHUP: 129}[sig]
			if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.ExitStatus() != want {
				t.Fatalf("%v: exit status %v, want %d", sig, cmd.ProcessState, want)
			}
		}
	}
}

// The second round of attacks: each class with its exact message and exit status, nothing written,
// nothing of the user's removed.
func TestAttacksSecondRound(t *testing.T) {
	work := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	base := filepath.Join(work, "bt")
	q8 := filepath.Join(work, "q8")
	for _, args := range [][]string{{"import", filepath.Join(fx, "bt-tiny"), "-o", base, "-q"}, {"quantize", base, "-o", q8, "--type", "int8", "-q"}} {
		if code, _, stderr := btc(t, args...); code != 0 {
			t.Fatal(stderr)
		}
	}
	// A user's folder with a file of their own in it.
	precious := filepath.Join(work, "precious")
	os.Mkdir(precious, 0o755)
	os.WriteFile(filepath.Join(precious, "thesis.txt"), []byte("thesis"), 0o644)
	// Our folders, tampered with in the ways an attacker would.
	copyModel := func(name string, edit func(dir string)) string {
		dir := filepath.Join(work, name)
		exec.Command("cp", "-r", base, dir).Run()
		edit(dir)
		return dir
	}
	flipped := copyModel("flipped", func(dir string) {
		p := filepath.Join(dir, "token_decoder.safetensors")
		b, _ := os.ReadFile(p)
		b[len(b)-5] ^= 1
		os.WriteFile(p, b, 0o644)
	})
	unlistedTok := copyModel("unlisted-tok", func(dir string) {
		os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}`), 0o644)
	})
	nanScales := filepath.Join(work, "nan-scales")
	exec.Command("cp", "-r", q8, nanScales).Run()
	{
		p := filepath.Join(nanScales, "block_decoder.safetensors")
		f, _ := safetensors.Open(p)
		info := f.Info("layers.0.attention.dense.weight.scales")
		off := 8 + f.HeaderN + info.Begin
		f.Close()
		b, _ := os.ReadFile(p)
		copy(b[off:], []byte{0, 0, 0xc0, 0x7f}) // a float32 NaN
		os.WriteFile(p, b, 0o644)
		testfix.Relist(t, nanScales, "block_decoder.safetensors")
	}
	// llama.cpp's blocks hold their scales: a NaN one in the third block of a q8_0 weight.
	nanBlocks := filepath.Join(work, "nan-blocks")
	if code, _, stderr := btc(t, "quantize", base, "-o", nanBlocks, "--type", "q8_0", "-q"); code != 0 {
		t.Fatal(stderr)
	}
	{
		p := filepath.Join(nanBlocks, "block_decoder.safetensors")
		f, _ := safetensors.Open(p)
		off := 8 + f.HeaderN + f.Info("layers.0.attention.dense.weight.qweight").Begin + 2*34
		f.Close()
		b, _ := os.ReadFile(p)
		copy(b[off:], []byte{0x00, 0x7e}) // an f16 NaN
		os.WriteFile(p, b, 0o644)
		testfix.Relist(t, nanBlocks, "block_decoder.safetensors")
	}
	// A q6_k super-block keeps its f16 scale last: a NaN one in the second block of a q6_k weight.
	nanK := filepath.Join(work, "nan-k")
	if code, _, stderr := btc(t, "quantize", base, "-o", nanK, "--type", "q6_k", "-q"); code != 0 {
		t.Fatal(stderr)
	}
	{
		p := filepath.Join(nanK, "token_decoder.safetensors")
		f, _ := safetensors.Open(p)
		off := 8 + f.HeaderN + f.Info("layers.1.mlp.dense_4h_to_h.weight.qweight").Begin + 210 + 208
		f.Close()
		b, _ := os.ReadFile(p)
		copy(b[off:], []byte{0x00, 0x7e})
		os.WriteFile(p, b, 0o644)
		testfix.Relist(t, nanK, "token_decoder.safetensors")
	}
	// Finite weights too large to quantize: 1e30 over the first super-block of a row (past any
	// scale a model may hold), and +-1e6 over a group (int4's scale would be past it).
	hugeName := "block_decoder.gpt_neox.layers.0.mlp.dense_4h_to_h.weight"
	largeWeights := func(v func(i int) float32) string {
		dir := testfix.Copy(t, "bt-tiny")
		p := filepath.Join(dir, "model.safetensors")
		f, _ := safetensors.Open(p)
		off := 8 + f.HeaderN + f.Info(hugeName).Begin
		f.Close()
		b, _ := os.ReadFile(p)
		for i := range 256 {
			binary.LittleEndian.PutUint32(b[int(off)+4*i:], math.Float32bits(v(i)))
		}
		os.WriteFile(p, b, 0o644)
		return dir
	}
	huge := largeWeights(func(int) float32 { return 1e30 })
	large := largeWeights(func(i int) float32 { return float32(1-2*(i%2)) * 1e6 })
	nanBundle := filepath.Join(work, "nan.btz")
	if code, _, stderr := btc(t, "export", nanScales, "-o", nanBundle, "--skip-verify", "-q"); code != 0 {
		t.Fatal(stderr)
	}
	hfHuge := testfix.Copy(t, "pythia-tiny")
	testfix.SetJSON(t, filepath.Join(hfHuge, "config.json"), "num_hidden_layers", 1000000000)
	hfPad := testfix.Copy(t, "pythia-tiny")
	testfix.SetJSON(t, filepath.Join(hfPad, "config.json"), "eos_token_id", 100000)
	yamlNeg := testfix.Copy(t, "bt-tiny")
	{
		b, _ := os.ReadFile(filepath.Join(yamlNeg, "config.yaml"))
		os.WriteFile(filepath.Join(yamlNeg, "config.yaml"), []byte(strings.Replace(string(b), "max_length: 2048", "max_length: -1", 1)), 0o644)
	}
	yamlHuge := testfix.Copy(t, "bt-tiny")
	{
		b, _ := os.ReadFile(filepath.Join(yamlHuge, "config.yaml"))
		os.WriteFile(filepath.Join(yamlHuge, "config.yaml"), []byte(strings.Replace(string(b), "num_hidden_layers: 2", "num_hidden_layers: 1000000000", 1)), 0o644)
	}
	badRef := func(name string, edit func(w []safetensors.WriteTensor)) string {
		src, _ := safetensors.Open(filepath.Join(fx, "bt-tiny", "reference.safetensors"))
		defer src.Close()
		var w []safetensors.WriteTensor
		for _, ti := range src.Tensors {
			raw, _ := src.Raw(ti.Name)
			w = append(w, safetensors.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: func() ([]byte, error) { return raw, nil }})
		}
		edit(w)
		p := filepath.Join(work, name+".safetensors")
		if _, err := safetensors.Write(p, nil, w, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	setID := func(tensor string, v uint64) func(w []safetensors.WriteTensor) {
		return func(w []safetensors.WriteTensor) {
			for i := range w {
				if w[i].Name == tensor {
					raw, _ := w[i].Data()
					raw = append([]byte(nil), raw...)
					binary.LittleEndian.PutUint64(raw, v)
					w[i].Data = func() ([]byte, error) { return raw, nil }
				}
			}
		}
	}
	wrapRef := badRef("wrap", setID("input_ids", 1<<32+61))
	greedyRef := badRef("greedy", setID("greedy_ids", 300))
	calibNaN := filepath.Join(work, "nan.calib")
	if code, _, stderr := btc(t, "quantize", base, "-o", filepath.Join(work, "q4"), "--type", "int4", "--calib", testfix.GPL2, "--calib-window", "64", "--calib-out", calibNaN, "-q"); code != 0 {
		t.Fatal(stderr)
	}
	{
		f, _ := safetensors.Open(calibNaN)
		info := f.Tensors[0]
		off := 8 + f.HeaderN + info.Begin
		f.Close()
		b, _ := os.ReadFile(calibNaN)
		copy(b[off:], []byte{0, 0, 0xc0, 0x7f})
		os.WriteFile(calibNaN, b, 0o644)
	}
	bigTok := filepath.Join(work, "tokenizer.json")
	os.WriteFile(bigTok, []byte(`{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 70000}, "unk_token": "a"}, "pre_tokenizer": {"type": "Whitespace"}}`), 0o644)
	text := filepath.Join(work, "text.txt")
	os.WriteFile(text, []byte(strings.Repeat("the quick brown fox ", 4000)), 0o644)
	out := filepath.Join(work, "out")
	odd := filepath.Join(work, "odd") // rows of 80: not whole blocks of llama.cpp's 32
	mustBtc(t, "init", "--hidden", "80", "--heads", "2", "--ffn", "160", "--block-layers", "1", "--token-layers", "1", "--vocab", "256", "-o", odd, "-q")
	cases := []attack{
		{"q8_0 with calibration", []string{"quantize", base, "-o", out, "--type", "q8_0", "--calib", text}, 2,
			`btconvert: --type "q8_0": llama.cpp's types are its round-to-nearest, which calibration would change: calibrate int8 or int4 instead`},
		{"q4_0 on rows that are not whole blocks", []string{"quantize", odd, "-o", out, "--type", "q4_0"}, 2,
			"btconvert: block_decoder/layers.0.attention.query_key_value.weight: q4_0 needs rows of whole blocks of 32 weights; a row here has 80 (give this tensor int8 or int4 with --tensor-type)"},
		{"q4_k on rows its fallback cannot take either", []string{"quantize", odd, "-o", out, "--type", "q4_k"}, 2,
			"btconvert: block_decoder/layers.0.attention.query_key_value.weight: q4_k needs rows of whole blocks of 256 weights; a row here has 80 (nor whole blocks of 32 for its fallback q4_1: give this tensor int8 or int4 with --tensor-type)"},
		{"q6_k asked for rows that are not whole blocks", []string{"quantize", base, "-o", out, "--type", "int8", "--tensor-type", `dense_h_to_4h\.weight$=q6_k`}, 2,
			"btconvert: block_decoder/layers.0.mlp.dense_h_to_4h.weight: q6_k needs rows of whole blocks of 256 weights; a row here has 128 (--tensor-type \"dense_h_to_4h\\\\.weight$=q6_k\" chose it: choose int8, int4 or a type with smaller blocks)"},
		{"weights too large to quantize", []string{"quantize", huge, "-o", out, "--type", "q6_k"}, 2,
			"btconvert: " + filepath.Join(huge, "model.safetensors") + ": tensor \"" + hugeName + "\": value 1e+30 at index 0 is too large to quantize (at most 1.27e+06 in size: a scale of at most 10000 times the largest int8 code); keep this tensor in float with --tensor-type"},
		{"weights too large for int4's scales", []string{"quantize", large, "-o", out, "--type", "int4", "--no-search"}, 2,
			"btconvert: " + filepath.Join(large, "model.safetensors") + ": tensor \"" + hugeName + "\": quantized to int4, row or group 0's scale or minimum would be 133333.33: a quantization scale or minimum must be finite and at most 10000 in size (weights this large: keep this tensor in float with --tensor-type)"},
		{"q6_k asked for a table whose rows are not whole blocks", []string{"quantize", base, "-o", out, "--type", "int8", "--tensor-type", `embed_in\.weight$=Q6_K`}, 2,
			"btconvert: token_decoder/embed_in.weight: q6_k needs rows of whole blocks of 256 weights; a row here has 128 (--tensor-type \"embed_in\\\\.weight$=Q6_K\" chose it: choose int8 for a table, or q8_0 where its rows are whole blocks of 32)"},
		{"calibration statistics onto the input", []string{"quantize", base, "-o", out, "--type", "int4", "--calib", text, "--calib-out", filepath.Join(base, "stats.safetensors"), "--force"}, 2,
			"btconvert: " + filepath.Join(base, "stats.safetensors") + ": is, holds or lies inside the input " + base + "; refusing to replace it (choose another output)"},
		{"q-bits against a preset of other bits", []string{"quantize", base, "-o", out, "--type", "q4_0", "--q-bits", "8"}, 2,
			"btconvert: --q-bits 8 disagrees with --type q4_0"},
		{"force onto a user's folder", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", precious, "--force"}, 2,
			"btconvert: " + precious + ": was not written by btconvert (it has no .btconvert-output receipt); not replaced (--force replaces only what btconvert wrote)"},
		{"official export onto a user's folder", []string{"export", base, "-o", precious, "--format", "official", "--force"}, 2,
			"btconvert: " + precious + ": was not written by btconvert (it has no .btconvert-output receipt); not replaced (--force replaces only what btconvert wrote)"},
		{"force onto the current folder", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", ".", "--force"}, 2,
			"btconvert: .: is the current folder or holds it; not replaced (choose another output)"},
		{"quantize a flipped byte", []string{"quantize", flipped, "-o", out, "--type", "int8"}, 2,
			"btconvert: " + filepath.Join(flipped, "token_decoder.safetensors") + ": does not match its sha256 in manifest.json (changed after it was written)"},
		{"generate from a flipped byte", []string{"generate", flipped, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + filepath.Join(flipped, "token_decoder.safetensors") + ": does not match its sha256 in manifest.json (changed after it was written)"},
		{"inspect --json a flipped byte", []string{"inspect", flipped, "--json"}, 2,
			"btconvert: " + filepath.Join(flipped, "token_decoder.safetensors") + ": does not match its sha256 in manifest.json (changed after it was written)"},
		{"an unlisted tokenizer", []string{"generate", unlistedTok, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + filepath.Join(unlistedTok, "tokenizer.json") + ": not listed in manifest.json (added after the folder was written?); not used"},
		{"NaN scale", []string{"generate", nanScales, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + filepath.Join(nanScales, "block_decoder.safetensors") + ": tensor \"layers.0.attention.dense.weight.scales\": value 0 is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"NaN block scale", []string{"generate", nanBlocks, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + filepath.Join(nanBlocks, "block_decoder.safetensors") + ": tensor \"layers.0.attention.dense.weight.qweight\": block 2's scale or minimum is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"NaN k-quant block scale", []string{"generate", nanK, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + filepath.Join(nanK, "token_decoder.safetensors") + ": tensor \"layers.1.mlp.dense_4h_to_h.weight.qweight\": block 1's scale or minimum is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"NaN block scale exported", []string{"export", nanBlocks, "-o", out, "--format", "official", "--skip-verify"}, 2,
			"btconvert: " + filepath.Join(nanBlocks, "block_decoder.safetensors") + ": tensor \"layers.0.attention.dense.weight.qweight\": block 2's scale or minimum is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"NaN scale exported", []string{"export", nanScales, "-o", out, "--format", "official", "--skip-verify"}, 2,
			"btconvert: " + filepath.Join(nanScales, "block_decoder.safetensors") + ": tensor \"layers.0.attention.dense.weight.scales\": value 0 is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"NaN scale in a bundle", []string{"generate", nanBundle, "-p", "x", "-n", "4"}, 2,
			"btconvert: " + nanBundle + ": block_decoder.safetensors: tensor \"layers.0.attention.dense.weight.scales\": value 0 is NaN: a quantization scale or minimum must be finite and at most 10000 in size"},
		{"a billion layers in config.json", []string{"inspect", hfHuge}, 2,
			"btconvert: " + filepath.Join(hfHuge, "config.json") + ": num_hidden_layers: 1000000000 is out of range (at most 1024)"},
		{"a billion layers in a YAML", []string{"import", yamlHuge, "-o", out}, 2,
			"btconvert: " + filepath.Join(yamlHuge, "config.yaml") + ": block_decoder.config: num_hidden_layers: 1000000000 is out of range (at most 1024)"},
		{"eos outside the vocabulary", []string{"import", hfPad, "-o", out}, 2,
			"btconvert: " + filepath.Join(hfPad, "config.json") + ": eos_token_id 100000 must be an id of the vocabulary (0 to 255)"},
		{"negative max_length", []string{"import", yamlNeg, "-o", out}, 2,
			"btconvert: " + filepath.Join(yamlNeg, "config.yaml") + ": max_length -1 must not be negative"},
		{"reference ids past 32 bits", []string{"verify", base, "--reference", wrapRef}, 2,
			"btconvert: " + wrapRef + ": tensor \"input_ids\": element 0 is 4294967357, not a token id"},
		{"greedy ids outside the vocabulary", []string{"verify", base, "--reference", greedyRef}, 2,
			"btconvert: " + greedyRef + ": tensor \"greedy_ids\": id 300 (element 0) is outside the model's vocabulary 0..255"},
		{"NaN calibration statistics", []string{"quantize", base, "-o", out, "--type", "int4", "--calib-stats", calibNaN}, 2,
			"btconvert: " + calibNaN + ": tensor \"...\": value 0 is NaN: importance is a mean square (finite, not negative)"},
		{"a tokenizer past the vocabulary", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", out, "--tokenizer", bigTok}, 2,
			"btconvert: " + bigTok + ": produces ids up to 70000, past the model's vocabulary of 256 (a tokenizer of another model?)"},
		{"NaN ppl limit", []string{"verify", q8, "--against", base, "--eval-text", testfix.GPL3, "--max-ppl-ratio", "NaN"}, 2, "btconvert: --max-ppl-ratio NaN: must be a finite number"},
		{"NaN top-1 limit", []string{"verify", q8, "--against", base, "--eval-text", testfix.GPL3, "--min-top1", "NaN"}, 2, "btconvert: --min-top1 NaN: must be a finite number"},
		{"a window past the memory", []string{"verify", base, "--eval-text", text, "--window", "32768"}, 2, "btconvert: --window 32768: with --window-batch 8 needs about ..."},
		{"a memory budget no machine has", []string{"verify", base, "--bench", "--mem-budget", "8000PiB"}, 2, "btconvert: --mem-budget \"8000PiB\": more than 1.0 PiB, which no machine has"},
		{"one-tensor shards", []string{"export", base, "-o", out, "--format", "official", "--shard-size", "0.0001MB"}, 2,
			"btconvert: --shard-size \"100 B\": must be at least 1.0 MiB (HF shards are gigabytes; 0 writes one file)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := btc(t, c.args...)
			last, ok := lastLineIs(stderr, c.msg)
			if code != c.code || !ok {
				t.Errorf("got %d %q\nwant %d %q", code, last, c.code, c.msg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("%s left %s behind", c.name, out)
			}
			if c.name == "inspect --json a flipped byte" && stdout != "" {
				t.Errorf("printed a result for a tampered folder: %.100s", stdout)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(precious, "thesis.txt")); err != nil || string(b) != "thesis" {
		t.Fatal("the user's file is gone")
	}
	// -f - with an endless stdin (as < /dev/zero) reads within the prompt limit and says so.
	r, w, _ := os.Pipe()
	saved := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = saved }()
	go func() {
		zeros := make([]byte, 1<<16)
		for {
			if _, err := w.Write(zeros); err != nil {
				return
			}
		}
	}()
	code, _, stderr := btc(t, "generate", base, "-f", "-")
	r.Close()
	w.Close()
	if want := "btconvert: generate: the prompt on stdin is longer than 1048576 bytes (a prompt may have at most that)\n"; code != 2 || stderr != want {
		t.Fatalf("endless stdin: %d %q", code, stderr)
	}
}

// repeatArgs is flag and value n times.
func repeatArgs(flag, value string, n int) []string {
	var out []string
	for range n {
		out = append(out, flag, value)
	}
	return out
}

// attack is a command that must be refused: its exit status and the last line of its stderr (see
// lastLineIs).
type attack struct {
	name string
	args []string
	code int
	msg  string
}

// lastLineIs reports whether stderr's last line is msg, where a msg ending in "..." gives the
// line's start and one with "..." in quotes its start and end (the part between varies by machine).
func lastLineIs(stderr, msg string) (last string, ok bool) {
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	last = lines[len(lines)-1]
	if pre, post, found := strings.Cut(msg, "\"...\""); found {
		return last, strings.HasPrefix(last, pre) && strings.HasSuffix(last, post)
	}
	if prefix, cut := strings.CutSuffix(msg, "..."); cut {
		return last, strings.HasPrefix(last, prefix)
	}
	return last, last == msg
}
