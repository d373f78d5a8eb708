package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/errs"
)

// image builds a safetensors file image from a header string and n data bytes.
func image(header string, n int) []byte {
	b := make([]byte, 8, 8+len(header)+n)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, n)...)
}

// badCases are the malformed files the reader must reject, with the message each must give. They
// also seed the fuzz corpus.
var badCases = []struct {
	name string
	data []byte
	want string
}{
	{"empty", nil, "f.safetensors: not a safetensors file: 0 bytes, shorter than the 8-byte header length"},
	{"short", []byte{1, 2, 3}, "f.safetensors: not a safetensors file: 3 bytes, shorter than the 8-byte header length"},
	{"lfs", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), "f.safetensors: this is a git-LFS pointer, not the weights: fetch the real file (git lfs pull) and try again"},
	{"header too large", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 100_000_001); return b }(),
		"f.safetensors: header length 100000001 is over the limit of 100000000 bytes (not a safetensors file?)"},
	{"header past end", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 100); return b }(),
		"f.safetensors: truncated: header length 100 runs past the end of the file (16 bytes)"},
	{"not utf8", image("{\"\xff\":1}", 0), "f.safetensors: header is not valid UTF-8"},
	{"not json", image("{nope", 0), "f.safetensors: header is not valid JSON: invalid character 'n'"},
	{"not object", image("[1,2]", 0), "f.safetensors: header is not a JSON object"},
	{"unknown dtype", image(`{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, 4), `f.safetensors: tensor "a": unknown dtype "F33"`},
	{"fp8", image(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, 1), `f.safetensors: tensor "a": unsupported dtype F8_E4M3`},
	{"gap", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12),
		`f.safetensors: tensor "b": data offsets [8, 12) leave a gap after the previous tensor (ends at 4)`},
	{"not from zero", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		`f.safetensors: tensor "a": data offsets [4, 8) leave a gap after the previous tensor (ends at 0)`},
	{"overlap", image(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		`f.safetensors: tensor "b": data offsets [4, 8) overlap the previous tensor (ends at 8)`},
	{"duplicate", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		`f.safetensors: tensor "a": appears twice in the header`},
	{"size mismatch", image(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8),
		`f.safetensors: tensor "a": shape [3] of F32 needs 12 bytes but data offsets [0, 8) hold 8`},
	{"overflow", image(`{"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}`, 8),
		`f.safetensors: tensor "a": shape [4294967296 4294967296 16] overflows the size of a tensor`},
	{"trailing", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 6),
		"f.safetensors: 2 trailing bytes after the last tensor (data buffer is 6 bytes, tensors end at 4)"},
	{"truncated data", image(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 10),
		"f.safetensors: truncated: tensors need 16 data bytes but the file holds 10 (file is 73 bytes)"},
	{"missing fields", image(`{"a":{"dtype":"F32"}}`, 0), `f.safetensors: tensor "a": header entry needs dtype, shape and data_offsets`},
	{"bad metadata", image(`{"__metadata__":{"k":1}}`, 0), "f.safetensors: __metadata__ must be an object of strings: json: cannot unmarshal number into Go value of type string"},
}

func TestParseHeaderRejects(t *testing.T) {
	for _, c := range badCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseHeader("f.safetensors", c.data, int64(len(c.data)))
			if err == nil {
				t.Fatalf("accepted")
			}
			if err.Error() != c.want {
				t.Fatalf("message\n got: %s\nwant: %s", err, c.want)
			}
			if !errs.IsInput(err) {
				t.Fatalf("not an InputError")
			}
		})
	}
}

func TestOpenSafetensorsRejectsFiles(t *testing.T) {
	dir := t.TempDir()
	for _, c := range badCases {
		p := filepath.Join(dir, "f.safetensors")
		os.WriteFile(p, c.data, 0o644)
		_, err := Open(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("%s: error %v does not name the file", c.name, err)
		}
		if want := strings.TrimPrefix(c.want, "f.safetensors"); !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s: got %v, want suffix %q", c.name, err, want)
		}
	}
	if _, err := Open(filepath.Join(dir, "nope.safetensors")); err == nil || err.Error() != filepath.Join(dir, "nope.safetensors")+": cannot open: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	f32 := []float32{1, -2.5, 3.25, 1e-8, 65504, -0}
	raw32, _ := FromFloat32(F32, f32)
	rawBF, _ := FromFloat32(BF16, f32)
	rawF16, _ := FromFloat32(F16, f32)
	tensors := []WriteTensor{
		{Name: "z.last", DType: F32, Shape: []int{2, 3}, Data: func() ([]byte, error) { return raw32, nil }},
		{Name: "a.first", DType: BF16, Shape: []int{6}, Data: func() ([]byte, error) { return rawBF, nil }},
		{Name: "h", DType: F16, Shape: []int{3, 2}, Data: func() ([]byte, error) { return rawF16, nil }},
		{Name: "i8", DType: I8, Shape: []int{3}, Data: func() ([]byte, error) { return []byte{0xff, 1, 0x80}, nil }},
		{Name: "scalar", DType: I64, Shape: []int{}, Data: func() ([]byte, error) { return []byte{7, 0, 0, 0, 0, 0, 0, 0}, nil }},
	}
	w, err := Write(p, map[string]string{"format": "pt"}, tensors, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.SHA256) != 64 {
		t.Fatalf("sha %q", w.SHA256)
	}
	b, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(b); n%8 != 0 {
		t.Fatalf("header length %d not padded to 8", n)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Fatalf("metadata %v", f.Metadata)
	}
	var order []string
	for _, ti := range f.Tensors {
		order = append(order, ti.Name)
	}
	if !slices.Equal(order, []string{"z.last", "a.first", "h", "i8", "scalar"}) {
		t.Fatalf("order %v: the writer must keep the given order", order)
	}
	got, shape, _ := f.Float32("z.last")
	if !slices.Equal(got, f32) || !slices.Equal(shape, []int{2, 3}) {
		t.Fatalf("f32 %v %v", got, shape)
	}
	got, _, _ = f.Float32("a.first")
	if !slices.Equal(got, []float32{1, -2.5, 3.25, 1.0011717677116394e-08, 65536, 0}) {
		t.Fatalf("bf16 %v", got)
	}
	got, _, _ = f.Float32("h")
	if !slices.Equal(got, []float32{1, -2.5, 3.25, 0, 65504, 0}) {
		t.Fatalf("f16 %v", got)
	}
	ints, _, _ := f.Int64("i8")
	if !slices.Equal(ints, []int64{-1, 1, -128}) {
		t.Fatalf("i8 %v", ints)
	}
	ints, _, _ = f.Int64("scalar")
	if !slices.Equal(ints, []int64{7}) {
		t.Fatalf("scalar %v", ints)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	_, err := Write(p, nil, []WriteTensor{
		{Name: "a", DType: F32, Shape: []int{2}, Data: func() ([]byte, error) { return make([]byte, 8), nil }},
		{Name: "b", DType: F32, Shape: []int{2}, Data: func() ([]byte, error) { return make([]byte, 4), nil }},
	}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "b": 4 bytes of data for F32[2] (want 8)`) {
		t.Fatalf("err %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestBF16Rounding(t *testing.T) {
	// 1 + 2^-8 is exactly between two bf16 values: ties go to even (1.0); just above goes up.
	if got := BF16Bits(1 + 1.0/256); got != 0x3f80 {
		t.Fatalf("tie: %#x", got)
	}
	if got := BF16Bits(1 + 1.0/256 + 1.0/65536); got != 0x3f81 {
		t.Fatalf("above tie: %#x", got)
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, c := range badCases {
		f.Add(c.data)
	}
	f.Add(image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader("fuzz", data, int64(len(data)))
		if err != nil {
			if !errs.IsInput(err) {
				t.Fatalf("not an InputError: %v", err)
			}
			return
		}
		// Accepted: the tensors must tile the data buffer exactly.
		var pos int64
		for _, ti := range h.Tensors {
			if ti.Begin != pos || ti.End-ti.Begin != ti.NumElements()*int64(ti.DType.Size()) {
				t.Fatalf("accepted a bad layout: %+v", ti)
			}
			pos = ti.End
		}
		if 8+h.HeaderN+pos != int64(len(data)) {
			t.Fatalf("accepted with %d data bytes for %d file bytes", pos, len(data))
		}
	})
}

func TestShardIndexErrors(t *testing.T) {
	mk := func(t *testing.T) string {
		dir := t.TempDir()
		var wts []WriteTensor
		for _, n := range []string{"a", "b", "c"} {
			wts = append(wts, WriteTensor{Name: n, DType: F32, Shape: []int{4}, Data: func() ([]byte, error) { return make([]byte, 16), nil }})
		}
		if _, err := WriteSharded(dir, 20, nil, wts, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	setMap := func(dir string, edit func(map[string]string)) {
		p := filepath.Join(dir, IndexName)
		var idx ShardIndex
		b, _ := os.ReadFile(p)
		json.Unmarshal(b, &idx)
		edit(idx.WeightMap)
		b, _ = json.Marshal(idx)
		os.WriteFile(p, b, 0o644)
	}
	dir := mk(t)
	c, err := OpenCheckpoint(dir)
	if err != nil || len(c.Files) != 3 || !slices.Equal(c.Names, []string{"a", "b", "c"}) {
		t.Fatalf("sharded open: %v %v", err, c)
	}
	c.Close()

	dir = mk(t)
	setMap(dir, func(m map[string]string) { m["b"] = "model-00001-of-00003.safetensors" })
	_, err = OpenCheckpoint(dir)
	if want := filepath.Join(dir, IndexName) + `: tensor "b": mapped to shard model-00001-of-00003.safetensors, which does not contain it`; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	dir = mk(t)
	setMap(dir, func(m map[string]string) { delete(m, "c") })
	_, err = OpenCheckpoint(dir)
	if want := filepath.Join(dir, "model-00003-of-00003.safetensors") + `: tensor "c": not in the weight_map of ` + filepath.Join(dir, IndexName); err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	dir = mk(t)
	os.Remove(filepath.Join(dir, IndexName))
	_, err = OpenCheckpoint(dir)
	if want := dir + ": has shard model-00001-of-00003.safetensors but no model.safetensors.index.json to say which tensor is where"; err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}

	// Shards and a model.safetensors beside them: two sets of weights, and which one is the
	// model is not guessed (HF's loaders take the single file); each opens when named.
	dir = mk(t)
	single := filepath.Join(dir, "model.safetensors")
	if _, err := Write(single, nil, []WriteTensor{{Name: "x", DType: F32, Shape: []int{1}, Data: func() ([]byte, error) { return make([]byte, 4), nil }}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = OpenCheckpoint(dir)
	if want := dir + ": holds both model.safetensors and model.safetensors.index.json: give the one that is the model (" + single + " or " + filepath.Join(dir, IndexName) + ")"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	for _, p := range []string{single, filepath.Join(dir, IndexName)} {
		c, err := OpenCheckpoint(p)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
