package formats

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// imported writes a fixture as our directory.
func imported(t *testing.T, name string) string {
	dir := filepath.Join(t.TempDir(), name)
	m := mustOpen(t, filepath.Join(fixtures, name))
	if err := WriteModel(m, dir, WriteOptions{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func sameTensors(t *testing.T, a, b *Model) {
	t.Helper()
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d vs %d tensors", len(a.Tensors), len(b.Tensors))
	}
	for i := range a.Tensors {
		x, y := a.Tensors[i], b.Tensors[i]
		rx, _ := x.Raw()
		ry, _ := y.Raw()
		if x.Key() != y.Key() || x.DType != y.DType || !bytes.Equal(rx, ry) {
			t.Fatalf("%s (%s) differs from %s (%s)", x.Key(), x.DType, y.Key(), y.DType)
		}
	}
}

// import(export(M)) == M for every fixture, sharded or not.
func TestExportOfficialRoundTrip(t *testing.T) {
	for _, name := range []string{"bt-tiny", "pythia-tiny", "bt-from-pythia-tiny"} {
		for _, shard := range []int64{0, 300_000} {
			m := mustOpen(t, imported(t, name))
			out := filepath.Join(t.TempDir(), "official")
			if err := ExportOfficial(m, out, ExportOptions{ShardSize: shard, Name: name}); err != nil {
				t.Fatal(err)
			}
			back := mustOpen(t, out)
			if !strings.Contains(back.Format, map[bool]string{true: FormatOfficial, false: FormatNeoX}[m.Config.IsBlock()]) {
				t.Fatalf("%s exported as %s", name, back.Format)
			}
			if shard > 0 {
				if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
					t.Fatalf("%s: no shard index", name)
				}
			}
			sameTensors(t, m, back)
		}
	}
}

// Exporting the imported bt-tiny gives back the original checkpoint bit for bit, plus a zero
// embed_in where the original had trained-but-unused values.
func TestExportOfficialBitForBit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "o")
	if err := ExportOfficial(mustOpen(t, imported(t, "bt-tiny")), out, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := OpenSafetensors(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, _ := OpenSafetensors(filepath.Join(fixtures, "bt-tiny", "model.safetensors"))
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
		if ti.Name == unusedEmbedIn {
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

func TestBundleRoundTrip(t *testing.T) {
	dir := imported(t, "bt-tiny")
	if err := RecordReport(dir, []byte(`{"pass": true}`)); err != nil {
		t.Fatal(err)
	}
	btz := filepath.Join(t.TempDir(), "m.btz")
	if err := WriteBundle(dir, btz, false, nil); err != nil {
		t.Fatal(err)
	}
	m := mustOpen(t, btz)
	sameTensors(t, mustOpen(t, dir), m)
	rep, _, err := ReadReport(m.Path)
	if err != nil || rep == nil || !rep.Pass {
		t.Fatalf("report did not travel: %v %v", rep, err)
	}
	extracted := m.Path
	m.Close()
	if _, err := os.Stat(extracted); !os.IsNotExist(err) {
		t.Fatalf("extracted files left at %s", extracted)
	}
	// Without a report the bundle still opens (and says nothing is recorded).
	plain := imported(t, "pythia-tiny")
	btz2 := filepath.Join(t.TempDir(), "p.btz")
	if err := WriteBundle(plain, btz2, false, nil); err != nil {
		t.Fatal(err)
	}
	m2 := mustOpen(t, btz2)
	if rep, _, _ := ReadReport(m2.Path); rep != nil {
		t.Fatalf("report from nowhere")
	}
}

// rebundle writes a bundle from explicit entries (name, typeflag, body), for the bad cases.
type entry struct {
	name string
	typ  byte
	body []byte
}

func rebundle(t *testing.T, path string, entries []entry) {
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
	dir := imported(t, "bt-tiny")
	good := filepath.Join(t.TempDir(), "good.btz")
	if err := WriteBundle(dir, good, false, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	entries := readEntries(t, good)
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
		{"truncated", func(p string) { os.WriteFile(p, raw[:len(raw)*2/3], 0o644) }, ": truncated"},
		{"wrong manifest hash", func(p string) {
			var man Manifest
			json.Unmarshal(entries[0].body, &man)
			man.Files[1].SHA256 = strings.Repeat("0", 64)
			mb, _ := json.Marshal(man)
			es := append([]entry{{ManifestName, tar.TypeReg, mb}}, entries[1:]...)
			rebundle(t, p, es)
		}, `: entry "block_decoder.safetensors" does not match its sha256 in the manifest`},
		{"path traversal", func(p string) {
			es := append(append([]entry{}, entries...), entry{"../evil", tar.TypeReg, []byte("x")})
			rebundle(t, p, es)
		}, `: entry "../evil" has an unsafe path`},
		{"absolute path", func(p string) {
			rebundle(t, p, append([]entry{entries[0]}, entry{"/tmp/evil", tar.TypeReg, []byte("x")}))
		}, `: entry "/tmp/evil" has an unsafe path`},
		{"symlink", func(p string) {
			rebundle(t, p, append([]entry{entries[0]}, entry{"config.json", tar.TypeSymlink, nil}))
		}, `: entry "config.json" is not a regular file (links and folders are refused)`},
		{"missing file", func(p string) { rebundle(t, p, entries[:len(entries)-1]) }, `: file "config.json" listed in the manifest is missing`},
		{"not in manifest", func(p string) {
			rebundle(t, p, append(append([]entry{}, entries...), entry{"extra.bin", tar.TypeReg, []byte("x")}))
		}, `: entry "extra.bin" is not in the manifest`},
		{"manifest not first", func(p string) { rebundle(t, p, append(append([]entry{}, entries[1:]...), entries[0])) },
			`: first entry is "embedder.safetensors", want manifest.json`},
		{"not a bundle", func(p string) { os.WriteFile(p, []byte("hello"), 0o644) }, ": corrupt: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.btz")
			c.make(p)
			_, err := Open(p, OpenOptions{})
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
			if !IsInputError(err) {
				t.Fatal("not an InputError")
			}
		})
	}
	// Nothing extracted is left behind by the failures.
	if left, _ := filepath.Glob(filepath.Join(tmp, "btconvert-bundle-*")); len(left) > 0 {
		t.Errorf("extraction left %v", left)
	}
}
