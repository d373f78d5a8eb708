package btconvert_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/families/gptneox"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/runner"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

// import(export(M)) == M for every fixture (the ablations' RoBERTa and T5 parts too), sharded or
// not.
func TestExportOfficialRoundTrip(t *testing.T) {
	for _, name := range testfix.Referenced() {
		for _, shard := range []int64{0, btconvert.MinShardSize} {
			src := testfix.Imported(t, name)
			m := testfix.Open(t, src)
			out := filepath.Join(t.TempDir(), "official")
			res, err := btconvert.Export(btconvert.ExportOptions{Source: src, Output: out, Format: btconvert.Official, ShardSize: shard})
			if err != nil {
				t.Fatal(err)
			}
			back := testfix.Open(t, out)
			if want := map[bool]string{true: official.Format, false: gptneox.Format}[m.Config.IsBlock()]; back.Format != want || res.Layout != want {
				t.Fatalf("%s exported as %s (%s)", name, back.Format, res.Layout)
			}
			if shard > 0 {
				if _, err := os.Stat(filepath.Join(out, safetensors.IndexName)); err != nil {
					t.Fatalf("%s: no shard index", name)
				}
			}
			testfix.SameTensors(t, m, back)
			if len(res.Files) == 0 || len(res.Files[0].SHA256) != 64 {
				t.Fatalf("files %+v", res.Files)
			}
		}
	}
}

// Exporting the imported bt-tiny gives back the original checkpoint bit for bit, plus a zero
// embed_in where the original had trained-but-unused values.
func TestExportOfficialBitForBit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "o")
	if _, err := btconvert.Export(btconvert.ExportOptions{Source: testfix.Imported(t, "bt-tiny"), Output: out, Format: btconvert.Official}); err != nil {
		t.Fatal(err)
	}
	got, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, _ := safetensors.Open(filepath.Join(testfix.Path("bt-tiny"), "model.safetensors"))
	defer want.Close()
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(got.Tensors), len(want.Tensors))
	}
	for _, ti := range want.Tensors {
		a, err := got.Raw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := want.Raw(ti.Name)
		if ti.Name == "block_decoder.gpt_neox.embed_in.weight" {
			if bytes.Count(a, []byte{0}) != len(a) || len(a) != len(b) {
				t.Fatalf("embed_in should be zero-filled")
			}
			continue
		}
		if !bytes.Equal(a, b) || got.Info(ti.Name).DType != ti.DType {
			t.Fatalf("%s differs", ti.Name)
		}
	}
}

// The calibration path as quantize --calib runs it: statistics saved with CalibOut and reused
// with CalibStats give the same model, bit for bit, and the provenance is recorded.
func TestQuantizeCalibratedAndReused(t *testing.T) {
	if _, err := os.Stat(testfix.GPL2); err != nil {
		t.Skip("GPL-2 not on this machine")
	}
	src := testfix.Imported(t, "bt-tiny")
	dir := t.TempDir()
	s := quant.Settings{Type: quant.Int4, GroupSize: 64, Search: true}
	stats := filepath.Join(dir, "gpl2.calib")
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	res, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: src, Output: a, Settings: s, Calib: testfix.GPL2, CalibOut: stats, Runtime: btconvert.Runtime{Backend: "go"}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Provenance
	if p.Method != "gptq" || p.Calibration != "GPL-2" || len(p.CalibrationSHA256) != 64 || p.CalibrationTokens < 10000 || res.CollectSecs <= 0 {
		t.Fatalf("provenance %+v", p)
	}
	if _, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: src, Output: b, Settings: s, CalibStats: stats}); err != nil {
		t.Fatal(err)
	}
	ma, mb := testfix.Open(t, a), testfix.Open(t, b)
	testfix.SameTensors(t, ma, mb)
	if q := mb.Config.QuantizedWith; q == nil || q.Method != "gptq" || q.CalibrationSHA256 != p.CalibrationSHA256 {
		t.Fatalf("reused statistics: provenance %+v", q)
	}
	// Statistics of another model are refused.
	_, err = btconvert.Quantize(btconvert.QuantizeOptions{Source: testfix.Imported(t, "pythia-tiny"), Output: filepath.Join(dir, "c"), Settings: s, CalibStats: stats})
	if err == nil || !strings.Contains(err.Error(), "missing (statistics of another model?)") {
		t.Fatalf("got %v", err)
	}
}

// A Go caller asks for llama.cpp's q4_0 by name and gets its blocks: one U8 tensor of 18-byte
// blocks of 32 weights per row, recorded as such, rounded as llama.cpp rounds (no search).
func TestQuantizeQ4_0FromGo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q4_0")
	res, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: testfix.Imported(t, "bt-tiny"), Output: out, Settings: quant.Settings{Type: "q4_0"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Provenance; p.Type != scheme.Q4_0 || p.GroupSize != 32 || !p.Symmetric || p.Method != "rtn" {
		t.Fatalf("provenance %+v", p)
	}
	m := testfix.Open(t, out)
	q := m.Config.QuantOf(arch.TokenDecoder, arch.EmbedOut+".weight")
	if q == nil || q.Type != scheme.Q4_0 || q.GroupSize != 32 || !q.Symmetric || q.ScaleDType != "F16" {
		t.Fatalf("recorded %+v", q)
	}
	head := m.Tensor(arch.TokenDecoder, arch.EmbedOut+".weight"+scheme.QWeightSuffix)
	if head == nil || head.DType != "U8" || !slices.Equal(head.Shape, []int{q.Rows, q.Cols / 32 * 18}) || m.Tensor(arch.TokenDecoder, arch.EmbedOut+".weight"+scheme.ScalesSuffix) != nil {
		t.Fatalf("stored head %+v", head)
	}
	if got := m.Config.QuantizedWith.String(); !strings.HasPrefix(got, "q4_0, rtn, btconvert ") {
		t.Errorf("provenance line %q", got)
	}
}

// Export's gate for a quantized model accepts only a recorded report that passed and measured
// quality against a base model on a text.
func TestExportGate(t *testing.T) {
	base := testfix.Imported(t, "bt-tiny")
	q8 := filepath.Join(t.TempDir(), "q8")
	if _, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: base, Output: q8, Settings: quant.Settings{Type: quant.Int8}}); err != nil {
		t.Fatal(err)
	}
	export := func() error {
		_, err := btconvert.Export(btconvert.ExportOptions{Source: q8, Output: filepath.Join(t.TempDir(), "q8.btz"), Format: btconvert.Bundle})
		return err
	}
	// A hand-written report.json is not recorded.
	os.WriteFile(filepath.Join(q8, modeldir.ReportName), []byte(`{"pass": true}`), 0o644)
	if err := export(); err == nil || !strings.HasSuffix(err.Error(), "report.json: not listed in manifest.json (added after the folder was written?); not used") {
		t.Fatalf("hand-written report: %v", err)
	}
	os.Remove(filepath.Join(q8, modeldir.ReportName))
	// A passing self-check is recorded, but measured nothing against a base.
	if _, err := btconvert.Verify(btconvert.VerifyOptions{Model: q8, Record: true}); err != nil {
		t.Fatal(err)
	}
	if err := export(); err == nil || !strings.Contains(testfix.ErrText(err), "its recorded report did not measure quality against a base model on a text") {
		t.Fatalf("self-check report: %v", err)
	}
	text := filepath.Join(testfix.Dir(), "README.md")
	// Limits the model misses: a failed report, refused.
	if _, err := btconvert.Verify(btconvert.VerifyOptions{Model: q8, Against: base, EvalText: text, MaxPPLRatio: 1.0000001, MinTop1: 1, Record: true}); !errors.Is(err, btconvert.ErrCheckFailed) {
		t.Fatalf("impossible limits: %v", err)
	}
	if err := export(); err == nil || !strings.Contains(testfix.ErrText(err), "its recorded verification report failed; verify it again with --record once it passes, or pass --skip-verify") {
		t.Fatalf("failed report: %v", err)
	}
	// Recorded without limits: the limits of its quantization are checked (int8: ppl ratio at
	// most 1.01, top-1 at least 0.95), and the report gates export.
	rep, err := btconvert.Verify(btconvert.VerifyOptions{Model: q8, Against: base, EvalText: text, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]float64{}
	for _, c := range rep.Checks {
		limits[c.Name] = c.Limit
	}
	if limits["ppl_ratio"] != 1.01 || limits["top1_agreement"] != 0.95 {
		t.Fatalf("checks %+v", rep.Checks)
	}
	if err := export(); err != nil {
		t.Fatal(err)
	}
	// An unquantized model with a failed recorded report is not exported either.
	f32 := filepath.Join(t.TempDir(), "f32")
	if _, err := btconvert.Import(btconvert.ImportOptions{Source: testfix.Path("bt-tiny"), Output: f32}); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(testfix.Path("bt-tiny"), "reference.safetensors")
	if _, err := btconvert.Verify(btconvert.VerifyOptions{Model: f32, Reference: ref, MaxRelErr: 1e-12, Record: true}); !errors.Is(err, btconvert.ErrCheckFailed) {
		t.Fatalf("parity within 1e-12: %v", err)
	}
	_, err = btconvert.Export(btconvert.ExportOptions{Source: f32, Output: filepath.Join(t.TempDir(), "f32.btz")})
	if err == nil || !strings.Contains(testfix.ErrText(err), "its recorded verification report failed") {
		t.Fatalf("unquantized, failed report: %v", err)
	}
	if _, err = btconvert.Export(btconvert.ExportOptions{Source: f32, Output: filepath.Join(t.TempDir(), "f32.btz"), SkipVerify: true}); err != nil {
		t.Fatal(err)
	}
}

// A tokenizer beside the source, or given, travels into the folder and on into exports.
func TestTokenizerCarried(t *testing.T) {
	src := testfix.Copy(t, "pythia-tiny")
	tok := `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
 "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
 "model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2,"the":3},"unk_token":"[UNK]"}}`
	os.WriteFile(filepath.Join(src, tokenizer.Name), []byte(tok), 0o644)
	out := filepath.Join(t.TempDir(), "m")
	res, err := btconvert.Import(btconvert.ImportOptions{Source: src, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokenizer, []string{tokenizer.Name}) {
		t.Fatalf("tokenizer files %v", res.Tokenizer)
	}
	man, _, _ := modeldir.ReadManifest(out)
	if man.File(tokenizer.Name) == nil {
		t.Fatal("tokenizer.json not in the manifest")
	}
	off := filepath.Join(t.TempDir(), "off")
	if _, err := btconvert.Export(btconvert.ExportOptions{Source: out, Output: off, Format: btconvert.Official}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(off, tokenizer.Name)); string(b) != tok {
		t.Fatal("the official export lost the tokenizer")
	}
	g, err := btconvert.Generate(btconvert.GenerateOptions{Model: out, Prompts: []string{"hello the world"}, MaxNewTokens: 3, IgnoreEOS: true})
	if err != nil || len(g.Rows[0].IDs) != 3 || !slices.Equal(g.Rows[0].PromptIDs, []int32{1, 3, 2}) {
		t.Fatalf("generate with the carried tokenizer: %+v %v", g, err)
	}
}

// What import and quantize refuse before writing anything.
func TestRefusals(t *testing.T) {
	dir := testfix.Imported(t, "pythia-tiny")
	parent := filepath.Dir(dir)
	for _, c := range []struct {
		name string
		run  func() error
		want string
	}{
		{"import our folder", func() error {
			_, err := btconvert.Import(btconvert.ImportOptions{Source: dir, Output: filepath.Join(t.TempDir(), "x")})
			return err
		}, dir + ": is already a btconvert model; nothing to import (quantize, verify or export it directly, or copy it)"},
		{"force over the input", func() error {
			_, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: dir, Output: dir, Force: true, Settings: quant.Settings{Type: quant.Int8}})
			return err
		}, dir + ": is, holds or lies inside the input " + dir + "; refusing to replace it (choose another output)"},
		{"force over the input's folder", func() error {
			_, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: dir, Output: parent, Force: true, Settings: quant.Settings{Type: quant.Int8}})
			return err
		}, parent + ": is, holds or lies inside the input " + dir + "; refusing to replace it (choose another output)"},
	} {
		err := c.run()
		if err == nil || testfix.ErrText(err) != c.want {
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
	}
	if m := testfix.Open(t, dir); len(m.Tensors) == 0 {
		t.Fatal("the input is gone")
	}
}

// auto weighs a quantized model's weights as the float32 they stand for (the go backend spends a
// float32 weight's time on each), not as its packed bytes.
func TestQuantizedWeightsWeighedAsFloat(t *testing.T) {
	base := testfix.Imported(t, "bt-tiny")
	for _, typ := range []quant.Type{quant.Int8, quant.Int4, "q4_0"} {
		out := filepath.Join(t.TempDir(), string(typ))
		if _, err := btconvert.Quantize(btconvert.QuantizeOptions{Source: base, Output: out, Settings: quant.Settings{Type: typ}}); err != nil {
			t.Fatal(err)
		}
		f, q := runner.WeightsOnDisk(base), runner.WeightsOnDisk(out)
		if r := float64(q) / float64(f); r < 0.95 || r > 1.15 {
			t.Errorf("%s: weighed %d bytes against the float model's %d (%.2fx)", typ, q, f, r)
		}
	}
}
