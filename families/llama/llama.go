// Package llama is the Llama family of decoders, in one place: Llama, Mistral and Qwen2 (and the
// checkpoints built on them, such as SmolLM). A layer is RMSNorm, attention with rotary embeddings
// over the whole head and grouped-query key/value heads (Qwen2: with q/k/v biases), RMSNorm, and a
// SwiGLU MLP; the stack ends with an RMSNorm; the output head may be tied to the token table.
//
// The family registers itself (init): its tensor table and checks with arch, its graph
// with graph, and its Hugging Face layout with formats/source. Importing the package for its side
// effect is all a program does to read, run, quantize and write Llama-family models.
package llama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/graph"
)

// Family is the family's name in our config.json (decoder.family).
const Family = "llama"

// Options are the family's own settings of a stack (arch.DecoderConfig.Options).
type Options struct {
	// QKVBias: the query, key and value Linears have biases (Qwen2); OutBias: the attention
	// output Linear too (Llama's attention_bias sets both).
	QKVBias bool `json:"qkv_bias,omitempty"`
	OutBias bool `json:"out_bias,omitempty"`
	// RopeScale divides the positions before the rotary embedding (rope_scaling linear; 0: 1).
	RopeScale float64 `json:"rope_linear_factor,omitempty"`
	// RopeLlama3 is Llama 3.1's rope scaling (rope_type llama3), nil when not.
	RopeLlama3 *Llama3Rope `json:"rope_llama3,omitempty"`
	// What the source's config.json said that an export writes back.
	ModelType     string `json:"model_type"` // llama, mistral or qwen2
	TiedHead      bool   `json:"tied_head"`  // tie_word_embeddings
	SlidingWindow int    `json:"sliding_window,omitempty"`
}

// check says what is wrong with the settings of a llama3 rope scaling.
func (r *Llama3Rope) check() error {
	switch {
	case !(r.Factor >= 1 && r.Factor <= 1024):
		return fmt.Errorf("rope_scaling.factor %g is out of range (1 to 1024)", r.Factor)
	case !(r.LowFreq > 0 && r.HighFreq > r.LowFreq && r.HighFreq < 1e6):
		return fmt.Errorf("rope_scaling low_freq_factor %g and high_freq_factor %g: want 0 < low < high", r.LowFreq, r.HighFreq)
	case r.OriginalMax < 1 || r.OriginalMax > arch.MaxPositions:
		return fmt.Errorf("rope_scaling.original_max_position_embeddings %d is out of range (1 to %d)", r.OriginalMax, arch.MaxPositions)
	}
	return nil
}

// options reads d's options (validated when the config was).
func options(d *arch.DecoderConfig) Options {
	var o Options
	if err := d.DecodeOptions(&o); err != nil {
		panic(fmt.Sprintf("llama: options of a validated config: %v", err))
	}
	return o
}

// Llama3Rope is rope_scaling of rope_type llama3: the frequencies whose wavelength is past
// OriginalMax / LowFreq are divided by Factor, those under OriginalMax / HighFreq kept, and those
// between interpolated.
type Llama3Rope struct {
	Factor      float64 `json:"factor"`
	LowFreq     float64 `json:"low_freq_factor"`
	HighFreq    float64 `json:"high_freq_factor"`
	OriginalMax int     `json:"original_max_position_embeddings"`
}

// The family's modules, named as in its checkpoints (inside "layers.{i}."). The norms, the token
// table and the head are the shared parts (arch.PartLN1, PartLN2, PartFinalNorm, PartEmbedIn,
// PartEmbedOut).
var (
	partQ    = arch.RegisterPart("q_proj", "self_attn.q_proj", arch.LinearPart, true)
	partK    = arch.RegisterPart("k_proj", "self_attn.k_proj", arch.LinearPart, true)
	partV    = arch.RegisterPart("v_proj", "self_attn.v_proj", arch.LinearPart, true)
	partO    = arch.RegisterPart("o_proj", "self_attn.o_proj", arch.LinearPart, true)
	partGate = arch.RegisterPart("gate_proj", "mlp.gate_proj", arch.LinearPart, true)
	partUp   = arch.RegisterPart("up_proj", "mlp.up_proj", arch.LinearPart, true)
	partDown = arch.RegisterPart("down_proj", "mlp.down_proj", arch.LinearPart, true)
)

func init() {
	arch.RegisterStack(&arch.StackFamily{Name: Family, Title: "Llama-family", Tensors: tensors, Validate: validate,
		TiedHead: func(d *arch.DecoderConfig) bool { return options(d).TiedHead }})
	graph.RegisterStack(Family, graph.StackGraph{Build: stack, Work: work})
	source.Register(Layout{})
}

// tensors is a stack's table: each layer's norm, q, k, v, o, norm, gate, up, down, then the final
// norm. Norms are RMS norms (a gain, no shift).
func tensors(comp string, d *arch.DecoderConfig) []arch.TensorSpec {
	o := options(d)
	hid := []string{comp + "." + arch.KeyHidden}
	ffn := []string{comp + "." + arch.KeyIntermediate}
	qDim := []string{comp + "." + arch.KeyHeads, comp + ".head_dim"}
	kvDim := []string{comp + "." + KeyKVHeads, comp + ".head_dim"}
	D, F, q, kv := d.Hidden, d.Intermediate, d.Heads*d.HeadDim, d.KVHeadCount()*d.HeadDim
	var out []arch.TensorSpec
	add := func(id arch.ID, shape []int, dims [][]string, fed string) {
		out = append(out, arch.NewSpec(id, shape, dims, fed))
	}
	linear := func(i int, p arch.Part, outN, inN int, outK, inK []string, fed string, bias bool) {
		add(arch.ID{Component: comp, Part: p, Layer: i, Param: arch.Weight}, []int{outN, inN}, [][]string{outK, inK}, fed)
		if bias {
			add(arch.ID{Component: comp, Part: p, Layer: i, Param: arch.Bias}, []int{outN}, [][]string{outK}, "")
		}
	}
	for i := 0; i < d.Layers; i++ {
		ln1 := arch.ID{Component: comp, Part: arch.PartLN1, Layer: i, Param: arch.Weight}
		ln2 := arch.ID{Component: comp, Part: arch.PartLN2, Layer: i, Param: arch.Weight}
		add(ln1, []int{D}, [][]string{hid}, "")
		linear(i, partQ, q, D, qDim, hid, arch.Feeder(ln1), o.QKVBias)
		linear(i, partK, kv, D, kvDim, hid, arch.Feeder(ln1), o.QKVBias)
		linear(i, partV, kv, D, kvDim, hid, arch.Feeder(ln1), o.QKVBias)
		linear(i, partO, D, q, hid, qDim, "", o.OutBias)
		add(ln2, []int{D}, [][]string{hid}, "")
		linear(i, partGate, F, D, ffn, hid, arch.Feeder(ln2), false)
		linear(i, partUp, F, D, ffn, hid, arch.Feeder(ln2), false)
		linear(i, partDown, D, F, hid, ffn, "", false)
	}
	add(arch.ID{Component: comp, Part: arch.PartFinalNorm, Layer: arch.NoLayer, Param: arch.Weight}, []int{D}, [][]string{hid}, "")
	return out
}

// validate checks what the common checks of a stack leave to the family.
func validate(name string, d *arch.DecoderConfig) error {
	var o Options
	dec := json.NewDecoder(bytes.NewReader(d.Options))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil && len(d.Options) > 0 {
		return fmt.Errorf("%s: options: %v", name, err)
	}
	switch {
	case architectures[o.ModelType] == "":
		return fmt.Errorf("%s: options.model_type %q is not one of %s", name, o.ModelType, strings.Join(modelTypes(), ", "))
	case o.ModelType == "qwen2" && (!o.QKVBias || o.OutBias):
		return fmt.Errorf("%s: a qwen2 stack has q, k and v biases and no other", name)
	case o.ModelType == "mistral" && (o.QKVBias || o.OutBias):
		return fmt.Errorf("%s: a mistral stack has no biases", name)
	case o.ModelType == "llama" && o.QKVBias != o.OutBias:
		return fmt.Errorf("%s: a llama stack's attention_bias gives q, k, v and o biases together", name)
	case d.Activation != "silu":
		return fmt.Errorf("%s: activation %q is not supported in a Llama-family stack (only silu)", name, d.Activation)
	case d.RotaryDims != d.HeadDim:
		return fmt.Errorf("%s: rotary_dims %d: a Llama-family stack rotates the whole head (%d)", name, d.RotaryDims, d.HeadDim)
	case d.ParallelResidual:
		return fmt.Errorf("%s: a Llama-family stack has no parallel residual", name)
	case o.RopeScale < 0 || (o.RopeScale > 0 && o.RopeScale < 1) || o.RopeScale > 1024:
		return fmt.Errorf("%s: rope_linear_factor %g is out of range (1 to 1024)", name, o.RopeScale)
	case o.RopeLlama3 != nil && o.RopeScale != 0:
		return fmt.Errorf("%s: two rope scalings (linear and llama3)", name)
	case o.RopeLlama3 != nil:
		return o.RopeLlama3.check()
	}
	return nil
}
