package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// Attacks on what a command reads and writes: no command destroys one of its own inputs (whatever
// flag names it), derived values are checked where they are derived, weights and statistics are
// checked where they are read, and the export gate needs a quality check against the very base.
func TestAttacksThirdRound(t *testing.T) {
	work := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	base := filepath.Join(work, "bt")
	q8 := filepath.Join(work, "q8")
	q4 := filepath.Join(work, "q4")
	other := filepath.Join(work, "other")
	calib := filepath.Join(work, "gpl2.calib")
	for _, args := range [][]string{
		{"import", filepath.Join(fx, "bt-tiny"), "-o", base, "-q"},
		{"import", filepath.Join(fx, "bt-tiny"), "-o", other, "-q"},
		{"quantize", base, "-o", q8, "--type", "int8", "-q"},
		{"quantize", base, "-o", q4, "--type", "int4", "--calib", testfix.GPL2, "--calib-window", "64", "--calib-out", calib, "-q"},
	} {
		mustBtc(t, args...)
	}
	baseConfig, _ := os.ReadFile(filepath.Join(base, "config.json"))
	evalJSON := writeFile(t, work, "e.json", `{"text": "`+strings.Repeat("the quick brown fox ", 200)+`"}`)
	evalBefore, _ := os.ReadFile(evalJSON)

	// A checkpoint given as a file: its config and tokenizer beside it are inputs too.
	ckpt := testfix.Copy(t, "bt-tiny")
	// Derived values: no rotary dims (HF runs it), heads of size 1, a max_length no reader takes.
	noRotary := testfix.Copy(t, "pythia-tiny")
	testfix.SetJSON(t, filepath.Join(noRotary, "config.json"), "rotary_pct", 0.0)
	tinyHeads := testfix.Copy(t, "pythia-tiny")
	testfix.SetJSON(t, filepath.Join(tinyHeads, "config.json"), "num_attention_heads", 128)
	hugeMax := testfix.Copy(t, "bt-tiny")
	editFile(t, filepath.Join(hugeMax, "config.yaml"), "max_length: 2048", "max_length: 9223372036854775807")
	// Non-finite weights, in each architecture family's parts.
	nanIn := func(name, tensor string) string {
		dir := testfix.Copy(t, name)
		testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			for i := range w {
				if w[i].Name == tensor {
					raw, _ := w[i].Data()
					raw = append([]byte(nil), raw...)
					v, _ := safetensors.FromFloat32(w[i].DType, []float32{float32(math.Inf(1))})
					copy(raw[3*len(v):], v)
					w[i].Data = func() ([]byte, error) { return raw, nil }
				}
			}
			return w
		})
		return dir
	}
	nanNeoX := nanIn("pythia-tiny", "gpt_neox.layers.0.attention.dense.weight")
	nanRoBERTa := nanIn("bt-roberta-prefix-tiny", "embedder.embeddings.word_embeddings.weight")
	nanT5 := nanIn("bt-cls-cross-attn-tiny", "token_decoder.decoder.block.0.layer.0.SelfAttention.q.weight")
	// Calibration statistics that no activations give: all zeros, and indefinite (symmetric and
	// within the Cauchy-Schwarz bound, so only the factorization can tell).
	var hessian string
	editCalib := func(name string, edit func(h []float64, n int)) string {
		f, err := safetensors.Open(calib)
		if err != nil {
			t.Fatal(err)
		}
		var w []safetensors.WriteTensor
		for _, ti := range f.Tensors {
			raw, _ := f.Raw(ti.Name)
			if hessian == "" && strings.HasPrefix(ti.Name, "hessian/") {
				hessian = ti.Name
			}
			if ti.Name == hessian {
				n := ti.Shape[0]
				h := make([]float64, n*n)
				for i := range h {
					h[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
				}
				edit(h, n)
				raw = make([]byte, 8*n*n)
				for i, x := range h {
					binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
				}
			}
			w = append(w, safetensors.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: func() ([]byte, error) { return raw, nil }})
		}
		meta := f.Metadata
		f.Close()
		p := filepath.Join(work, name)
		if _, err := safetensors.Write(p, meta, w, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	zeroCalib := editCalib("zero.calib", func(h []float64, n int) { clear(h) })
	noMeta := filepath.Join(work, "nometa.calib")
	{ // the statistics without the metadata that says what they were measured on
		f, _ := safetensors.Open(calib)
		var w []safetensors.WriteTensor
		for _, ti := range f.Tensors {
			raw, _ := f.Raw(ti.Name)
			w = append(w, safetensors.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: func() ([]byte, error) { return raw, nil }})
		}
		f.Close()
		if _, err := safetensors.Write(noMeta, nil, w, nil); err != nil {
			t.Fatal(err)
		}
	}
	indefCalib := editCalib("indefinite.calib", func(h []float64, n int) {
		for i := range h {
			h[i] = 0
		}
		for i := 0; i < n; i++ {
			h[i*n+i] = 1
		}
		for _, ij := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
			h[ij[0]*n+ij[1]], h[ij[1]*n+ij[0]] = -0.9, -0.9 // eigenvalue 1 - 1.8 < 0
		}
	})
	// Tampered folders.
	flipped := copyDir(t, base, filepath.Join(work, "flipped"))
	flipByte(t, filepath.Join(flipped, "token_decoder.safetensors"))
	tok := writeFile(t, work, "tokenizer.json", `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "a"}, "pre_tokenizer": {"type": "Whitespace"}}`)
	withTok := filepath.Join(work, "with-tok")
	mustBtc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", withTok, "--tokenizer", tok, "-q")
	editFile(t, filepath.Join(withTok, "tokenizer.json"), `"b": 1`, `"b": 2`)
	// A quantized model whose recorded check was made against another model than its base.
	q8rec := copyDir(t, q8, filepath.Join(work, "q8-recorded"))
	mustBtc(t, "verify", q8rec, "--against", base, "--eval-text", testfix.GPL3, "--window", "64", "--chunks", "4", "--record", "--backend", "go", "-q")
	editFile(t, filepath.Join(q8rec, "report.json"), `"base_fingerprint": "`, `"base_fingerprint": "0`)
	testfix.Relist(t, q8rec, "report.json")
	// A quantized model recorded under limits looser than its quantization's.
	q8loose := copyDir(t, q8, filepath.Join(work, "q8-loose"))
	mustBtc(t, "verify", q8loose, "--against", base, "--eval-text", testfix.GPL3, "--window", "64", "--chunks", "4", "--record", "--max-ppl-ratio", "1e300", "--backend", "go", "-q")
	// Manifests that reach out of their folder, or list a file twice.
	editManifest := func(name string, edit func(files []any) []any) string {
		dir := copyDir(t, base, filepath.Join(work, name))
		p := filepath.Join(dir, "manifest.json")
		b, _ := os.ReadFile(p)
		var man map[string]any
		json.Unmarshal(b, &man)
		man["files"] = edit(man["files"].([]any))
		b, _ = json.Marshal(man)
		os.WriteFile(p, b, 0o644)
		return dir
	}
	outward := editManifest("outward", func(f []any) []any {
		return append(f, map[string]any{"name": "../precious.txt", "size": 8, "sha256": strings.Repeat("0", 64)})
	})
	twice := editManifest("twice", func(f []any) []any { return append(f, f[0]) })
	// HF configs with settings that would be read wrongly if passed over.
	hfEdit := func(edit func(c map[string]any)) string {
		dir := testfix.Copy(t, "pythia-tiny")
		p := filepath.Join(dir, "config.json")
		b, _ := os.ReadFile(p)
		var c map[string]any
		json.Unmarshal(b, &c)
		edit(c)
		b, _ = json.Marshal(c)
		os.WriteFile(p, b, 0o644)
		return dir
	}
	ropeScaled := hfEdit(func(c map[string]any) { c["rope_scaling"] = map[string]any{"type": "linear", "factor": 4.0} })
	twoPcts := hfEdit(func(c map[string]any) { c["rotary_pct"], c["partial_rotary_factor"] = 0.25, 0.5 })
	zeroPositions := hfEdit(func(c map[string]any) { c["max_position_embeddings"] = 0 })
	// A quantized folder of an older btconvert, whose manifest does not name its base.
	q8old := copyDir(t, q8, filepath.Join(work, "q8-old"))
	mustBtc(t, "verify", q8old, "--against", base, "--eval-text", testfix.GPL3, "--window", "64", "--chunks", "4", "--record", "--backend", "go", "-q")
	{
		p := filepath.Join(q8old, "manifest.json")
		b, _ := os.ReadFile(p)
		var man map[string]any
		json.Unmarshal(b, &man)
		delete(man["source"].(map[string]any), "fingerprint")
		b, _ = json.Marshal(man)
		os.WriteFile(p, b, 0o644)
	}
	// Bundles: a tiny one declaring 64 MiB, and valid ones whose frame declares a larger window.
	bomb := bundleOf(t, filepath.Join(work, "bomb.btz"), 64<<20)
	good := filepath.Join(work, "good.btz")
	mustBtc(t, "export", base, "-o", good, "-q")
	window64 := patchedWindow(t, good, filepath.Join(work, "w64.btz"), 0x80)   // 64 MiB: within zstd's default limit
	window256 := patchedWindow(t, good, filepath.Join(work, "w256.btz"), 0x90) // 256 MiB

	out := filepath.Join(work, "out")
	inside := "; refusing to replace it (choose another output)"
	notOurs := "; not replaced (--force replaces only what btconvert wrote)"
	cases := []attack{
		{"report over the base's config", []string{"verify", q8, "--against", base, "--eval-text", testfix.GPL3, "--json-file", filepath.Join(base, "config.json"), "--force"}, 2,
			"btconvert: " + filepath.Join(base, "config.json") + ": is, holds or lies inside the input " + base + inside},
		{"bench JSON over the benchmarked model", []string{"verify", base, "--bench", "-p", "8", "-n", "8", "--batch", "1", "--json-file", filepath.Join(base, "config.json"), "--force"}, 2,
			"btconvert: " + filepath.Join(base, "config.json") + ": is, holds or lies inside the input " + base + inside},
		{"report over the evaluation text", []string{"verify", base, "--eval-text", evalJSON, "--json-file", evalJSON, "--force"}, 2,
			"btconvert: " + evalJSON + ": is, holds or lies inside the input " + evalJSON + inside},
		{"report over another model's config", []string{"verify", base, "--json-file", filepath.Join(other, "config.json"), "--force"}, 2,
			"btconvert: " + filepath.Join(other, "config.json") + ": exists and is not a verify report" + notOurs},
		{"import over the config beside a checkpoint file", []string{"import", filepath.Join(ckpt, "model.safetensors"), "-o", filepath.Join(ckpt, "config.yaml"), "--force"}, 2,
			"btconvert: " + filepath.Join(ckpt, "config.yaml") + ": is, holds or lies inside the input " + filepath.Join(ckpt, "config.yaml") + inside},
		{"bench JSON and plot in one file", []string{"verify", base, "--bench", "--json-file", filepath.Join(work, "b.png"), "--plot", filepath.Join(work, "b.png")}, 2,
			"btconvert: " + filepath.Join(work, "b.png") + ": is, holds or lies inside the output " + filepath.Join(work, "b.png") + " of the same command (choose two separate outputs)"},
		{"statistics over another model's weights", []string{"quantize", base, "-o", out, "--type", "int4", "--calib", testfix.GPL2, "--calib-out", filepath.Join(other, "embedder.safetensors"), "--force"}, 2,
			"btconvert: " + filepath.Join(other, "embedder.safetensors") + ": exists and is not a calibration statistics file" + notOurs},
		{"a memory budget past the machine's", []string{"verify", base, "--bench", "--mem-budget", "1PiB", "--batch", "1000000", "-p", "8", "-n", "8", "--backend", "go"}, 2,
			"btconvert: --mem-budget \"1.0 PiB\": more than the ..."},
		{"a quality check against itself", []string{"verify", q8, "--against", q8, "--eval-text", testfix.GPL3, "--record", "--backend", "go"}, 2,
			"btconvert: --against \"" + q8 + "\": is not the model " + q8 + " was quantized from (their weights differ): a quality check recorded for export must measure against that base"},
		{"a quality check against another model", []string{"verify", q8, "--against", q4, "--eval-text", testfix.GPL3, "--record", "--backend", "go"}, 2,
			"btconvert: --against \"" + q4 + "\": is not the model " + q8 + " was quantized from (their weights differ): a quality check recorded for export must measure against that base"},
		{"export with a check against another base", []string{"export", q8rec, "-o", out + ".btz"}, 2,
			"btconvert: " + q8rec + ": is quantized and its recorded report measured quality against another model than the one it was quantized from; run: ..."},
		{"export an older quantized folder", []string{"export", q8old, "-o", out + ".btz"}, 2,
			"btconvert: " + q8old + ": is quantized and does not record the model it was quantized from (quantized by an older btconvert): quantize it again, then run: ..."},
		{"record a check of an older quantized folder", []string{"verify", q8old, "--against", base, "--eval-text", testfix.GPL3, "--record", "--backend", "go"}, 2,
			"btconvert: " + q8old + ": does not record the model it was quantized from (quantized by an older btconvert): quantize it again to record a quality check for export"},
		{"export after a check under looser limits", []string{"export", q8loose, "-o", out + ".btz"}, 2,
			"btconvert: " + q8loose + ": is quantized and its recorded report allowed a perplexity ratio up to 1e+300, past the 1.01 export allows for its quantization; verify it again with --record within them (without --max-ppl-ratio and --min-top1 it checks exactly them), or pass --skip-verify"},
		{"a manifest reaching out of its folder", []string{"inspect", outward}, 2,
			"btconvert: " + filepath.Join(outward, "manifest.json") + ": lists an unsafe file name \"../precious.txt\""},
		{"a manifest listing a file twice", []string{"verify", twice, "--backend", "go"}, 2,
			"btconvert: " + filepath.Join(twice, "manifest.json") + ": lists \"embedder.safetensors\" twice"},
		{"rope scaling in config.json", []string{"import", ropeScaled, "-o", out}, 2,
			"btconvert: " + filepath.Join(ropeScaled, "config.json") + ": rope_scaling: rotary scaling is not supported"},
		{"two rotary fractions in config.json", []string{"import", twoPcts, "-o", out}, 2,
			"btconvert: " + filepath.Join(twoPcts, "config.json") + ": rotary_pct is given twice, as 0.5 and 0.25 (rope_parameters, partial_rotary_factor / rotary_pct, rope_theta / rotary_emb_base): say it once"},
		{"no positions in config.json", []string{"import", zeroPositions, "-o", out}, 2,
			"btconvert: " + filepath.Join(zeroPositions, "config.json") + ": max_position_embeddings: 0 is not a positive integer"},
		{"a dry run onto an existing output", []string{"import", filepath.Join(fx, "bt-tiny"), "-o", base, "--dry-run"}, 2,
			"btconvert: " + base + ": already exists (use --force to replace it)"},
		{"a dry run onto its input", []string{"import", filepath.Join(ckpt, "model.safetensors"), "-o", ckpt, "--force", "--dry-run"}, 2,
			"btconvert: " + ckpt + ": is, holds or lies inside the input " + filepath.Join(ckpt, "model.safetensors") + inside},
		{"statistics that do not say their text", []string{"quantize", base, "-o", out, "--type", "int4", "--calib-stats", noMeta}, 2,
			"btconvert: " + noMeta + ": has no text_sha256 in its metadata: not statistics saved by quantize --calib-out (collect them again with --calib FILE --calib-out nometa.calib)"},
		{"a bench that would not end", []string{"verify", base, "--bench", "--reps", "100000000"}, 2, "btconvert: --reps 100000000: must be between 1 and 1000"},
		{"an empty stop string", []string{"generate", base, "-p", "x", "--stop", ""}, 2,
			"btconvert: --stop \"\": is empty: a stop string is text that ends a row where it is generated"},
		{"max_length past every reader", []string{"import", hugeMax, "-o", out}, 2,
			"btconvert: " + filepath.Join(hugeMax, "config.yaml") + ": max_length 9223372036854775807 is out of range (0 to 4294967296)"},
		{"infinite GPT-NeoX weights", []string{"import", nanNeoX, "-o", out}, 2,
			"btconvert: " + filepath.Join(nanNeoX, "model.safetensors") + ": tensor \"gpt_neox.layers.0.attention.dense.weight\": value +Inf at index 3: weights must be finite numbers"},
		{"infinite RoBERTa weights", []string{"generate", nanRoBERTa, "-p", "x", "-n", "4", "--backend", "go"}, 2,
			"btconvert: " + filepath.Join(nanRoBERTa, "model.safetensors") + ": tensor \"embedder.embeddings.word_embeddings.weight\": value +Inf at index 3: weights must be finite numbers"},
		{"infinite T5 weights", []string{"import", nanT5, "-o", out}, 2,
			"btconvert: " + filepath.Join(nanT5, "model.safetensors") + ": tensor \"token_decoder.decoder.block.0.layer.0.SelfAttention.q.weight\": value +Inf at index 3: weights must be finite numbers"},
		{"an all-zero second moment", []string{"quantize", base, "-o", out, "--type", "int4", "--calib-stats", zeroCalib}, 2,
			"btconvert: " + zeroCalib + ": tensor \"...\": is all zeros on its diagonal: no calibration data reached this layer"},
		{"an indefinite second moment", []string{"quantize", base, "-o", out, "--type", "int4", "--calib-stats", indefCalib}, 2,
			"btconvert: " + indefCalib + ": tensor \"...\": calibration Hessian is unusable: not positive definite after damping (statistics that no activations give)"},
		{"inspect a flipped byte", []string{"inspect", flipped}, 2,
			"btconvert: " + filepath.Join(flipped, "token_decoder.safetensors") + ": does not match its sha256 in manifest.json (changed after it was written)"},
		{"self-check with a changed tokenizer", []string{"verify", withTok, "--backend", "go"}, 2,
			"btconvert: " + filepath.Join(withTok, "tokenizer.json") + ": does not match its sha256 in manifest.json (changed after it was written)"},
		{"a bundle that would fill the disk", []string{"inspect", bomb}, 2,
			"btconvert: " + bomb + ": its entries hold 64 MiB in a bundle of ..."},
		{"a bundle with a 256 MiB window", []string{"inspect", window256}, 2,
			"btconvert: " + window256 + ": not a btconvert bundle: its zstd frame declares a window of 256 MiB; btconvert decodes windows of up to 128 MiB, as the zstd tool does by default (recompress with zstd --long=27 or less)"},
		{"a bundle with a 64 MiB window", []string{"inspect", window64}, 0, ""},
		{"no rotary dims", []string{"import", noRotary, "-o", filepath.Join(work, "no-rotary"), "-q"}, 0, ""},
		{"no rotary dims generate", []string{"generate", filepath.Join(work, "no-rotary"), "-p", "x", "-n", "4", "--backend", "go"}, 0, ""},
		{"heads of size 1", []string{"verify", tinyHeads, "--backend", "go"}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := btc(t, c.args...)
			if c.code == 0 {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				return
			}
			last, ok := lastLineIs(stderr, c.msg)
			if code != c.code || !ok {
				t.Errorf("got %d %q\nwant %d %q", code, last, c.code, c.msg)
			}
			for _, p := range []string{out, out + ".btz"} {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("%s left %s behind", c.name, p)
				}
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(base, "config.json")); !bytes.Equal(b, baseConfig) {
		t.Fatal("the base model's config was replaced")
	}
	if b, _ := os.ReadFile(evalJSON); !bytes.Equal(b, evalBefore) {
		t.Fatal("the evaluation text was replaced")
	}
	mustBtc(t, "verify", base, "--backend", "go", "-q") // the base is still whole
	// A check against another model than the base is measured and said, never recorded; one
	// against a copy of the base (the same weights) is a check against the base.
	if _, err := os.Stat(filepath.Join(q8, "report.json")); err == nil {
		t.Fatal("a check against another model was recorded")
	}
	_, _, stderr := btc(t, "verify", q8, "--against", q4, "--eval-text", testfix.GPL3, "--window", "64", "--chunks", "2", "--backend", "go")
	if want := "warning: " + q4 + " is not the model " + q8 + " was quantized from (their weights differ): the figures compare two other models"; !strings.Contains(stderr, want) {
		t.Errorf("no warning for another base: %s", stderr)
	}
	mustBtc(t, "verify", q8, "--against", other, "--eval-text", testfix.GPL3, "--window", "64", "--chunks", "2", "--record", "--backend", "go", "-q")
	mustBtc(t, "export", q8, "-o", filepath.Join(work, "q8.btz"), "-q")
}

// The current folder reached through a symlink is still the current folder: never replaced.
func TestForceOntoCurrentFolderThroughSymlink(t *testing.T) {
	work := t.TempDir()
	real := filepath.Join(work, "model")
	mustBtc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", real, "-q")
	link := filepath.Join(work, "link")
	os.Symlink(real, link)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(link)
	code, _, stderr := btc(t, "import", filepath.Join(fx, "bt-tiny"), "-o", real, "--force")
	if want := "btconvert: " + real + ": is the current folder or holds it; not replaced (choose another output)"; code != 2 || !strings.HasSuffix(stderr, want+"\n") {
		t.Fatalf("got %d %q", code, stderr)
	}
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %q", path, old)
	}
	os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
}

func copyDir(t *testing.T, src, dst string) string {
	t.Helper()
	if err := exec.Command("cp", "-r", src, dst).Run(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	b[len(b)-5] ^= 1
	os.WriteFile(path, b, 0o644)
}

// bundleOf writes a bundle of a manifest listing one file of size zero bytes, and that file
// (compressed, a few KiB).
func bundleOf(t *testing.T, path string, size int) string {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	man, _ := json.Marshal(map[string]any{"tool": "btconvert", "files": []map[string]any{{"name": "config.json", "size": size, "sha256": strings.Repeat("0", 64)}}})
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(man)), Typeflag: tar.TypeReg})
	tw.Write(man)
	tw.WriteHeader(&tar.Header{Name: "config.json", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
	tw.Write(make([]byte, size))
	tw.Close()
	zw.Close()
	os.WriteFile(path, buf.Bytes(), 0o644)
	return path
}

// patchedWindow copies a bundle with its zstd frame's window descriptor set to wd (the blocks
// stay valid: a larger window than the data needs is allowed).
func patchedWindow(t *testing.T, src, dst string, wd byte) string {
	t.Helper()
	b, _ := os.ReadFile(src)
	if b[4]&0x20 != 0 {
		t.Fatal("the bundle's frame is single-segment: no window descriptor")
	}
	b[5] = wd
	os.WriteFile(dst, b, 0o644)
	return dst
}

// A tokenizer carried from the source is checked at import: one that does not load, or that
// produces ids past the model's vocabulary, is refused there, naming it, and nothing is written.
func TestImportChecksCarriedTokenizer(t *testing.T) {
	for _, c := range []struct {
		content, msg string
	}{
		{"{bad", "tokenizer.json: cannot load the tokenizer: invalid character 'b' looking for beginning of object key string"},
		{`{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0,"b":999},"unk_token":"a"},"pre_tokenizer":{"type":"Whitespace"}}`,
			"tokenizer.json: produces ids up to 999, past the model's vocabulary of 256 (a tokenizer of another model?)"},
	} {
		src := testfix.Copy(t, "llama-tiny")
		writeFile(t, src, "tokenizer.json", c.content)
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := btc(t, "import", src, "-o", out, "-q")
		if want := "btconvert: " + filepath.Join(src, c.msg); code != 2 || strings.TrimSpace(stderr) != want {
			t.Errorf("exit %d, stderr %q\nwant %q", code, stderr, want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("a refused import left output")
		}
	}
}
