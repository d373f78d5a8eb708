package source_test

import (
	"cmp"
	"fmt"
	_ "github.com/btconvert/btconvert/families/roberta" // the ablation configs' embedders
	_ "github.com/btconvert/btconvert/families/t5"      // the ablation fixtures' token decoder
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/internal/testfix"
)

// officialYAMLOf writes a Block config the way the official repository writes its YAMLs: each
// part names its base model and states only what the config states (decoders: layers and width;
// a RoBERTa embedder: layers, width and vocabulary; a T5 token decoder: its keys); the expansion
// ratio only where the config states one.
func officialYAMLOf(s *arch.BlockSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nblock_length: %d\nblock_split:\n  distribution: fixed\n  distribution_kwargs:\n    length: %d\nmax_length: 2048\n",
		s.Name, s.BlockLength, s.BlockLength)
	null := func(v string) string { return cmp.Or(v, "null") }
	fmt.Fprintf(&b, "embedder:\n  cls: %s\n  model_name_or_path: %s\n  n_embedding_tokens: 1\n  use_pretrained_weights: False\n  projection_method: %s\n",
		s.Embedder.Cls, null(s.Embedder.Base), null(s.Embedder.ProjectionMethod))
	if s.Embedder.CLSTokens > 0 {
		fmt.Fprintf(&b, "  n_cls_tokens: %d\n", s.Embedder.CLSTokens)
	}
	b.WriteString("  config:\n")
	if len(s.Embedder.Settings) == 0 {
		fmt.Fprintf(&b, "    vocab_size: %d\n    hidden_size: %d\n", s.Embedder.Vocab, s.Embedder.Hidden)
	}
	for _, kv := range s.Embedder.Settings {
		fmt.Fprintf(&b, "    %s: %v\n", kv.Key, kv.Value)
	}
	stack := func(name string, st arch.StackSpec, extra string) {
		fmt.Fprintf(&b, "%s:\n  cls: %s\n  model_name_or_path: %s\n  use_pretrained_weights: False\n  attn_implementation: flash_attention_2\n%s  config:\n", name, st.Cls, st.Base, extra)
		for _, kv := range st.Settings {
			fmt.Fprintf(&b, "    %s: %v\n", kv.Key, kv.Value)
		}
	}
	stack("block_decoder", s.BlockDecoder, "")
	td := "  expansion_method: expansion_layer\n"
	if s.TokenDecoder.ExpansionRatio != 0 {
		td += fmt.Sprintf("  expansion_ratio: %d\n", s.TokenDecoder.ExpansionRatio)
	}
	td += "  decoding_strategy: " + s.TokenDecoder.Decoding + "\n"
	stack("token_decoder", s.TokenDecoder.StackSpec, td)
	b.WriteString("precision: bf16\nlearning_rate: 6e-4\n")
	return b.String()
}

// Every supported official config: a checkpoint of its shapes (zero-filled, sparse) opens with
// its YAML as the official repository writes it, and with --config NAME, to the same
// architecture; without either it is refused, naming the configs whose shapes it has.
func TestReleasedConfigsImport(t *testing.T) {
	for _, name := range arch.ReleasedNames() {
		blk, van, err := arch.Released(name, arch.OriginYAML)
		if err != nil {
			t.Fatal(err)
		}
		var cfg *arch.Config
		if blk != nil {
			cfg, _, err = blk.Resolve(nil, nil, arch.Provenance{})
		} else {
			cfg, _, err = van.Resolve(nil, nil, arch.Provenance{})
		}
		if err != nil {
			if strings.Contains(err.Error(), "not supported yet") {
				continue
			}
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			testfix.SparseCheckpoint(t, dir, cfg)
			byName, err := source.Open(dir, formats.OpenOptions{Config: name})
			if err != nil {
				t.Fatal(err)
			}
			defer byName.Close()
			if !reflect.DeepEqual(byName.Config, cfg) {
				t.Fatalf("--config %s:\n got %+v\nwant %+v", name, byName.Config, cfg)
			}
			if blk == nil {
				return
			}
			// The YAML beside the weights, as the official repository writes it.
			if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(officialYAMLOf(blk)), 0o644); err != nil {
				t.Fatal(err)
			}
			withYAML, err := source.Open(dir, formats.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer withYAML.Close()
			if !reflect.DeepEqual(archOnly(withYAML.Config), archOnly(cfg)) || !reflect.DeepEqual(withYAML.Config.Origins, cfg.Origins) {
				t.Fatalf("config.yaml:\n got %+v\nwant %+v", withYAML.Config, cfg)
			}
			// Nothing says the heads: refused, naming the configs of these shapes.
			os.Remove(filepath.Join(dir, "config.yaml"))
			_, err = source.Open(dir, formats.OpenOptions{})
			if err == nil || !strings.Contains(err.Error(), "these shapes are those of ") || !strings.Contains(err.Error(), name) {
				t.Fatalf("no config: %v", err)
			}
		})
	}
}

// The refusal names the official default heads per decoder when the widths differ, and a
// summation checkpoint needs --decoding even with --heads (its weights also fit prefix r = L).
func TestMegabyteWithoutConfig(t *testing.T) {
	blk, _, _ := arch.Released("block_megabyte_b4_5", arch.OriginYAML)
	cfg, _, err := blk.Resolve(nil, nil, arch.Provenance{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testfix.SparseCheckpoint(t, dir, cfg)
	for _, c := range []struct {
		o    formats.OpenOptions
		want string
	}{
		{formats.OpenOptions{}, ": no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give --config NAME (these shapes are those of block_megabyte_b4_5), or --heads (the official defaults for hidden 256 and 128 are 8 and 4 heads: --heads 8,4)"},
		{formats.OpenOptions{Heads: arch.Heads{8, 4}}, ": no config.yaml, and the decoding strategy cannot be read from the weights: the expansion layer gives 4 vectors = block_length 4, which fits both prefix and summation decoding: give --decoding prefix or --decoding summation (or --config NAME)"},
		{formats.OpenOptions{Heads: arch.Heads{3}, Decoding: arch.Summation}, ": inferred architecture is inconsistent: block_decoder: hidden_size 256 from tensor shapes is not a multiple of num_attention_heads 3 from the given head count"},
		{formats.OpenOptions{Config: "block_megabyte_b4_5", Heads: arch.Heads{8}}, ": token_decoder: num_attention_heads 4 from the official fill-in (hidden_size 128 // 32); --heads 8 disagrees (the official code builds 4 heads from this config)"},
		{formats.OpenOptions{Config: "vanilla_31"}, ": holds a Block Transformer; vanilla_31 is the config of a vanilla model"},
	} {
		_, err := source.Open(dir, c.o)
		if err == nil || testfix.ErrText(err) != dir+c.want {
			t.Errorf("%+v:\n got %v\nwant %s%s", c.o, err, dir, c.want)
		}
	}
	m, err := source.Open(dir, formats.OpenOptions{Heads: arch.Heads{8, 4}, Decoding: arch.Summation})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !reflect.DeepEqual(archOnly(m.Config), archOnly(cfg)) {
		t.Fatalf("inferred %+v\nwant %+v", m.Config, cfg)
	}
}
