package source_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btconvert/btconvert/internal/testfix"
)

// FuzzOfficialYAML feeds the official config.yaml reader arbitrary YAML beside bt-tiny's weights:
// it must accept or refuse it with an error, never panic.
//
//	go test ./formats/source -run XXX -fuzz FuzzOfficialYAML -fuzztime 3m
func FuzzOfficialYAML(f *testing.F) {
	dir := testfix.Copy(f, "bt-tiny")
	b, _ := os.ReadFile(filepath.Join(dir, "config.yaml"))
	f.Add(b)
	f.Add([]byte(officialYAML("EleutherAI/pythia-410m-deduped", "")))
	f.Add([]byte("block_decoder:\n  config:\n    num_attention_heads: -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		os.WriteFile(filepath.Join(dir, "config.yaml"), data, 0o644)
		if m, err := open(dir); err == nil {
			m.Close()
		}
	})
}

// FuzzHFConfig feeds the HF config.json reader arbitrary JSON beside pythia-tiny's weights.
func FuzzHFConfig(f *testing.F) {
	dir := testfix.Copy(f, "pythia-tiny")
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	f.Add(b)
	f.Add([]byte(`{"hidden_size":128,"num_attention_heads":3,"num_hidden_layers":4,"vocab_size":256,"rotary_pct":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
		if m, err := open(dir); err == nil {
			m.Close()
		}
	})
}
