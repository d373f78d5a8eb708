package official_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

const unusedName = "block_decoder.gpt_neox.embed_in.weight"

// archOnly is the config without its provenance (origins, base model names).
func archOnly(c *arch.Config) *arch.Config {
	a := *c
	a.Source, a.Origins = nil, nil
	return &a
}

// open reads dir with the official layout.
// openWithFile opens a fixture with this layout and its checkpoint file as stored, both closed
// when the test ends.
func openWithFile(t *testing.T, name string) (*formats.Model, *safetensors.File) {
	t.Helper()
	m, err := open(t, testfix.Path(name), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(testfix.Path(name), "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return m, f
}

func open(t *testing.T, dir string, o formats.OpenOptions) (*formats.Model, error) {
	t.Helper()
	return testfix.OpenLayout(t, official.Layout{}, dir, o)
}

// The layout's table of a fixture's config is the fixture's checkpoint, name for name and shape for
// shape, the unused embed_in included (and first in the block decoder); every other entry holds
// the spec its identity names.
func TestTableIsTheCheckpoint(t *testing.T) {
	for _, name := range append([]string{"bt-tiny", "bt-from-pythia-tiny"}, testfix.Ablations...) {
		t.Run(name, func(t *testing.T) {
			cfg := testfix.Open(t, testfix.Path(name)).Config
			want := testfix.Header(t, filepath.Join(testfix.Path(name), "model.safetensors"))
			tab := official.Table(cfg)
			got := map[string]string{}
			var unused []int
			var tied []string
			for i, e := range tab {
				got[e.Name] = fmt.Sprintf("F32%v", e.Shape)
				switch {
				case e.Spec == nil:
					unused = append(unused, i)
				case e.Tied:
					// A T5 token table's other names, right after it.
					tied = append(tied, e.Name)
					if tab[i-len(tied)].Name != "token_decoder.shared.weight" || e.Spec.Key() != "token_decoder/embed_in.weight" {
						t.Errorf("tied entry %s after %s holds %s", e.Name, tab[i-len(tied)].Name, e.Spec.Key())
					}
				case e.Spec.ID() != e.ID || e.Name != official.Name(cfg, e.ID):
					t.Errorf("entry %s holds %s (%v)", e.Name, e.Spec.Key(), e.ID)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("table\n%v\nwant\n%v", got, want)
			}
			wantTied := 0
			if cfg.TokenDecoder.Own != nil {
				wantTied = 2
			}
			if len(unused) != 1 || len(tied) != wantTied || len(tab) != len(arch.Tensors(cfg))+1+wantTied {
				t.Fatalf("unused entries %v, tied %v of %d", unused, tied, len(tab))
			}
			i := unused[0]
			u := tab[i]
			if u.Name != unusedName || u.ID != (arch.ID{Component: arch.BlockDecoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer, Param: arch.Weight}) {
				t.Fatalf("unused entry %s %v", u.Name, u.ID)
			}
			if tab[i-1].ID.Component != arch.Embedder || tab[i+1].Name != "block_decoder.gpt_neox.layers.0.input_layernorm.weight" {
				t.Fatalf("unused entry between %s and %s", tab[i-1].Name, tab[i+1].Name)
			}
		})
	}
}

// Our identities' official names: the main models' GPT-NeoX and lookup names, a RoBERTa
// embedder's as RobertaModel names them, a T5 token decoder's as T5ForConditionalGeneration does.
func TestName(t *testing.T) {
	id := func(comp string, p arch.Part, layer int, param arch.Param) arch.ID {
		return arch.ID{Component: comp, Part: p, Layer: layer, Param: param}
	}
	for fixture, names := range map[string]map[arch.ID]string{
		"bt-tiny": {
			id(arch.Embedder, arch.PartEmbeddings, arch.NoLayer, arch.Weight):    "embedder.embeddings.weight",
			id(arch.Embedder, arch.PartProjection, arch.NoLayer, arch.Bias):      "embedder.projection_layer.bias",
			id(arch.BlockDecoder, arch.PartAttnOut, 1, arch.Bias):                "block_decoder.gpt_neox.layers.1.attention.dense.bias",
			id(arch.BlockDecoder, arch.PartFinalNorm, arch.NoLayer, arch.Weight): "block_decoder.gpt_neox.final_layer_norm.weight",
			id(arch.TokenDecoder, arch.PartExpansion, arch.NoLayer, arch.Weight): "token_decoder.expansion_layer.weight",
			id(arch.TokenDecoder, arch.PartEmbedIn, arch.NoLayer, arch.Weight):   "token_decoder.gpt_neox.embed_in.weight",
			id(arch.TokenDecoder, arch.PartLN2, 0, arch.Weight):                  "token_decoder.gpt_neox.layers.0.post_attention_layernorm.weight",
			id(arch.TokenDecoder, arch.PartEmbedOut, arch.NoLayer, arch.Weight):  "token_decoder.embed_out.weight",
		},
		"bt-cls-cross-attn-tiny": {
			id(arch.Embedder, arch.PartEmbeddings, arch.NoLayer, arch.Weight):    "embedder.embeddings.word_embeddings.weight",
			id(arch.Embedder, arch.PartPositions, arch.NoLayer, arch.Weight):     "embedder.embeddings.position_embeddings.weight",
			id(arch.Embedder, arch.PartTokenTypes, arch.NoLayer, arch.Weight):    "embedder.embeddings.token_type_embeddings.weight",
			id(arch.Embedder, arch.PartEmbedNorm, arch.NoLayer, arch.Bias):       "embedder.embeddings.LayerNorm.bias",
			id(arch.Embedder, arch.PartAttnQ, 1, arch.Weight):                    "embedder.encoder.layer.1.attention.self.query.weight",
			id(arch.Embedder, arch.PartAttnOut, 0, arch.Bias):                    "embedder.encoder.layer.0.attention.output.dense.bias",
			id(arch.Embedder, arch.PartAttnNorm, 0, arch.Weight):                 "embedder.encoder.layer.0.attention.output.LayerNorm.weight",
			id(arch.Embedder, arch.PartMLPUp, 1, arch.Bias):                      "embedder.encoder.layer.1.intermediate.dense.bias",
			id(arch.Embedder, arch.PartMLPDown, 1, arch.Weight):                  "embedder.encoder.layer.1.output.dense.weight",
			id(arch.Embedder, arch.PartMLPNorm, 0, arch.Bias):                    "embedder.encoder.layer.0.output.LayerNorm.bias",
			id(arch.Embedder, arch.PartProjection, arch.NoLayer, arch.Weight):    "embedder.projection_layer.weight",
			id(arch.BlockDecoder, arch.PartAttnQKV, 0, arch.Weight):              "block_decoder.gpt_neox.layers.0.attention.query_key_value.weight",
			id(arch.TokenDecoder, arch.PartExpansion, arch.NoLayer, arch.Bias):   "token_decoder.expansion_layer.bias",
			id(arch.TokenDecoder, arch.PartEmbedIn, arch.NoLayer, arch.Weight):   "token_decoder.shared.weight",
			id(arch.TokenDecoder, arch.PartRelBias, arch.NoLayer, arch.Weight):   "token_decoder.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
			id(arch.TokenDecoder, arch.PartAttnK, 1, arch.Weight):                "token_decoder.decoder.block.1.layer.0.SelfAttention.k.weight",
			id(arch.TokenDecoder, arch.PartAttnOut, 0, arch.Weight):              "token_decoder.decoder.block.0.layer.0.SelfAttention.o.weight",
			id(arch.TokenDecoder, arch.PartLN1, 1, arch.Weight):                  "token_decoder.decoder.block.1.layer.0.layer_norm.weight",
			id(arch.TokenDecoder, arch.PartCrossV, 0, arch.Weight):               "token_decoder.decoder.block.0.layer.1.EncDecAttention.v.weight",
			id(arch.TokenDecoder, arch.PartCrossNorm, 1, arch.Weight):            "token_decoder.decoder.block.1.layer.1.layer_norm.weight",
			id(arch.TokenDecoder, arch.PartMLPUp, 0, arch.Weight):                "token_decoder.decoder.block.0.layer.2.DenseReluDense.wi.weight",
			id(arch.TokenDecoder, arch.PartLN2, 1, arch.Weight):                  "token_decoder.decoder.block.1.layer.2.layer_norm.weight",
			id(arch.TokenDecoder, arch.PartFinalNorm, arch.NoLayer, arch.Weight): "token_decoder.decoder.final_layer_norm.weight",
		},
	} {
		cfg := testfix.Open(t, testfix.Path(fixture)).Config
		for id, want := range names {
			if got := official.Name(cfg, id); got != want {
				t.Errorf("%s %v: %s, want %s", fixture, id, got, want)
			}
		}
	}
}

// The official Conv1d projection [D, De, L] reads as our Linear [D, L*De]: ours[o, t*De+i] =
// official[o, i, t]; the expansion layer loses its unit axis and keeps its bytes.
func TestOpenConvolutions(t *testing.T) {
	m, f := openWithFile(t, "bt-from-pythia-tiny")
	read := func(name string) []float32 {
		raw, err := f.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := safetensors.ToFloat32(safetensors.F32, raw)
		return v
	}
	p := m.Tensor(arch.Embedder, "projection_layer.weight")
	if fmt.Sprint(p.Shape) != "[128 512]" {
		t.Fatalf("projection shape %v", p.Shape)
	}
	ours, err := p.Float32()
	if err != nil {
		t.Fatal(err)
	}
	theirs := read("embedder.projection_layer.weight")
	const D, De, L = 128, 128, 4
	for o := 0; o < D; o++ {
		for k := 0; k < L; k++ {
			for i := 0; i < De; i++ {
				if ours[o*L*De+k*De+i] != theirs[(o*De+i)*L+k] {
					t.Fatalf("projection [%d, %d*%d+%d] differs from the official [%d, %d, %d]", o, k, De, i, o, i, k)
				}
			}
		}
	}
	e := m.Tensor(arch.TokenDecoder, "expansion_layer.weight")
	got, _ := e.Float32()
	if fmt.Sprint(e.Shape) != "[256 128]" || !slices.Equal(got, read("token_decoder.expansion_layer.weight")) {
		t.Fatalf("expansion %v", e.Shape)
	}
}

// Exporting what was read gives back the official checkpoint: the same names, shapes, dtypes and
// bytes, except the unused embed_in, written as zeros.
func TestExportRoundTrip(t *testing.T) {
	for _, name := range append([]string{"bt-tiny", "bt-from-pythia-tiny"}, testfix.Ablations...) {
		t.Run(name, func(t *testing.T) {
			m, err := open(t, testfix.Path(name), formats.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			os.Mkdir(out, 0o755)
			if err := (official.Layout{}).Export(m, out, formats.ExportOptions{Name: name}); err != nil {
				t.Fatal(err)
			}
			testfix.SameCheckpoint(t, filepath.Join(testfix.Path(name), "model.safetensors"), filepath.Join(out, "model.safetensors"), unusedName)
			// The config written reads back as the same architecture.
			back, err := open(t, out, formats.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if back.Config.Describe() != m.Config.Describe() || !reflect.DeepEqual(archOnly(back.Config), archOnly(m.Config)) {
				t.Fatalf("read back as %s, want %s", back.Config.Describe(), m.Config.Describe())
			}
		})
	}
	m, err := open(t, testfix.Path("bt-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Tensors = m.Tensors[1:]
	err = official.Layout{}.Export(m, t.TempDir(), formats.ExportOptions{})
	if want := testfix.Path("bt-tiny") + ": no tensor embedder/embeddings.weight to export"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// What an official checkpoint may hold besides its model: the unused embed_in (or not), old HF
// buffers; each said in a note.
func TestOpenNotes(t *testing.T) {
	dropped := "dropped " + unusedName + " (present in official checkpoints, never used by the model)"
	buffer := "block_decoder.gpt_neox.layers.1.attention.masked_bias"
	dir := testfix.Copy(t, "bt-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		w = slices.DeleteFunc(w, func(x safetensors.WriteTensor) bool { return x.Name == unusedName })
		return append(w, safetensors.WriteTensor{Name: buffer, DType: safetensors.F32, Shape: []int{1},
			Data: func() ([]byte, error) { return make([]byte, 4), nil }})
	})
	m, err := open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Notes, "ignored buffer "+buffer) || slices.Contains(m.Notes, dropped) || len(m.Tensors) != 57 {
		t.Fatalf("notes %q, %d tensors", m.Notes, len(m.Tensors))
	}
	m, err = open(t, testfix.Path("bt-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Notes, dropped) || len(m.Tensors) != 57 {
		t.Fatalf("notes %q, %d tensors", m.Notes, len(m.Tensors))
	}
}

func TestOpenErrors(t *testing.T) {
	zeros := func(name string, shape ...int) safetensors.WriteTensor {
		n := 4
		for _, d := range shape {
			n *= d
		}
		return safetensors.WriteTensor{Name: name, DType: safetensors.F32, Shape: shape, Data: func() ([]byte, error) { return make([]byte, n), nil }}
	}
	edit := func(f func(w []safetensors.WriteTensor) []safetensors.WriteTensor) func(*testing.T, string) {
		return func(t *testing.T, dir string) { testfix.Rewrite(t, dir, f) }
	}
	reshape := func(name string, shape ...int) func(*testing.T, string) {
		return edit(func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			for i := range w {
				if w[i].Name == name {
					w[i].Shape = shape
				}
			}
			return w
		})
	}
	cases := []struct {
		name, fixture string
		edit          func(*testing.T, string)
		want          string // after the folder
	}{
		{"missing and unexpected", "bt-tiny", edit(func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			w = slices.DeleteFunc(w, func(x safetensors.WriteTensor) bool {
				return x.Name == "token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias"
			})
			return append(w, zeros("token_decoder.lm_head.weight", 256, 128), zeros("block_decoder.gpt_neox.layers.2.attention.dense.bias", 128))
		}), `: tensor "token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias": missing from the checkpoint (the architecture needs it); 2 unexpected: "block_decoder.gpt_neox.layers.2.attention.dense.bias", "token_decoder.lm_head.weight"`},
		{"a layer too many", "bt-tiny", edit(func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			for _, x := range slices.Clone(w) {
				if rest, ok := strings.CutPrefix(x.Name, "block_decoder.gpt_neox.layers.1."); ok {
					x.Name = "block_decoder.gpt_neox.layers.2." + rest
					w = append(w, x)
				}
			}
			return w
		}), `/model.safetensors: tensor "block_decoder.gpt_neox.layers.2.attention.dense.bias": not part of a Block Transformer with this architecture (check --config); 11 more unexpected: "block_decoder.gpt_neox.layers.2.attention.dense.weight", "block_decoder.gpt_neox.layers.2.attention.query_key_value.bias", "block_decoder.gpt_neox.layers.2.attention.query_key_value.weight", "block_decoder.gpt_neox.layers.2.input_layernorm.bias", "block_decoder.gpt_neox.layers.2.input_layernorm.weight", ...`},
		{"expansion without its unit axis", "bt-tiny", reshape("token_decoder.expansion_layer.weight", 256, 128),
			`/model.safetensors: tensor "token_decoder.expansion_layer.weight": shape [256 128], want [256, 128, 1]`},
		{"projection axes swapped", "bt-from-pythia-tiny", reshape("embedder.projection_layer.weight", 128, 4, 128),
			`/model.safetensors: tensor "embedder.projection_layer.weight": shape [128 4 128] disagrees with the config (want [128 128 4]): embedder.hidden_size 128 from config.yaml`},
		{"no config", "bt-tiny", func(_ *testing.T, dir string) { os.Remove(filepath.Join(dir, "config.yaml")) },
			": no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give --config NAME (an official config, e.g. block_main_b4_85) or --config PATH.yaml, or --heads (the official default for hidden 128 is 4 heads: --heads 4)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := testfix.Copy(t, c.fixture)
			c.edit(t, dir)
			_, err := open(t, dir, formats.OpenOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			if got := testfix.ErrText(err); got != dir+c.want {
				t.Fatalf("got  %s\nwant %s%s", got, dir, c.want)
			}
		})
	}
}

// Without a config the architecture is read off the shapes, given the heads: bt-tiny's.
func TestOpenFromShapes(t *testing.T) {
	dir := testfix.Copy(t, "bt-tiny")
	os.Remove(filepath.Join(dir, "config.yaml"))
	m, err := open(t, dir, formats.OpenOptions{Heads: arch.Heads{4}})
	if err != nil {
		t.Fatal(err)
	}
	want := testfix.Open(t, testfix.Path("bt-tiny")).Config.Describe()
	if got := m.Config.Describe(); got != want {
		t.Fatalf("%s, want %s", got, want)
	}
	if !slices.Contains(m.Notes, "no config.yaml: architecture read off the tensor shapes, heads given (4), prefix decoding") {
		t.Fatalf("notes %q", m.Notes)
	}
}
