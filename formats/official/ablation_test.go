package official_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/arch"
	_ "github.com/btconvert/btconvert/families/roberta" // the ablation fixtures' embedders
	_ "github.com/btconvert/btconvert/families/t5"      // the ablation fixtures' token decoder
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
)

// A roberta_cls projection is a Conv1d over the 3 CLS outputs ([D, He, 3]): ours[o, t*He+i] =
// official[o, i, t].
func TestOpenCLSProjection(t *testing.T) {
	m, f := openWithFile(t, "bt-cls-sum-tiny")
	raw, _ := f.Raw("embedder.projection_layer.weight")
	theirs, _ := safetensors.ToFloat32(safetensors.F32, raw)
	p := m.Tensor(arch.Embedder, "projection_layer.weight")
	ours, err := p.Float32()
	if err != nil || fmt.Sprint(p.Shape) != "[64 96]" {
		t.Fatalf("projection %v %v", p.Shape, err)
	}
	const D, He, K = 64, 32, 3
	for o := 0; o < D; o++ {
		for k := 0; k < K; k++ {
			for i := 0; i < He; i++ {
				if ours[o*K*He+k*He+i] != theirs[(o*He+i)*K+k] {
					t.Fatalf("projection [%d, %d*%d+%d] differs from the official [%d, %d, %d]", o, k, He, i, o, i, k)
				}
			}
		}
	}
}

// A T5 token table is kept once: its other names may be absent (a checkpoint saved without
// duplicates), and where present must be the same tensor, checked for dtype and shape when the
// checkpoint is opened and for every byte when the table is read.
func TestTiedTable(t *testing.T) {
	const lmHead, embedTokens = "token_decoder.lm_head.weight", "token_decoder.decoder.embed_tokens.weight"
	m, err := open(t, testfix.Path("bt-cls-cross-attn-tiny"), formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tensors) != 96 || !slices.Contains(m.Notes, lmHead+" is the same tensor as token_decoder.shared.weight (tied; checked equal when read, kept once)") {
		t.Fatalf("%d tensors, notes %q", len(m.Tensors), m.Notes)
	}
	// Without the copies.
	dir := testfix.Copy(t, "bt-cls-cross-attn-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		return slices.DeleteFunc(w, func(x safetensors.WriteTensor) bool { return x.Name == lmHead || x.Name == embedTokens })
	})
	m, err = open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tensor(arch.TokenDecoder, "embed_in.weight").Raw(); err != nil || len(m.Tensors) != 96 {
		t.Fatalf("%d tensors: %v", len(m.Tensors), err)
	}
	// A copy that differs: refused when the table is read, naming the file and the copy.
	dir = testfix.Copy(t, "bt-cls-cross-attn-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		for i := range w {
			if w[i].Name == lmHead {
				data := w[i].Data
				w[i].Data = func() ([]byte, error) {
					b, err := data()
					b = slices.Clone(b)
					b[7] ^= 1
					return b, err
				}
			}
		}
		return w
	})
	m, err = open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Tensor(arch.TokenDecoder, "embed_in.weight").Raw()
	want := filepath.Join(dir, "model.safetensors") + `: tensor "` + lmHead + `": differs from token_decoder.shared.weight, to which it is tied (the official model holds one tensor under both names)`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	// A copy of another shape: refused when opened.
	dir = testfix.Copy(t, "bt-cls-cross-attn-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		for i := range w {
			if w[i].Name == embedTokens {
				w[i].Shape = []int{128, 128}
			}
		}
		return w
	})
	_, err = open(t, dir, formats.OpenOptions{})
	want = filepath.Join(dir, "model.safetensors") + `: tensor "` + embedTokens + `": F32[128 128], but it is tied to token_decoder.shared.weight, which is F32[256 64]`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// What a RoBERTa or T5 checkpoint may hold or lack: old buffers are noted; a missing tensor, or
// a RoBERTa checkpoint without its config, is refused with the names that resolve it.
func TestOpenAblationErrors(t *testing.T) {
	dir := testfix.Copy(t, "bt-roberta-prefix-tiny")
	testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
		return append(w, safetensors.WriteTensor{Name: "embedder.embeddings.position_ids", DType: safetensors.I64, Shape: []int{1, 514},
			Data: func() ([]byte, error) { return make([]byte, 8*514), nil }})
	})
	m, err := open(t, dir, formats.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Notes, "ignored buffer embedder.embeddings.position_ids") {
		t.Fatalf("notes %q", m.Notes)
	}
	for _, c := range []struct {
		fixture, drop, want string
	}{
		{"bt-cls-cross-attn-tiny", "token_decoder.decoder.block.1.layer.1.EncDecAttention.k.weight",
			`: tensor "token_decoder.decoder.block.1.layer.1.EncDecAttention.k.weight": missing from the checkpoint (the architecture needs it)`},
		{"bt-roberta-prefix-tiny", "embedder.encoder.layer.0.attention.output.LayerNorm.bias",
			`: tensor "embedder.encoder.layer.0.attention.output.LayerNorm.bias": missing from the checkpoint (the architecture needs it)`},
	} {
		dir := testfix.Copy(t, c.fixture)
		testfix.Rewrite(t, dir, func(w []safetensors.WriteTensor) []safetensors.WriteTensor {
			return slices.DeleteFunc(w, func(x safetensors.WriteTensor) bool { return x.Name == c.drop })
		})
		if _, err := open(t, dir, formats.OpenOptions{}); err == nil || testfix.ErrText(err) != dir+c.want {
			t.Errorf("got  %v\nwant %s%s", err, dir, c.want)
		}
	}
	dir = testfix.Copy(t, "bt-cls-sum-tiny")
	os.Remove(filepath.Join(dir, "config.yaml"))
	_, err = open(t, dir, formats.OpenOptions{Heads: arch.Heads{2}})
	want := ": no config.yaml beside the weights, and a RoBERTa embedder's or T5 token decoder's architecture (heads, token ids, positions) cannot be read from them: give --config NAME (an official config, e.g. block_main_b4_85) or --config PATH.yaml"
	if err == nil || testfix.ErrText(err) != dir+want {
		t.Fatalf("got  %v\nwant %s%s", err, dir, want)
	}
	// The exported YAML states every key of each part: it names the classes and bases.
	out := testfix.Export(t, testfix.Open(t, testfix.Path("bt-cls-cross-attn-tiny")), formats.ExportOptions{Name: "x"})
	y, _ := os.ReadFile(filepath.Join(out, "config.yaml"))
	for _, s := range []string{"cls: roberta_cls", "model_name_or_path: roberta-base", "n_cls_tokens: 3", "cls: t5", "model_name_or_path: t5-small",
		"num_decoder_layers: 2", "decoding_strategy: cross_attention", "relative_attention_max_distance: 128", "layer_norm_epsilon: 1.0e-06"} {
		if !strings.Contains(string(y), s) {
			t.Errorf("exported config.yaml lacks %q:\n%s", s, y)
		}
	}
}
