// Package t5 is the T5 token decoder of the official ablation config cls_cross_attn (official
// class t5, decoding cross_attention), in one place: the decoder stack of an HF T5 model without its
// encoder. Its self-attention sees the block's tokens so far (with T5's relative position bias),
// its cross-attention the r expanded block vectors; RMS norms, ReLU feed-forward, no biases, and an
// output head tied to the token embeddings, applied after rescaling by d_model^-0.5.
//
// The package registers itself (init): its config and YAML resolution with arch, its graph with
// graph, its module names and config section with the official layout. Importing it for that side
// effect is all a program does to read, run, quantize and write models with a T5 token decoder.
package t5

import (
	"fmt"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/graph"
)

// Key is the stack's key in our config.json (token_decoder.t5).
const Key = "t5"

func init() {
	arch.RegisterTokenStack(Key, func() arch.TokenStack { return new(Config) })
	arch.RegisterTokenStackClass(arch.ClassT5, &arch.TokenStackClass{CheckDecoding: checkDecoding, Resolve: resolveSection})
	graph.RegisterTokenDecoder(arch.ClassT5, graph.TokenDecoderGraph{Teacher: teacher, Start: start, Work: work})
	official.RegisterClass(arch.ClassT5, officialClass)
}

// Config is a T5 token decoder, fully explicit.
type Config struct {
	Layers       int     `json:"num_layers"` // of the decoder stack (num_decoder_layers)
	Hidden       int     `json:"d_model"`
	Heads        int     `json:"num_heads"`
	HeadDim      int     `json:"d_kv"` // heads x d_kv need not be d_model
	Intermediate int     `json:"d_ff"`
	Buckets      int     `json:"relative_attention_num_buckets"`
	MaxDistance  int     `json:"relative_attention_max_distance"`
	LayerNormEps float64 `json:"layer_norm_epsilon"`
	Activation   string  `json:"activation"` // "relu" (feed_forward_proj relu, not gated), the only one supported
	// BOSTokenID starts every block's input; EOSTokenID ends a generation. The official token
	// decoder takes the EOS id for the BOS id when the config has none (t5-small has none: 1).
	BOSTokenID int `json:"bos_token_id"`
	EOSTokenID int `json:"eos_token_id"`
}

var _ arch.TokenStack = (*Config)(nil)

// Inner is the width of the attention's projections, heads x d_kv.
func (t *Config) Inner() int { return t.Heads * t.HeadDim }

// Key is the stack's key in our config.json.
func (t *Config) Key() string { return Key }

// Class is the official token decoder class.
func (t *Config) Class() string { return arch.ClassT5 }

// Decoding is the one decoding a T5 token decoder runs: every layer attends to the r vectors.
func (t *Config) Decoding() arch.Decoding { return arch.CrossAttention }

// Width is d_model.
func (t *Config) Width() int { return t.Hidden }

// WidthKey is d_model's key.
func (t *Config) WidthKey() string { return arch.KeyDModel }

// TableIsHead is true: the official T5 token decoder's output head is its token embeddings.
func (t *Config) TableIsHead() bool { return true }

// Check checks the stack within c: its sizes and its ids against c's vocabulary.
func (t *Config) Check(c *arch.Config) error {
	V := c.VocabSize
	switch {
	case t.Layers < 1, t.Hidden < 1, t.Heads < 1, t.HeadDim < 1, t.Intermediate < 1:
		return fmt.Errorf("token_decoder: num_layers, d_model, num_heads, d_kv and d_ff must be positive")
	case t.Layers > arch.MaxLayers || t.Hidden > arch.MaxHidden || t.Heads > arch.MaxHeads || t.HeadDim > arch.MaxHidden || t.Inner() > arch.MaxHidden ||
		t.Intermediate > arch.MaxFFN || t.Buckets > arch.MaxHidden || t.MaxDistance > arch.MaxPositions:
		return fmt.Errorf("token_decoder: a size is out of range (num_layers at most %d, d_model, d_kv and num_heads x d_kv %d, num_heads %d, d_ff %d, buckets %d, max distance %d)",
			arch.MaxLayers, arch.MaxHidden, arch.MaxHeads, arch.MaxFFN, arch.MaxHidden, arch.MaxPositions)
	case t.Buckets < 2 || t.MaxDistance <= t.Buckets/2:
		// The bucket of a distance past num_buckets/2 divides by log(max_distance / (num_buckets/2)).
		return fmt.Errorf("token_decoder: relative_attention_num_buckets %d must be at least 2 and relative_attention_max_distance %d more than half of it",
			t.Buckets, t.MaxDistance)
	case t.Activation != "relu":
		return fmt.Errorf("token_decoder: activation %q is not supported (only relu)", t.Activation)
	case t.LayerNormEps <= 0:
		return fmt.Errorf("token_decoder: layer_norm_epsilon must be positive")
	case t.BOSTokenID < 0 || t.BOSTokenID >= V || t.EOSTokenID < 0 || t.EOSTokenID >= V:
		return fmt.Errorf("token_decoder: bos_token_id %d and eos_token_id %d must be ids of the vocabulary (0 to %d)", t.BOSTokenID, t.EOSTokenID, V-1)
	}
	return nil
}

// Agree checks that c's ids are the stack's.
func (t *Config) Agree(c *arch.Config) error {
	if c.BOSTokenID != t.BOSTokenID || c.EOSTokenID != t.EOSTokenID {
		return fmt.Errorf("bos_token_id %d and eos_token_id %d disagree with the T5 token decoder's %d and %d", c.BOSTokenID, c.EOSTokenID, t.BOSTokenID, t.EOSTokenID)
	}
	return nil
}

// Describe is the stack in Config.Describe's line.
func (t *Config) Describe() string {
	return fmt.Sprintf("T5 %d layers d=%d (%d heads x %d, FFN %d)", t.Layers, t.Hidden, t.Heads, t.HeadDim, t.Intermediate)
}

// Shape is the stack's sizes for the summary.
func (t *Config) Shape() arch.DecoderConfig {
	return arch.DecoderConfig{Hidden: t.Hidden, Heads: t.Heads, HeadDim: t.HeadDim, Intermediate: t.Intermediate, Layers: t.Layers}
}

// Tensors are the stack's: its token table (also its output head), the relative position bias
// table, then each layer in the official order (self-attention q, k, v, o and its norm;
// cross-attention q, k, v, o and its norm; feed-forward up, down and its norm: pre-norm layers
// whose norms are listed after their block, RMS norms without a shift, no biases), then the final
// norm.
func (t *Config) Tensors(c *arch.Config) []arch.TensorSpec {
	const comp = arch.TokenDecoder
	D, F, I := t.Hidden, t.Intermediate, t.Inner()
	hid, ffn, inner := []string{comp + "." + arch.KeyDModel}, []string{comp + "." + arch.KeyDFF}, []string{comp + "." + arch.KeyT5Heads, comp + "." + arch.KeyDKV}
	var out []arch.TensorSpec
	at := func(p arch.Part, layer int) arch.ID {
		return arch.ID{Component: comp, Part: p, Layer: layer, Param: arch.Weight}
	}
	add := func(p arch.Part, layer int, shape []int, dims [][]string, fed string) {
		out = append(out, arch.NewSpec(at(p, layer), shape, dims, fed))
	}
	add(arch.PartEmbedIn, arch.NoLayer, []int{c.VocabSize, D}, [][]string{{arch.KeyVocab}, hid}, "")
	add(arch.PartRelBias, arch.NoLayer, []int{t.Buckets, t.Heads}, [][]string{{comp + "." + arch.KeyBuckets}, {comp + "." + arch.KeyT5Heads}}, "")
	for i := 0; i < t.Layers; i++ {
		fedBy := func(norm arch.Part) string { return arch.Feeder(at(norm, i)) }
		for _, p := range []arch.Part{arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV} {
			add(p, i, []int{I, D}, [][]string{inner, hid}, fedBy(arch.PartLN1))
		}
		add(arch.PartAttnOut, i, []int{D, I}, [][]string{hid, inner}, "")
		add(arch.PartLN1, i, []int{D}, [][]string{hid}, "")
		add(arch.PartCrossQ, i, []int{I, D}, [][]string{inner, hid}, fedBy(arch.PartCrossNorm))
		add(arch.PartCrossK, i, []int{I, D}, [][]string{inner, hid}, "") // they read the expanded vectors
		add(arch.PartCrossV, i, []int{I, D}, [][]string{inner, hid}, "")
		add(arch.PartCrossOut, i, []int{D, I}, [][]string{hid, inner}, "")
		add(arch.PartCrossNorm, i, []int{D}, [][]string{hid}, "")
		add(arch.PartMLPUp, i, []int{F, D}, [][]string{ffn, hid}, fedBy(arch.PartLN2))
		add(arch.PartMLPDown, i, []int{D, F}, [][]string{hid, ffn}, "")
		add(arch.PartLN2, i, []int{D}, [][]string{hid}, "")
	}
	add(arch.PartFinalNorm, arch.NoLayer, []int{D}, [][]string{hid}, "")
	return out
}
