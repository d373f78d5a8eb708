package modeldir_test

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

func TestWriteRefusesExistingAndConverts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	m := testfix.Open(t, testfix.Path("pythia-tiny"))
	if err := modeldir.Write(m, dir, modeldir.WriteOptions{DType: safetensors.F32}); err != nil {
		t.Fatal(err)
	}
	err := modeldir.Write(m, dir, modeldir.WriteOptions{})
	if err == nil || testfix.ErrText(err) != dir+": already exists (use --force to replace it)" {
		t.Fatalf("got %v", err)
	}
	if err := modeldir.Write(m, dir, modeldir.WriteOptions{Force: true, DType: safetensors.BF16}); err != nil {
		t.Fatal(err)
	}
	out := testfix.Open(t, dir)
	for i, tt := range out.Tensors {
		if tt.DType != safetensors.BF16 {
			t.Fatalf("%s is %s", tt.Key(), tt.DType)
		}
		a, _ := tt.Float32()
		b, _ := m.Tensors[i].Float32()
		for j := range a {
			if d := math.Abs(float64(a[j] - b[j])); d > 0.01*math.Abs(float64(b[j]))+1e-30 {
				t.Fatalf("%s[%d]: %v vs %v", tt.Key(), j, a[j], b[j])
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// A changed byte of the same size passes the size check at open, and fails the read that
// completes its file (tensors read in order: one pass, no second read); Finish catches a file
// whose tensors were not all read. Files beside the tensors are read only when listed and intact.
func TestReadsCheckHashes(t *testing.T) {
	dir := testfix.Imported(t, "pythia-tiny")
	p := filepath.Join(dir, modeldir.ComponentFile("decoder"))
	b, _ := os.ReadFile(p)
	b[len(b)-3] ^= 1
	os.WriteFile(p, b, 0o644)
	want := p + ": does not match its sha256 in manifest.json (changed after it was written)"
	m, err := modeldir.Open(dir)
	if err != nil {
		t.Fatalf("open refused a same-size change before reading it: %v", err)
	}
	var readErr error
	for _, tt := range m.Tensors {
		if _, err := tt.Raw(); err != nil {
			readErr = err
			break
		}
	}
	if readErr == nil || readErr.Error() != want {
		t.Fatalf("reading every tensor: got %v\nwant %s", readErr, want)
	}
	m.Close()
	m, _ = modeldir.Open(dir)
	m.Tensors[0].Raw()
	if err := m.Finish(); err == nil || err.Error() != want {
		t.Fatalf("Finish: got %v\nwant %s", err, want)
	}
	m.Close()
	// config.json is checked at open.
	cfg := filepath.Join(dir, "config.json")
	c, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(append([]byte(nil), c[:len(c)-1]...), ' ', '\n'), 0o644)
	if _, err := modeldir.Open(dir); err == nil || err.Error() != cfg+": truncated or changed: "+strconv.Itoa(len(c)+1)+" bytes, the manifest says "+strconv.Itoa(len(c)) {
		t.Fatalf("config.json: %v", err)
	}
	os.WriteFile(cfg, c, 0o644)
	// A file the model has none of reads as nothing.
	m, err = modeldir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := m.File("merges.txt"); b != nil || err != nil {
		t.Fatalf("absent file: %v %v", b, err)
	}
	m.Close()
	// An unlisted tokenizer dropped into the folder is refused at open, whether or not the
	// command would read it.
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644)
	if _, err := modeldir.Open(dir); err == nil || err.Error() != filepath.Join(dir, "tokenizer.json")+": not listed in manifest.json (added after the folder was written?); not used" {
		t.Fatalf("unlisted tokenizer: %v", err)
	}
}

// Quantization records are validated whole when the folder is opened.
func TestQuantizationRecordsValidated(t *testing.T) {
	base := testfix.Imported(t, "pythia-tiny")
	key := "decoder/layers.0.attention.dense.weight"
	for _, c := range []struct {
		name string
		q    map[string]any
		want string
	}{
		{"group size 0", map[string]any{"type": "int4", "group_size": 0, "symmetric": false, "scale_dtype": "F32", "rows": 128, "cols": 128, "padded_cols": 128},
			`quantization["` + key + `"]: group_size 0 must be at least 2`},
		{"unknown type", map[string]any{"type": "int2", "symmetric": true, "scale_dtype": "F32", "rows": 128, "cols": 128},
			`quantization["` + key + `"]: type "int2" is not int8, int4, q8_0, q4_0, q4_1, q4_k or q6_k`},
		{"scale dtype", map[string]any{"type": "int8", "symmetric": true, "scale_dtype": "F8", "rows": 128, "cols": 128},
			`quantization["` + key + `"]: scale_dtype "F8" is not F32 or F16`},
		{"no such tensor", map[string]any{"type": "int8", "symmetric": true, "scale_dtype": "F32", "rows": 128, "cols": 128},
			`quantization["decoder/layers.9.attention.dense.weight"]: no such tensor in this architecture`},
		{"q8_0 with f32 scales", map[string]any{"type": "q8_0", "group_size": 32, "symmetric": true, "scale_dtype": "F32", "rows": 128, "cols": 128, "padded_cols": 128},
			`quantization["` + key + `"]: q8_0 stores its scales as F16, not F32`},
		{"q4_1 symmetric", map[string]any{"type": "q4_1", "group_size": 32, "symmetric": true, "scale_dtype": "F16", "rows": 128, "cols": 128, "padded_cols": 128},
			`quantization["` + key + `"]: q4_1 is asymmetric only`},
		{"q4_0 in groups of 64", map[string]any{"type": "q4_0", "group_size": 64, "symmetric": true, "scale_dtype": "F16", "rows": 128, "cols": 128, "padded_cols": 128},
			`quantization["` + key + `"]: q4_0 is llama.cpp's blocks of 32 weights, not group_size 64`},
		{"a LayerNorm", map[string]any{"type": "int8", "symmetric": true, "scale_dtype": "F32", "rows": 128, "cols": 1},
			`quantization["decoder/final_layer_norm.weight"]: a LayerNorm or bias is never quantized`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			copyDir(t, base, dir)
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			json.Unmarshal(b, &cfg)
			k := key
			switch c.name {
			case "no such tensor":
				k = "decoder/layers.9.attention.dense.weight"
			case "a LayerNorm":
				k = "decoder/final_layer_norm.weight"
			}
			cfg["quantization"] = map[string]any{k: c.q}
			b, _ = json.Marshal(cfg)
			os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
			testfix.Relist(t, dir, "config.json")
			_, err := modeldir.Open(dir)
			if want := filepath.Join(dir, "config.json") + ": " + c.want; err == nil || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	os.MkdirAll(to, 0o755)
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(from, e.Name()))
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o644)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	dir := testfix.Imported(t, "bt-tiny")
	if err := modeldir.RecordReport(dir, []byte(`{"pass": true, "recorded_by": "test"}`)); err != nil {
		t.Fatal(err)
	}
	btz := filepath.Join(t.TempDir(), "m.btz")
	if _, err := modeldir.WriteBundle(dir, btz, false, nil); err != nil {
		t.Fatal(err)
	}
	m := testfix.Open(t, btz)
	testfix.SameTensors(t, testfix.Open(t, dir), m)
	rep, _, err := modeldir.ReadReport(m.Path)
	if err != nil || rep == nil || !rep.Pass {
		t.Fatalf("report did not travel: %v %v", rep, err)
	}
	extracted := m.Path
	m.Close()
	if _, err := os.Stat(extracted); !os.IsNotExist(err) {
		t.Fatalf("extracted files left at %s", extracted)
	}
	// Without a report the bundle still opens (and says nothing is recorded).
	plain := testfix.Imported(t, "pythia-tiny")
	btz2 := filepath.Join(t.TempDir(), "p.btz")
	if _, err := modeldir.WriteBundle(plain, btz2, false, nil); err != nil {
		t.Fatal(err)
	}
	m2 := testfix.Open(t, btz2)
	if rep, _, _ := modeldir.ReadReport(m2.Path); rep != nil {
		t.Fatalf("report from nowhere")
	}
	// --force replaces an existing bundle.
	if _, err := modeldir.WriteBundle(plain, btz, true, nil); err != nil {
		t.Fatalf("replacing a bundle: %v", err)
	}
}

// A report.json the manifest does not list (written by hand) is refused.
func TestReportMustBeRecorded(t *testing.T) {
	dir := testfix.Imported(t, "pythia-tiny")
	p := filepath.Join(dir, modeldir.ReportName)
	os.WriteFile(p, []byte(`{"pass": true}`), 0o644)
	_, _, err := modeldir.ReadReport(dir)
	if want := p + ": is not listed in the manifest (only a verification run that records its report writes one)"; err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
	if err := modeldir.RecordReport(dir, []byte(`{"pass": true}`)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte(`{"pass": true} `), 0o644) // edited afterwards
	if _, _, err := modeldir.ReadReport(dir); err == nil || !strings.Contains(err.Error(), "truncated or changed") {
		t.Fatalf("an edited report passed: %v", err)
	}
}

// rebundle writes a bundle from explicit entries (name, typeflag, body), for the bad cases.
type entry struct {
	name string
	typ  byte
	body []byte
}

func rebundle(t *testing.T, path string, entries []entry, after []byte) {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeSymlink {
			hdr.Linkname, hdr.Size = "/etc/passwd", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	zw.Write(after)
	zw.Close()
	os.WriteFile(path, buf.Bytes(), 0o644)
}

// readEntries lists a bundle's entries.
func readEntries(t *testing.T, path string) []entry {
	f, _ := os.Open(path)
	defer f.Close()
	zr, _ := zstd.NewReader(f)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{h.Name, h.Typeflag, b})
	}
}

func TestBundleRejectsCorruption(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // extraction goes here, so we can see that nothing is left
	dir := testfix.Imported(t, "bt-tiny")
	good := filepath.Join(t.TempDir(), "good.btz")
	if _, err := modeldir.WriteBundle(dir, good, false, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	entries := readEntries(t, good)
	manifest := func(edit func(*modeldir.Manifest)) entry {
		var man modeldir.Manifest
		json.Unmarshal(entries[0].body, &man)
		edit(&man)
		mb, _ := json.Marshal(man)
		return entry{modeldir.ManifestName, tar.TypeReg, mb}
	}
	cases := []struct {
		name string
		make func(p string)
		want string
	}{
		{"flipped byte", func(p string) {
			b := bytes.Clone(raw)
			b[len(b)/2] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}, ": "},
		{"truncated", func(p string) { os.WriteFile(p, raw[:len(raw)*2/3], 0o644) }, ": not a btconvert bundle: truncated: the zstd frame ends in the middle of a block"},
		{"sizes that overflow", func(p string) {
			m := manifest(func(man *modeldir.Manifest) {
				man.Files = nil
				for i := 0; i < 8193; i++ {
					man.Files = append(man.Files, modeldir.ManifestFile{Name: fmt.Sprintf("f%d", i), Size: 1 << 50})
				}
			})
			rebundle(t, p, []entry{m}, nil)
		}, ": manifest lists 8193 files; a model folder has at most 256"},
		{"sizes past the disk", func(p string) {
			m := manifest(func(man *modeldir.Manifest) {
				for i := range man.Files {
					if strings.HasSuffix(man.Files[i].Name, ".safetensors") {
						man.Files[i].Size = 1 << 50
					}
				}
			})
			rebundle(t, p, append([]entry{m}, entries[1:]...), nil)
		}, ": extracting needs "},
		{"a small file past its bound", func(p string) {
			m := manifest(func(man *modeldir.Manifest) {
				for i := range man.Files {
					if man.Files[i].Name == "config.json" {
						man.Files[i].Size = 200 << 20
					}
				}
			})
			rebundle(t, p, append([]entry{m}, entries[1:]...), nil)
		}, `: manifest gives "config.json" 200 MiB, more than the 64 MiB a model folder's small file may have`},
		{"wrong manifest hash", func(p string) {
			m := manifest(func(man *modeldir.Manifest) { man.Files[1].SHA256 = strings.Repeat("0", 64) })
			rebundle(t, p, append([]entry{m}, entries[1:]...), nil)
		}, `: entry "block_decoder.safetensors" does not match its sha256 in the manifest`},
		{"manifest lists itself", func(p string) {
			m := manifest(func(man *modeldir.Manifest) {
				man.Files = append(man.Files, modeldir.ManifestFile{Name: modeldir.ManifestName, Size: 3, SHA256: strings.Repeat("0", 64)})
			})
			rebundle(t, p, append([]entry{m}, entries[1:]...), nil)
		}, `: manifest lists itself`},
		{"bomb", func(p string) {
			m := manifest(func(man *modeldir.Manifest) { man.Files[0].Size = 1 << 45 })
			rebundle(t, p, append([]entry{m}, entries[1:]...), nil)
		}, `: extracting needs`},
		{"path traversal", func(p string) {
			rebundle(t, p, append(append([]entry{}, entries...), entry{"../evil", tar.TypeReg, []byte("x")}), nil)
		}, `: entry "../evil" has an unsafe path`},
		{"absolute path", func(p string) {
			rebundle(t, p, append([]entry{entries[0]}, entry{"/tmp/evil", tar.TypeReg, []byte("x")}), nil)
		}, `: entry "/tmp/evil" has an unsafe path`},
		{"symlink", func(p string) {
			rebundle(t, p, append([]entry{entries[0]}, entry{"config.json", tar.TypeSymlink, nil}), nil)
		}, `: entry "config.json" is not a regular file (links and folders are refused)`},
		{"missing file", func(p string) { rebundle(t, p, entries[:len(entries)-1], nil) }, `: file "config.json" listed in the manifest is missing`},
		{"not in manifest", func(p string) {
			rebundle(t, p, append(append([]entry{}, entries...), entry{"extra.bin", tar.TypeReg, []byte("x")}), nil)
		}, `: entry "extra.bin" is not in the manifest`},
		{"manifest not first", func(p string) { rebundle(t, p, append(append([]entry{}, entries[1:]...), entries[0]), nil) },
			`: first entry is "embedder.safetensors", want manifest.json`},
		{"data after the tar", func(p string) { rebundle(t, p, entries, []byte("hidden payload")) }, ": data after the end of the archive"},
		{"endless zero padding", func(p string) { rebundle(t, p, entries, make([]byte, 1<<20)) },
			": data after the end of the archive (more than 65536 bytes of padding)"},
		{"bytes after the frame", func(p string) { os.WriteFile(p, append(bytes.Clone(raw), "garbage"...), 0o644) }, ": not a btconvert bundle: 7 bytes after the zstd frame (a bundle is one zstd frame and nothing else)"},
		{"skippable frame after", func(p string) { os.WriteFile(p, append(bytes.Clone(raw), skippable(1<<20)...), 0o644) }, ": not a btconvert bundle: 1048584 bytes after the zstd frame (a bundle is one zstd frame and nothing else)"},
		{"skippable frame before", func(p string) { os.WriteFile(p, append(skippable(100), raw...), 0o644) }, ": not a btconvert bundle: it starts with a skippable zstd frame (a bundle is one zstd frame and nothing else)"},
		{"second frame", func(p string) {
			var extra bytes.Buffer
			zw, _ := zstd.NewWriter(&extra)
			zw.Write([]byte("more"))
			zw.Close()
			os.WriteFile(p, append(bytes.Clone(raw), extra.Bytes()...), 0o644)
		}, ": not a btconvert bundle: 17 bytes after the zstd frame (a bundle is one zstd frame and nothing else)"},
		{"flipped frame checksum", func(p string) {
			b := bytes.Clone(raw)
			b[len(b)-1] ^= 0xff // the frame's last 4 bytes are its checksum
			os.WriteFile(p, b, 0o644)
		}, ": corrupt"},
		{"not a bundle", func(p string) { os.WriteFile(p, []byte("hello, world"), 0o644) }, ": not a btconvert bundle: no zstd frame at the start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.btz")
			c.make(p)
			_, err := modeldir.OpenBundle(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), p+c.want) {
				t.Fatalf("got  %v\nwant %s%s", err, p, c.want)
			}
			// A flipped byte is caught by zstd's checksum or by the file's sha256.
			if c.name == "flipped byte" && !strings.Contains(err.Error(), "corrupt") && !strings.Contains(err.Error(), "does not match its sha256") {
				t.Fatalf("flipped byte: %v", err)
			}
			if c.name != "bomb" && !errs.IsInput(err) {
				t.Fatal("not an InputError")
			}
		})
	}
	// Nothing extracted is left behind by the failures.
	if left, _ := filepath.Glob(filepath.Join(tmp, "btconvert-*")); len(left) > 0 {
		t.Errorf("extraction left %v", left)
	}
}

// skippable is a zstd skippable frame of n bytes of content (decoders pass over it).
func skippable(n int) []byte {
	b := make([]byte, 8+n)
	binary.LittleEndian.PutUint32(b, 0x184D2A50)
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	return b
}

// Sizes in our config.json are bounded before anything is sized from them: a head count that would
// wrap heads x head_dim around to the width, or a billion layers.
func TestConfigSizesBounded(t *testing.T) {
	base := testfix.Imported(t, "bt-tiny")
	for name, edit := range map[string]func(c map[string]any){
		"heads that wrap": func(c map[string]any) {
			bd := c["block_decoder"].(map[string]any)
			bd["num_heads"], bd["head_dim"] = float64(1<<62+4), 32
		},
		"a billion layers": func(c map[string]any) { c["block_decoder"].(map[string]any)["num_layers"] = 1e9 },
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			copyDir(t, base, dir)
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			json.Unmarshal(b, &cfg)
			edit(cfg)
			b, _ = json.Marshal(cfg)
			os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
			testfix.Relist(t, dir, "config.json")
			_, err := modeldir.Open(dir)
			want := filepath.Join(dir, "config.json") + ": block_decoder: a size is out of range (layers at most 1024, hidden_size and head_dim 65536, num_heads 4096, intermediate_size 262144, max_position_embeddings 4194304)"
			if err == nil || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
		})
	}
}

// A program built without the family a model needs (this test binary imports none) says which:
// from our config.json, naming the file and key, and from an official YAML's class, instead of
// reading the part as absent or calling the class unknown.
func TestWithoutTheFamily(t *testing.T) {
	dir := t.TempDir()
	for key, want := range map[string]string{
		`"embedder":{"type":"concat","dim":8,"RoBERTa":{"num_layers":1}}`: "embedder.RoBERTa: this program was built without the RoBERTa family (package families/roberta)",
		`"token_decoder":{"t5":{"num_layers":1},"expansion_ratio":1}`:     "token_decoder.t5: this program was built without the T5 family (package families/t5)",
	} {
		p := filepath.Join(dir, "config.json")
		os.WriteFile(p, []byte(`{"format":"btconvert","format_version":1,"kind":"block","vocab_size":300,`+key+`}`), 0o644)
		if _, err := modeldir.ReadConfig(p); err == nil || err.Error() != p+": "+want {
			t.Errorf("got %v\nwant %s: %s", err, p, want)
		}
	}
	for name, want := range map[string]string{
		"block_ablation_b4_85_roberta_prefix": `embedder.cls "roberta": this program was built without the RoBERTa family (package families/roberta)`,
		"block_ablation_b4_85_cls_cross_attn": `embedder.cls "roberta_cls": this program was built without the RoBERTa family (package families/roberta)`,
	} {
		blk, _, err := arch.Released(name, arch.OriginYAML)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := blk.Resolve(nil, nil, arch.Provenance{}); err == nil || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", name, err, want)
		}
	}
	blk, _, _ := arch.Released("block_ablation_b4_85_lookup_prefix", arch.OriginYAML)
	blk.TokenDecoder.Cls, blk.TokenDecoder.Decoding = arch.ClassT5, string(arch.CrossAttention)
	want := `token_decoder.cls "t5": this program was built without the T5 family (package families/t5)`
	if _, _, err := blk.Resolve(nil, nil, arch.Provenance{}); err == nil || err.Error() != want {
		t.Errorf("t5: got %v\nwant %s", err, want)
	}
}
