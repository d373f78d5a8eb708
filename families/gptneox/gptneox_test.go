package gptneox_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/families/gptneox"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// open reads dir with the GPT-NeoX layout.
func open(t *testing.T, dir string, o formats.OpenOptions) (*formats.Model, error) {
	t.Helper()
	return testfix.OpenLayout(t, gptneox.Layout{}, dir, o)
}

// rename renames (or, to "", drops) tensors of the checkpoint in dir.
func rename(t *testing.T, dir string, names map[string]string) {
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		var out []safetensors.WriteTensor
		for _, x := range w {
			if to, ok := names[x.Name]; ok {
				if to == "" {
					continue
				}
				x.Name = to
			}
			out = append(out, x)
		}
		return out
	})
}

// A vanilla model's HF names are its table's, exactly: pythia-tiny's checkpoint is every spec of
// its config by Name, with its shape.
func TestNamesAreTheCheckpoint(t *testing.T) {
	cfg := testfix.Open(t, testfix.Path("pythia-tiny")).Config
	got := map[string]string{}
	for _, s := range arch.Tensors(cfg) {
		got[gptneox.Name(s.ID())] = fmt.Sprintf("F16%v", s.Shape)
	}
	if want := testfix.Header(t, filepath.Join(testfix.Path("pythia-tiny"), "model.safetensors")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("names\n%v\nwant\n%v", got, want)
	}
	for id, want := range map[arch.ID]string{
		{Component: arch.Decoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer, Param: arch.Weight}:  "gpt_neox.embed_in.weight",
		{Component: arch.Decoder, Part: arch.PartAttnQKV, Layer: 3, Param: arch.Bias}:               "gpt_neox.layers.3.attention.query_key_value.bias",
		{Component: arch.Decoder, Part: arch.PartFinalNorm, Layer: arch.NoLayer, Param: arch.Bias}:  "gpt_neox.final_layer_norm.bias",
		{Component: arch.Decoder, Part: arch.PartEmbedOut, Layer: arch.NoLayer, Param: arch.Weight}: "embed_out.weight",
	} {
		if got := gptneox.Name(id); got != want {
			t.Errorf("%v: %s, want %s", id, got, want)
		}
	}
}

// The output head is embed_out.weight, or lm_head.weight, or (neither present) the token
// embeddings, with a note; both present is refused.
func TestOutputHead(t *testing.T) {
	head := func(m *formats.Model) string { return m.Tensor(arch.Decoder, "embed_out.weight").SrcName }
	m, err := open(t, testfix.Path("pythia-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if head(m) != "embed_out.weight" || len(m.Tensors) != 52 {
		t.Fatalf("head %s, %d tensors", head(m), len(m.Tensors))
	}
	want, _ := m.Tensor(arch.Decoder, "embed_out.weight").Raw()

	dir := testfix.Copy(t, "pythia-tiny")
	rename(t, dir, map[string]string{"embed_out.weight": "lm_head.weight"})
	m, err = open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.Tensor(arch.Decoder, "embed_out.weight").Raw()
	if head(m) != "lm_head.weight" || !bytes.Equal(got, want) {
		t.Fatalf("head %s", head(m))
	}

	dir = testfix.Copy(t, "pythia-tiny")
	rename(t, dir, map[string]string{"embed_out.weight": ""})
	m, err = open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if head(m) != "gpt_neox.embed_in.weight" || !slices.Contains(m.Notes, "no embed_out.weight / lm_head.weight: output head tied to gpt_neox.embed_in.weight") {
		t.Fatalf("head %s, notes %q", head(m), m.Notes)
	}

	dir = testfix.Copy(t, "pythia-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		for _, x := range w {
			if x.Name == "embed_out.weight" {
				x.Name = "lm_head.weight"
				return append(w, x)
			}
		}
		return w
	})
	_, err = open(t, dir, formats.OpenOptions{})
	if want := dir + `/model.safetensors: tensor "lm_head.weight": second output head (both embed_out.weight and lm_head.weight present)`; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// Old HF buffers are ignored with a note each; any other tensor no spec names is refused, together
// with the missing ones.
func TestCheckpointTensors(t *testing.T) {
	dir := testfix.Copy(t, "pythia-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		for _, name := range []string{"gpt_neox.layers.2.attention.rotary_emb.inv_freq", "gpt_neox.layers.0.attention.bias", "gpt_neox.layers.0.attention.masked_bias"} {
			w = append(w, safetensors.WriteTensor{Name: name, DType: safetensors.F32, Shape: []int{1}, Data: func() ([]byte, error) { return make([]byte, 4), nil }})
		}
		return w
	})
	m, err := open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ignored buffer gpt_neox.layers.0.attention.bias", "ignored buffer gpt_neox.layers.0.attention.masked_bias",
		"ignored buffer gpt_neox.layers.2.attention.rotary_emb.inv_freq"}; !slices.Equal(m.Notes[len(m.Notes)-3:], want) {
		t.Fatalf("notes %q", m.Notes)
	}
	if official.Buffer("gpt_neox.layers.0.attention.dense.bias") {
		t.Fatal("a weight taken for a buffer")
	}

	dir = testfix.Copy(t, "pythia-tiny")
	rename(t, dir, map[string]string{"gpt_neox.layers.3.attention.dense.weight": "gpt_neox.layers.4.attention.dense.weight", "gpt_neox.layers.0.mlp.dense_h_to_4h.bias": ""})
	_, err = open(t, dir, formats.OpenOptions{})
	if want := dir + `: tensor "gpt_neox.layers.0.mlp.dense_h_to_4h.bias": missing from the checkpoint (config.json asks for it); 1 more missing: "gpt_neox.layers.3.attention.dense.weight"; 1 unexpected: "gpt_neox.layers.4.attention.dense.weight"`; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	dir = testfix.Copy(t, "pythia-tiny")
	rename(t, dir, map[string]string{"gpt_neox.final_layer_norm.bias": "final_layer_norm.bias"})
	_, err = open(t, dir, formats.OpenOptions{})
	if want := dir + `: tensor "gpt_neox.final_layer_norm.bias": missing from the checkpoint (config.json asks for it); 1 unexpected: "final_layer_norm.bias"`; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// The options that do not apply to a vanilla model are refused.
func TestOptions(t *testing.T) {
	dir := testfix.Path("pythia-tiny")
	for _, c := range []struct {
		o    formats.OpenOptions
		want string
	}{
		{formats.OpenOptions{Decoding: arch.Prefix}, ": holds a vanilla GPT-NeoX model; --decoding applies to Block Transformer checkpoints"},
		{formats.OpenOptions{Heads: arch.Heads{4, 4}}, ": holds a vanilla GPT-NeoX model: --heads 4,4 gives more than its one decoder"},
		{formats.OpenOptions{Heads: arch.Heads{8}}, "/config.json: num_attention_heads 4 from config.json; --heads 8 disagrees"},
	} {
		_, err := open(t, dir, c.o)
		if err == nil || testfix.ErrText(err) != dir+c.want {
			t.Errorf("%+v: got %v\nwant %s%s", c.o, err, dir, c.want)
		}
	}
}

// Without config.json the shapes give everything but the heads.
func TestShapes(t *testing.T) {
	c, err := safetensors.OpenCheckpoint(testfix.Path("pythia-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := official.StackShapes(c, "gpt_neox.", "gpt_neox.embed_in.weight")
	want := map[string]int{arch.KeyLayers: 4, arch.KeyHidden: 128, arch.KeyIntermediate: 512, arch.KeyVocab: 256}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	dir := testfix.Copy(t, "pythia-tiny")
	os.Remove(filepath.Join(dir, "config.json"))
	m, err := open(t, dir, formats.OpenOptions{Heads: arch.Heads{4}})
	if err != nil {
		t.Fatal(err)
	}
	if want := testfix.Open(t, testfix.Path("pythia-tiny")).Config.Describe(); m.Config.Describe() != want {
		t.Fatalf("%s, want %s", m.Config.Describe(), want)
	}
}

// Exporting what was read gives back the checkpoint, name for name and byte for byte, and a
// config.json that reads back as the same architecture.
func TestExportRoundTrip(t *testing.T) {
	m, err := open(t, testfix.Path("pythia-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	if err := (gptneox.Layout{}).Export(m, out, formats.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	testfix.SameCheckpoint(t, filepath.Join(testfix.Path("pythia-tiny"), "model.safetensors"), filepath.Join(out, "model.safetensors"))
	back, err := open(t, out, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Config.Describe() != m.Config.Describe() {
		t.Fatalf("read back as %s, want %s", back.Config.Describe(), m.Config.Describe())
	}
	m.Tensors = m.Tensors[:len(m.Tensors)-1]
	err = gptneox.Layout{}.Export(m, t.TempDir(), formats.ExportOptions{})
	if want := testfix.Path("pythia-tiny") + ": 51 tensors, its config has 52"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestBaseModelTable(t *testing.T) {
	for name, want := range map[string][5]int{ // hidden, layers, heads, FFN, vocab
		"EleutherAI/pythia-14m":          {128, 6, 4, 512, 50304},
		"EleutherAI/pythia-160m-deduped": {768, 12, 12, 3072, 50304},
		"EleutherAI/pythia-1.4b":         {2048, 24, 16, 8192, 50304},
		"EleutherAI/pythia-12b-deduped":  {5120, 36, 40, 20480, 50688},
	} {
		c, ok := gptneox.BaseModel(name)
		if got := [5]int{c.Hidden, c.Layers, c.Heads, c.Intermediate, c.Vocab}; !ok || got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if _, ok := gptneox.BaseModel("EleutherAI/pythia-3b"); ok {
		t.Error("unknown size accepted")
	}
	if n := len(gptneox.BaseModelNames()); n != 20 {
		t.Errorf("%d base models, want 10 sizes x 2", n)
	}
}
