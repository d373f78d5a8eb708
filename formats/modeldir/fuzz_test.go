package modeldir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// FuzzBundle feeds the bundle reader arbitrary bytes: it must refuse them with an error (never
// panic, never leave an extraction behind).
//
//	go test ./formats/modeldir -run XXX -fuzz FuzzBundle -fuzztime 3m
func FuzzBundle(f *testing.F) {
	// A tiny model keeps each execution fast (the decompressor is instrumented).
	cfg, err := arch.Shape{Hidden: 16, Heads: 2, FFN: 16, Layers: 1, Vocab: 16}.Config()
	if err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join(f.TempDir(), "m")
	if err := modeldir.Write(randinit.Model(cfg, 1, safetensors.F32), dir, modeldir.WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	good := filepath.Join(f.TempDir(), "good.btz")
	if _, err := modeldir.WriteBundle(dir, good, false, nil); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("(\xb5/\xfd"))
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(tmp, "f.btz")
		os.WriteFile(p, data, 0o644)
		d, err := modeldir.ExtractBundle(p)
		if err == nil {
			d.Abort()
		}
	})
}

// FuzzConfig feeds our config.json reader (with its quantization records) arbitrary bytes.
func FuzzConfig(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "m")
	if err := modeldir.Write(testfix.Open(f, testfix.Path("bt-tiny")), dir, modeldir.WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, modeldir.ConfigName))
	f.Add(b)
	f.Add([]byte(`{"format":"btconvert","format_version":1,"kind":"vanilla","vocab_size":4,"decoder":{"num_layers":1,"hidden_size":4,"num_heads":1,"head_dim":4,"intermediate_size":4,"rotary_dims":2,"rotary_base":10000,"layer_norm_eps":1e-5,"activation":"gelu"},"quantization":{"decoder/embed_out.weight":{"type":"int4","group_size":0,"rows":4,"cols":4}}}`))
	p := filepath.Join(f.TempDir(), "config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		os.WriteFile(p, data, 0o644)
		modeldir.ReadConfig(p)
	})
}
