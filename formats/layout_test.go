package formats

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const fixtures = "../fixtures"

func mustOpen(t *testing.T, path string) *Model {
	t.Helper()
	m, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Every tensor of an imported official checkpoint is the checkpoint's own bytes.
func TestImportOfficialKeepsBytes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	m := mustOpen(t, filepath.Join(fixtures, "bt-tiny"))
	if m.Format != FormatOfficial || !slices.Contains(m.Notes, "dropped block_decoder.gpt_neox.embed_in.weight (present in official checkpoints, never used by the model)") {
		t.Fatalf("format %s notes %v", m.Format, m.Notes)
	}
	if err := WriteModel(m, dir, WriteOptions{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	src, _ := OpenSafetensors(filepath.Join(fixtures, "bt-tiny", "model.safetensors"))
	defer src.Close()
	out := mustOpen(t, dir)
	if len(out.Tensors) != len(src.Tensors)-1 {
		t.Fatalf("%d tensors, source has %d (+ the unused embed_in)", len(out.Tensors), len(src.Tensors))
	}
	for _, ot := range out.Tensors {
		want, err := src.Raw(OfficialName(ot.Component, ot.Name))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := ot.Raw()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the checkpoint", ot.Key())
		}
	}
	// The manifest hashes what is on disk.
	for _, f := range out.Manifest.Files {
		st, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil || st.Size() != f.Size {
			t.Fatalf("manifest entry %+v: %v", f, err)
		}
	}
}

// archOnly is the config without its provenance (base model names, training length, precision).
func archOnly(c *Config) *Config {
	a := *c
	a.Source = nil
	return &a
}

// Without config.yaml the architecture is inferred from shapes and equals the YAML one.
func TestInferOfficialConfig(t *testing.T) {
	for _, name := range []string{"bt-tiny", "bt-from-pythia-tiny"} {
		dir := t.TempDir()
		data, _ := os.ReadFile(filepath.Join(fixtures, name, "model.safetensors"))
		os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644)
		inferred, err := Open(dir, OpenOptions{Heads: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer inferred.Close()
		withYAML := mustOpen(t, filepath.Join(fixtures, name))
		if !reflect.DeepEqual(archOnly(inferred.Config), archOnly(withYAML.Config)) {
			a, _ := json.Marshal(inferred.Config)
			b, _ := json.Marshal(withYAML.Config)
			t.Fatalf("%s: inferred %s\nyaml %s", name, a, b)
		}
	}
}

func TestNeoXConfigSpellings(t *testing.T) {
	base, _ := os.ReadFile(filepath.Join(fixtures, "pythia-tiny", "config.json"))
	weights, _ := os.ReadFile(filepath.Join(fixtures, "pythia-tiny", "model.safetensors"))
	want := mustOpen(t, filepath.Join(fixtures, "pythia-tiny")).Config
	if want.Decoder.RotaryDims != 8 || want.Decoder.Heads != 4 || !want.Decoder.ParallelResidual {
		t.Fatalf("pythia-tiny config %+v", want.Decoder)
	}
	for name, edit := range map[string]func(m map[string]any){
		"partial_rotary_factor": func(m map[string]any) {
			delete(m, "rotary_pct")
			m["partial_rotary_factor"] = 0.25
			delete(m, "rotary_emb_base")
			m["rope_theta"] = 10000
		},
		"rope_parameters": func(m map[string]any) {
			delete(m, "rotary_pct")
			delete(m, "rotary_emb_base")
			m["rope_parameters"] = map[string]any{"partial_rotary_factor": 0.25, "rope_theta": 10000, "rope_type": "default"}
		},
	} {
		var m map[string]any
		json.Unmarshal(base, &m)
		edit(m)
		dir := t.TempDir()
		cj, _ := json.Marshal(m)
		os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644)
		os.WriteFile(filepath.Join(dir, "model.safetensors"), weights, 0o644)
		got := mustOpen(t, dir).Config
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v want %+v", name, got.Decoder, want.Decoder)
		}
	}
}

// The lm_head.weight spelling of the output head (transformers 5.x) is the same model.
func TestNeoXLMHead(t *testing.T) {
	src := mustOpen(t, filepath.Join(fixtures, "pythia-tiny"))
	dir := t.TempDir()
	var wts []WriteTensor
	for _, tt := range src.Tensors {
		name := "gpt_neox." + tt.Name
		if tt.Name == "embed_out.weight" {
			name = "lm_head.weight"
		}
		wts = append(wts, WriteTensor{Name: name, DType: tt.DType, Shape: tt.Shape, Data: tt.Raw})
	}
	if _, err := WriteSharded(dir, 400_000, nil, wts, nil); err != nil {
		t.Fatal(err)
	}
	cj, _ := os.ReadFile(filepath.Join(fixtures, "pythia-tiny", "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644)
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors.index.json")); err != nil {
		t.Fatal("expected a sharded checkpoint")
	}
	m := mustOpen(t, dir)
	for i, tt := range m.Tensors {
		a, _ := tt.Raw()
		b, _ := src.Tensors[i].Raw()
		if tt.Key() != src.Tensors[i].Key() || !bytes.Equal(a, b) {
			t.Fatalf("%s differs", tt.Key())
		}
	}
}

// The uptraining initialisation of pythia-tiny equals the fixture, tensor for tensor (in f32).
func TestUptrainPartitionMatchesFixture(t *testing.T) {
	v := mustOpen(t, filepath.Join(fixtures, "pythia-tiny"))
	up, err := Uptrain(v, UptrainOptions{BlockLength: 4, Method: "partition"})
	if err != nil {
		t.Fatal(err)
	}
	want := mustOpen(t, filepath.Join(fixtures, "bt-from-pythia-tiny"))
	if !reflect.DeepEqual(archOnly(up.Config), archOnly(want.Config)) {
		t.Fatalf("config %+v want %+v", up.Config, want.Config)
	}
	if len(up.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(up.Tensors), len(want.Tensors))
	}
	for i, got := range up.Tensors {
		w := want.Tensors[i]
		a, err := got.Float32()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := w.Float32()
		if got.Key() != w.Key() || !slices.Equal(a, b) {
			t.Fatalf("%s differs from %s", got.Key(), w.Key())
		}
	}
}

func TestUptrainMethods(t *testing.T) {
	v := mustOpen(t, filepath.Join(fixtures, "pythia-tiny"))
	for _, c := range []struct {
		opt       UptrainOptions
		blk, tok  int
		wantError string
	}{
		{UptrainOptions{BlockLength: 4, Method: "skip"}, 2, 2, ""},
		{UptrainOptions{BlockLength: 4, Method: "duplicate"}, 4, 4, ""},
		{UptrainOptions{BlockLength: 4, Method: "partition", BlockLayers: 3}, 3, 1, ""},
		{UptrainOptions{BlockLength: 4, Method: "partition", BlockLayers: 4}, 0, 0, "--method partition: --block-layers must be between 1 and 3 for a 4-layer model, got 4"},
		{UptrainOptions{BlockLength: 4, Method: "duplicate", BlockLayers: 2}, 0, 0, "--method duplicate gives the block decoder 4 of the 4 layers; --block-layers 2 does not fit"},
		{UptrainOptions{BlockLength: 4, Method: "shuffle"}, 0, 0, `--method "shuffle": want partition, skip or duplicate`},
	} {
		m, err := Uptrain(v, c.opt)
		if c.wantError != "" {
			if err == nil || err.Error() != c.wantError {
				t.Errorf("%+v: error %v, want %q", c.opt, err, c.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.BlockDecoder.Layers != c.blk || m.Config.TokenDecoder.Layers != c.tok {
			t.Errorf("%+v: %d/%d layers", c.opt, m.Config.BlockDecoder.Layers, m.Config.TokenDecoder.Layers)
		}
	}
}

// copyFixture copies a fixture's files into a temp dir so a test can break them.
func copyFixture(t *testing.T, name string) string {
	dir := t.TempDir()
	ents, _ := os.ReadDir(filepath.Join(fixtures, name))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(fixtures, name, e.Name()))
		os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
	}
	return dir
}

// rewrite writes a fixture's weights again with edit applied to the tensor list.
func rewrite(t *testing.T, dir string, edit func([]WriteTensor) []WriteTensor) {
	f, err := OpenSafetensors(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var wts []WriteTensor
	for _, ti := range f.Tensors {
		raw, _ := f.Raw(ti.Name)
		raw = bytes.Clone(raw)
		wts = append(wts, WriteTensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: func() ([]byte, error) { return raw, nil }})
	}
	f.Close()
	if _, err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), nil, edit(wts), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLayoutErrors(t *testing.T) {
	drop := func(name string) func([]WriteTensor) []WriteTensor {
		return func(w []WriteTensor) []WriteTensor {
			return slices.DeleteFunc(w, func(x WriteTensor) bool { return x.Name == name })
		}
	}
	cases := []struct {
		name    string
		fixture string
		edit    func(dir string)
		want    string // message after "<dir>/"
	}{
		{"missing tensor", "bt-tiny", func(d string) { rewrite(t, d, drop("token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias")) },
			`: tensor "token_decoder.gpt_neox.layers.1.mlp.dense_4h_to_h.bias": missing from the checkpoint (the architecture needs it)`},
		{"shape vs config", "bt-tiny", func(d string) {
			y, _ := os.ReadFile(filepath.Join(d, "config.yaml"))
			os.WriteFile(filepath.Join(d, "config.yaml"), bytes.Replace(y, []byte("expansion_ratio: 2"), []byte("expansion_ratio: 3"), 1), 0o644)
		}, `/model.safetensors: tensor "token_decoder.expansion_layer.weight": shape [256 128] disagrees with the config (want [384 128])`},
		{"extra tensor", "bt-tiny", func(d string) {
			rewrite(t, d, func(w []WriteTensor) []WriteTensor {
				return append(w, WriteTensor{Name: "block_decoder.gpt_neox.layers.2.attention.dense.bias", DType: F32, Shape: []int{128}, Data: func() ([]byte, error) { return make([]byte, 512), nil }})
			})
		}, `/model.safetensors: tensor "block_decoder.gpt_neox.layers.2.attention.dense.bias": not part of a Block Transformer with this architecture (check --config)`},
		{"neox missing head", "pythia-tiny", func(d string) {
			rewrite(t, d, func(w []WriteTensor) []WriteTensor { return drop("gpt_neox.layers.3.attention.dense.weight")(w) })
		}, `: tensor "gpt_neox.layers.3.attention.dense.weight": missing from the checkpoint (config.json asks for it)`},
		{"neox no config", "pythia-tiny", func(d string) { os.Remove(filepath.Join(d, "config.json")) },
			": GPT-NeoX weights but no config.json beside them (give --config)"},
		{"bad yaml", "bt-tiny", func(d string) { os.WriteFile(filepath.Join(d, "config.yaml"), []byte("block_length: [\n"), 0o644) },
			"/config.yaml: not valid YAML:"},
		{"no weights", "bt-tiny", func(d string) { os.Remove(filepath.Join(d, "model.safetensors")) },
			": no model.safetensors or model.safetensors.index.json here"},
		{"int weights", "pythia-tiny", func(d string) {
			rewrite(t, d, func(w []WriteTensor) []WriteTensor {
				for i := range w {
					if w[i].Name == "gpt_neox.final_layer_norm.bias" {
						w[i].DType = I16
					}
				}
				return w
			})
		}, `/model.safetensors: tensor "gpt_neox.final_layer_norm.bias": dtype I16 is not a float type`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyFixture(t, c.fixture)
			c.edit(dir)
			_, err := Open(dir, OpenOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), dir+c.want) {
				t.Fatalf("got  %s\nwant %s%s", err, dir, c.want)
			}
			if !IsInputError(err) {
				t.Fatal("not an InputError")
			}
		})
	}
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
		p := filepath.Join(dir, indexName)
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
	if want := filepath.Join(dir, indexName) + `: tensor "b": mapped to shard model-00001-of-00003.safetensors, which does not contain it`; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	dir = mk(t)
	setMap(dir, func(m map[string]string) { delete(m, "c") })
	_, err = OpenCheckpoint(dir)
	if want := filepath.Join(dir, "model-00003-of-00003.safetensors") + `: tensor "c": not in the weight_map of ` + filepath.Join(dir, indexName); err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	dir = mk(t)
	os.Remove(filepath.Join(dir, indexName))
	_, err = OpenCheckpoint(dir)
	if want := dir + ": has shard model-00001-of-00003.safetensors but no model.safetensors.index.json to say which tensor is where"; err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

func TestWriteModelRefusesExistingAndConverts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	m := mustOpen(t, filepath.Join(fixtures, "pythia-tiny"))
	if err := WriteModel(m, dir, WriteOptions{DType: F32}); err != nil {
		t.Fatal(err)
	}
	err := WriteModel(m, dir, WriteOptions{})
	if err == nil || err.Error() != dir+": already exists (use --force to replace it)" {
		t.Fatalf("got %v", err)
	}
	if err := WriteModel(m, dir, WriteOptions{Force: true, DType: BF16}); err != nil {
		t.Fatal(err)
	}
	out := mustOpen(t, dir)
	for i, tt := range out.Tensors {
		if tt.DType != BF16 {
			t.Fatalf("%s is %s", tt.Key(), tt.DType)
		}
		a, _ := tt.Float32()
		b, _ := m.Tensors[i].Float32()
		for j := range a {
			if d := a[j] - b[j]; d > 0.01*abs32(b[j])+1e-30 || -d > 0.01*abs32(b[j])+1e-30 {
				t.Fatalf("%s[%d]: %v vs %v", tt.Key(), j, a[j], b[j])
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// A tokenizer.json beside the weights travels with import and is used instead of bytes.
func TestTokenizerJSON(t *testing.T) {
	src := copyFixture(t, "pythia-tiny")
	tok := `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
 "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
 "model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2,"the":3},"unk_token":"[UNK]"}}`
	os.WriteFile(filepath.Join(src, TokenizerName), []byte(tok), 0o644)
	out := filepath.Join(t.TempDir(), "m")
	if err := WriteModel(mustOpen(t, src), out, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	m := mustOpen(t, out)
	if m.Manifest.File(TokenizerName) == nil {
		t.Fatal("tokenizer.json not in the manifest")
	}
	tk, err := TokenizerFor(m)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tk.Encode("hello the world foo")
	if err != nil || !slices.Equal(ids, []int32{1, 3, 2, 0}) {
		t.Fatalf("ids %v %v", ids, err)
	}
	if got := tk.Decode([]int32{1, 3, 2}); got != "hello the world" {
		t.Fatalf("decode %q", got)
	}
	// Without one, a byte vocabulary uses bytes, and a large vocabulary is an error.
	plain := mustOpen(t, filepath.Join(fixtures, "pythia-tiny"))
	if tk, _ := TokenizerFor(plain); tk.Name() != "bytes" {
		t.Fatalf("byte model got %s", tk.Name())
	}
}
