package uptrain_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/btconvert/btconvert/formats/arch"
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
	a.Source, b.Source = nil, nil
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
		{uptrain.Options{BlockLength: 0}, 0, 0, `--block-length 0: must be between 1 and 1024`},
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
