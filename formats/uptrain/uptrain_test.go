package uptrain_test

import (
	_ "github.com/btconvert/btconvert/families/roberta" // the ablation configs' embedders
	_ "github.com/btconvert/btconvert/families/t5"      // the ablation fixtures' token decoder
	"reflect"
	"slices"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/uptrain"
	"github.com/btconvert/btconvert/internal/testfix"
)

// The uptraining initialisation of pythia-tiny equals the fixture, tensor for tensor (in f32).
func TestPartitionMatchesFixture(t *testing.T) {
	v := testfix.Open(t, testfix.Path("pythia-tiny"))
	up, err := uptrain.Uptrain(v, uptrain.Options{BlockLength: 4, Method: uptrain.Partition})
	if err != nil {
		t.Fatal(err)
	}
	want := testfix.Open(t, testfix.Path("bt-from-pythia-tiny"))
	a, b := *up.Config, *want.Config
	a.Source, b.Source, a.Origins, b.Origins = nil, nil, nil, nil
	if !reflect.DeepEqual(&a, &b) {
		t.Fatalf("config %+v want %+v", up.Config, want.Config)
	}
	if len(up.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(up.Tensors), len(want.Tensors))
	}
	for i, got := range up.Tensors {
		w := want.Tensors[i]
		x, err := got.Float32()
		if err != nil {
			t.Fatal(err)
		}
		y, _ := w.Float32()
		if got.Key() != w.Key() || !slices.Equal(x, y) {
			t.Fatalf("%s differs from %s", got.Key(), w.Key())
		}
	}
}

func TestMethods(t *testing.T) {
	v := testfix.Open(t, testfix.Path("pythia-tiny"))
	for _, c := range []struct {
		opt       uptrain.Options
		blk, tok  int
		wantError string
	}{
		{uptrain.Options{BlockLength: 4, Method: uptrain.Skip}, 2, 2, ""},
		{uptrain.Options{BlockLength: 4, Method: uptrain.Duplicate}, 4, 4, ""},
		{uptrain.Options{BlockLength: 4, Method: uptrain.Partition, BlockLayers: 3}, 3, 1, ""},
		{uptrain.Options{BlockLength: 3, ExpansionRatio: 1}, 2, 2, ""},
		{uptrain.Options{BlockLength: 4, Method: uptrain.Partition, BlockLayers: 4}, 0, 0, `--method "partition": --block-layers must be between 1 and 3 for a 4-layer model, got 4`},
		{uptrain.Options{BlockLength: 4, Method: uptrain.Duplicate, BlockLayers: 2}, 0, 0, `--method "duplicate": gives the block decoder 4 of the 4 layers; --block-layers 2 does not fit`},
		{uptrain.Options{BlockLength: 4, Method: "shuffle"}, 0, 0, `--method "shuffle": want partition, skip or duplicate`},
		{uptrain.Options{BlockLength: -1}, 0, 0, `--block-length -1: must be between 1 and 1024`},
		{uptrain.Options{BlockLength: 4, ExpansionRatio: -1}, 0, 0, `--expansion-ratio -1: must be between 1 and 64`},
	} {
		m, err := uptrain.Uptrain(v, c.opt)
		if c.wantError != "" {
			if err == nil || testfix.ErrText(err) != c.wantError {
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

// New tensors are what the table's roles say: the block decoder's final LayerNorm is (1, 0).
func TestRoles(t *testing.T) {
	v := testfix.Open(t, testfix.Path("pythia-tiny"))
	up, err := uptrain.Uptrain(v, uptrain.Options{BlockLength: 4})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := up.Tensor(arch.BlockDecoder, arch.FinalNorm+".weight").Float32()
	b, _ := up.Tensor(arch.BlockDecoder, arch.FinalNorm+".bias").Float32()
	for i := range g {
		if g[i] != 1 || b[i] != 0 {
			t.Fatalf("final LayerNorm (%v, %v) at %d, want (1, 0)", g[i], b[i], i)
		}
	}
}

// With a Block config (as the official uptraining configs), its heads replace the vanilla
// model's; a config the vanilla weights do not fit is refused. Without one the vanilla heads are
// kept, and the manifest notes say so.
func TestTarget(t *testing.T) {
	v := testfix.Open(t, testfix.Path("pythia-tiny")) // 4 layers, D 128, 4 heads, FFN 512
	spec := func(heads int, emb arch.EmbedderType, ffn int) *arch.Config {
		st := arch.StackSpec{Base: arch.DefaultBase, Settings: []arch.Setting{{Key: arch.KeyLayers, Value: 2}, {Key: arch.KeyHidden, Value: 128},
			{Key: arch.KeyVocab, Value: 256}, {Key: arch.KeyHeads, Value: heads}, {Key: arch.KeyIntermediate, Value: ffn}}}
		embDim := 128
		if emb == arch.Concat {
			embDim = 32
		}
		s := &arch.BlockSpec{File: "up.yaml", BlockLength: 4, Embedder: arch.EmbedderSpec{ProjectionMethod: string(emb), Hidden: embDim},
			BlockDecoder: st, TokenDecoder: arch.TokenSpec{StackSpec: st, ExpansionRatio: 2, Decoding: "prefix"}}
		c, _, err := s.Resolve(nil, nil, arch.Provenance{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	up, err := uptrain.Uptrain(v, uptrain.Options{Target: spec(8, arch.ProjectionLayer, 512)})
	if err != nil {
		t.Fatal(err)
	}
	if d := up.Config.TokenDecoder; d.Heads != 8 || d.HeadDim != 16 || d.RotaryDims != 4 || d.Layers != 2 {
		t.Fatalf("token decoder %+v", d.DecoderConfig)
	}
	if !slices.Contains(up.Notes, "heads from the Block config: block decoder 8 x 16, token decoder 8 x 16 (the vanilla model has 4 x 32)") {
		t.Fatalf("notes %q", up.Notes)
	}
	for _, c := range []struct {
		target *arch.Config
		opt    uptrain.Options
		want   string
	}{
		{spec(8, arch.Concat, 512), uptrain.Options{}, "--config: the Block config does not fit the vanilla model: uptraining loads the vanilla token embeddings into a projection_layer embedder of width 128; the config has a concat embedder of width 32"},
		{spec(8, arch.ProjectionLayer, 1024), uptrain.Options{}, "--config: the Block config does not fit the vanilla model: block_decoder hidden_size 128 and intermediate_size 1024, the vanilla model has 128 and 512"},
		{spec(8, arch.ProjectionLayer, 512), uptrain.Options{Method: uptrain.Duplicate}, "--config: the Block config does not fit the vanilla model: block_decoder has 2 layers; the method gives it 4 of the vanilla model's 4"},
		{spec(8, arch.ProjectionLayer, 512), uptrain.Options{BlockLength: 4}, "--config: the Block config gives the block length, layers and expansion ratio: give none of --block-length, --block-layers, --expansion-ratio with it"},
		{testfix.Open(t, testfix.Path("bt-roberta-prefix-tiny")).Config, uptrain.Options{}, "--config: the Block config does not fit the vanilla model: uptraining loads the vanilla token embeddings into a lookup embedder; the config has a roberta embedder"},
	} {
		o := c.opt
		o.Target = c.target
		if _, err := uptrain.Uptrain(v, o); err == nil || testfix.ErrText(err) != c.want {
			t.Errorf("got %v\nwant %s", err, c.want)
		}
	}
	up, err = uptrain.Uptrain(v, uptrain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(up.Notes, "heads kept from the vanilla model (4 x 32)") || up.Config.Origins["block_decoder.heads"] != "vanilla model" {
		t.Fatalf("notes %q origins %v", up.Notes, up.Config.Origins)
	}
}

// Each layer of each decoder is the vanilla layer its method gives it, part for part; the token
// decoder's embed_in, final LayerNorm and embed_out and the embedder's table are the vanilla ones.
func TestLayerSources(t *testing.T) {
	v := testfix.Open(t, testfix.Path("pythia-tiny")) // 4 layers
	for _, c := range []struct {
		opt      uptrain.Options
		blk, tok []int
	}{
		{uptrain.Options{Method: uptrain.Partition, BlockLayers: 3}, []int{0, 1, 2}, []int{3}},
		{uptrain.Options{Method: uptrain.Skip}, []int{0, 2}, []int{0, 2}},
		{uptrain.Options{Method: uptrain.Duplicate}, []int{0, 1, 2, 3}, []int{0, 1, 2, 3}},
	} {
		up, err := uptrain.Uptrain(v, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range arch.Tensors(up.Config) {
			id := arch.ID{Component: arch.Decoder, Part: s.Part, Layer: s.Layer, Param: s.Param}
			switch {
			case s.Layer >= 0 && s.Component == arch.BlockDecoder:
				id.Layer = c.blk[s.Layer]
			case s.Layer >= 0:
				id.Layer = c.tok[s.Layer]
			case s.Part == arch.PartEmbeddings:
				id.Part = arch.PartEmbedIn
			case s.Component != arch.TokenDecoder || s.Part == arch.PartExpansion:
				continue // made, not loaded (TestRoles)
			}
			got, err := up.Tensor(s.Component, s.Name).Raw()
			if err != nil {
				t.Fatal(err)
			}
			want, _ := v.Tensor(id.Component, id.Name()).Raw()
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s is not the vanilla %s", c.opt.Method, s.Key(), id.Key())
			}
			n++
		}
		// embeddings + 12 per layer + the token decoder's embed_in, final LayerNorm (2) and embed_out
		if want := 1 + 12*(len(c.blk)+len(c.tok)) + 4; n != want {
			t.Errorf("%s: %d tensors compared, want %d", c.opt.Method, n, want)
		}
	}
}
