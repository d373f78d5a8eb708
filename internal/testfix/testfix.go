// Package testfix is what the tests of every package share: the bundled fixtures (paths, opened,
// copied, rewritten, imported), their PyTorch reference outputs, a pure-Go backend and a few
// comparisons.
package testfix

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the "go" backend

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/digest"
)

// Names are the fixtures of the main architectures with a PyTorch reference (lookup embedders,
// GPT-NeoX decoders).
var Names = []string{"bt-tiny", "pythia-tiny", "bt-from-pythia-tiny"}

// Ablations are the fixtures of the official ablation configs, with a PyTorch reference: RoBERTa
// embedders (roberta, roberta_cls), and prefix, summation and T5 cross-attention decoding
// (fixtures/tools/ABLATION_NOTES.md).
var Ablations = []string{"bt-roberta-prefix-tiny", "bt-cls-sum-tiny", "bt-cls-cross-attn-tiny"}

// Referenced are every fixture with a reference: Names, then Ablations.
func Referenced() []string { return append(append([]string(nil), Names...), Ablations...) }

// GPL3 and GPL2 are texts every Debian machine has: the fixtures' perplexities are measured on
// GPL-3; calibration uses GPL-2.
const (
	GPL3 = "/usr/share/common-licenses/GPL-3"
	GPL2 = "/usr/share/common-licenses/GPL-2"
)

// Dir is the fixtures folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "fixtures")
}

// Path is a fixture's folder.
func Path(name string) string { return filepath.Join(Dir(), name) }

// Open opens path with source.Open, closed when the test ends.
func Open(t testing.TB, path string) *formats.Model {
	t.Helper()
	m, err := source.Open(path, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// OpenLayout opens the checkpoint in dir with one layout (not source.Open's detection); the model
// closes when the test ends. An error of the layout's is returned, not failed on.
func OpenLayout(t testing.TB, l formats.Layout, dir string, o formats.OpenOptions) (*formats.Model, error) {
	t.Helper()
	c, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l.Open(c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { m.Close() })
	return m, nil
}

// Header is a safetensors file's tensors: name -> "DTYPE[shape]".
func Header(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	for _, ti := range f.Tensors {
		out[ti.Name] = fmt.Sprintf("%s%v", ti.DType, ti.Shape)
	}
	return out
}

// SameCheckpoint checks that the safetensors file dst holds the tensors of src, bit for bit, with
// the same dtypes and shapes; the tensors named in zeroed are all zeros in dst instead.
func SameCheckpoint(t testing.TB, src, dst string, zeroed ...string) {
	t.Helper()
	if a, b := Header(t, src), Header(t, dst); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%s holds\n%v\nwant\n%v", dst, b, a)
	}
	a, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := safetensors.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, ti := range a.Tensors {
		x, err := a.Raw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		y, err := b.Raw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(zeroed, ti.Name) {
			x = make([]byte, len(x))
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s: %s differs", dst, ti.Name)
		}
	}
}

// SetJSON sets key to value in the JSON object of file.
func SetJSON(t testing.TB, file, key string, value any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = value
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Copy copies a fixture's files into a temp folder so a test can break them.
func Copy(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	ents, _ := os.ReadDir(Path(name))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(Path(name), e.Name()))
		os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
	}
	return dir
}

// Rewrite writes dir/model.safetensors again with edit applied to its tensor list.
func Rewrite(t testing.TB, dir string, edit func([]safetensors.WriteTensor) []safetensors.WriteTensor) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var wts []safetensors.WriteTensor
	for _, ti := range f.Tensors {
		raw, _ := f.Raw(ti.Name)
		wts = append(wts, safetensors.WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: func() ([]byte, error) { return raw, nil }})
	}
	f.Close()
	if _, err := safetensors.Write(filepath.Join(dir, "model.safetensors"), nil, edit(wts), nil); err != nil {
		t.Fatal(err)
	}
}

// Imported writes a fixture as our model folder and returns its path.
func Imported(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := modeldir.Write(Open(t, Path(name)), dir, modeldir.WriteOptions{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Export writes m in its source layout (source.ExportLayout) into a new folder and returns it.
func Export(t testing.TB, m *formats.Model, o formats.ExportOptions) string {
	t.Helper()
	if source.ExportLayout(m.Config) == nil {
		t.Fatalf("no layout holds %s", m.Config.Describe())
	}
	dir := filepath.Join(t.TempDir(), "exported")
	os.Mkdir(dir, 0o755)
	if err := source.ExportLayout(m.Config).Export(m, dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

// SameTensors fails unless a and b hold the same tensors, bit for bit.
func SameTensors(t testing.TB, a, b *formats.Model) {
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

// Reference is a fixture's reference.safetensors.
type Reference struct {
	IDs          []int32
	B, T         int
	Logits       []float32
	LogitsShape  []int
	Prompts      [][]int32
	Greedy       [][]int32
	ReferencePPL float64
}

// LoadReference reads a fixture's reference outputs.
func LoadReference(t testing.TB, name string) *Reference {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(Path(name), "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &Reference{}
	ids, shape, _ := f.Int64("input_ids")
	r.B, r.T = shape[0], shape[1]
	for _, v := range ids {
		r.IDs = append(r.IDs, int32(v))
	}
	r.Logits, r.LogitsShape, _ = f.Float32("logits")
	rows := func(name string) [][]int32 {
		v, s, _ := f.Int64(name)
		out := make([][]int32, s[0])
		for i := range out {
			for _, x := range v[i*s[1] : (i+1)*s[1]] {
				out[i] = append(out[i], int32(x))
			}
		}
		return out
	}
	r.Prompts, r.Greedy = rows("prompt_ids"), rows("greedy_ids")
	return r
}

var goBackend compute.Backend

// Backend is the pure-Go backend, one for the test binary (ops run one at a time: see
// backend.SequentialOps).
func Backend(t testing.TB) compute.Backend {
	if goBackend == nil {
		b, err := backend.New("go")
		if err != nil {
			t.Fatal(err)
		}
		goBackend = b
	}
	return goBackend
}

// XLAInstall is how to install the PJRT CPU plugin the XLA tests need.
const XLAInstall = "scripts/install-xla-cpu.sh"

var xlaBackend compute.Backend

// XLA is GoMLX's XLA backend on the PJRT CPU plugin, one for the test binary. Where the plugin is
// not installed the test is skipped with one line saying how to install it; under CI=true (the
// project's CI installs it) it fails instead, so a green CI means XLA ran.
func XLA(t testing.TB) compute.Backend {
	t.Helper()
	if xlaBackend != nil {
		return xlaBackend
	}
	if _, ok := backend.FindPlugins(backend.PluginDirs())["cpu"]; !ok {
		msg := "the XLA tests need the PJRT CPU plugin: run " + XLAInstall
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: XLA must run)")
		}
		t.Skip(msg)
	}
	b, err := backend.New("xla:cpu")
	if err != nil {
		t.Fatal(err)
	}
	xlaBackend = b
	return b
}

// EachBackend runs f as a subtest on each backend the parity tests run on: "go", and "xla:cpu"
// (skipped without the plugin, failed under CI=true; see XLA).
func EachBackend(t *testing.T, f func(t *testing.T, b compute.Backend)) {
	t.Run("go", func(t *testing.T) { f(t, Backend(t)) })
	t.Run("xla:cpu", func(t *testing.T) { f(t, XLA(t)) })
}

// ByteIDs are the byte tokens of s (the fixtures' vocabulary).
func ByteIDs(s string) []int32 {
	out := make([]int32, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = int32(s[i])
	}
	return out
}

// Text returns a file's bytes as tokens, skipping the test if the file is not on this machine.
func Text(t testing.TB, path string) []int32 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%s not on this machine", path)
	}
	return ByteIDs(string(b))
}

// RelL2 is ||a - b|| / ||b||.
func RelL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// ErrText is the text of an error with its option names spelled as flags (GroupSize -> --group-size), the way
// the command line prints them.
func ErrText(err error) string {
	return errs.Render(err, func(field string) string {
		var b strings.Builder
		b.WriteString("--")
		for i, r := range field {
			if unicode.IsUpper(r) {
				if i > 0 && !unicode.IsUpper(rune(field[i-1])) {
					b.WriteByte('-')
				}
				r = unicode.ToLower(r)
			}
			b.WriteRune(r)
		}
		return b.String()
	})
}

// SparseCheckpoint writes a zero-filled bf16 checkpoint of a model of config cfg into dir in its
// source layout (official Block Transformer, or HF GPT-NeoX for a vanilla model), without
// writing the zeros: the data is a hole in a sparse file, so a checkpoint of a billion weights
// costs nothing to make. Only the shapes matter to what reads it.
func SparseCheckpoint(t testing.TB, dir string, cfg *arch.Config) {
	t.Helper()
	type entry struct {
		name  string
		shape []int
	}
	var ents []entry
	if cfg.IsBlock() {
		for _, e := range official.Table(cfg) {
			ents = append(ents, entry{e.Name, e.Shape})
		}
	} else {
		for _, s := range arch.Tensors(cfg) {
			ents = append(ents, entry{hfNeoXName(s.ID()), s.Shape})
		}
	}
	var b strings.Builder
	b.WriteString(`{"__metadata__":{"format":"pt"}`)
	var off int64
	for _, e := range ents {
		n := int64(2)
		for _, d := range e.shape {
			n *= int64(d)
		}
		fmt.Fprintf(&b, `,%q:{"dtype":"BF16","shape":%s,"data_offsets":[%d,%d]}`, e.name, strings.ReplaceAll(fmt.Sprint(e.shape), " ", ","), off, off+n)
		off += n
	}
	b.WriteString("}")
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(b.Len()))
	if _, err := f.Write(append(n[:], b.String()...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(8+b.Len()) + off); err != nil {
		t.Fatal(err)
	}
}

// Relist updates a file's entry in a model folder's manifest after a test changed the file on
// purpose (as an attacker who rewrites the manifest would), so that what is checked next is the
// file's content, not its hash.
func Relist(t testing.TB, dir, name string) {
	t.Helper()
	man, _, err := modeldir.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, name))
	sum := digest.Sum256(b)
	f := man.File(name)
	if f == nil {
		man.Files = append(man.Files, modeldir.ManifestFile{Name: name})
		f = &man.Files[len(man.Files)-1]
	}
	f.Size, f.SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
	js, _ := json.Marshal(man)
	os.WriteFile(filepath.Join(dir, modeldir.ManifestName), js, 0o644)
}

// hfNeoXName is the name of a vanilla GPT-NeoX tensor in an HF folder (families/gptneox's Name:
// this package cannot import the family, whose packages its users' tests build on).
func hfNeoXName(id arch.ID) string {
	if id.Part == arch.PartEmbedOut {
		return "embed_out.weight"
	}
	return "gpt_neox." + id.Name()
}
