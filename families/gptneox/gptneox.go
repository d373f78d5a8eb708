// Package gptneox is the GPT-NeoX family of decoders, in one place: the decoders of the official
// Block Transformer code and of EleutherAI's Pythia models. A layer is a LayerNorm, attention with
// one fused query/key/value Linear (interleaved per head) and rotary embeddings over the leading
// rotary_pct of each head, and a GELU MLP behind its own LayerNorm, the two branches added to the
// residual in parallel (use_parallel_residual) or in turn; the stack ends with a LayerNorm, and the
// output head is its own.
//
// The family registers itself (init): its tensor table and checks, and its HF config with the
// Pythia base models the official YAMLs name (the official decoder class), with arch; its graph
// with graph; its Hugging Face layout with formats/source. Importing the package for its side effect is all a program does to read, run, quantize and write
// GPT-NeoX decoders.
package gptneox

import (
	"fmt"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/graph"
)

func init() {
	arch.RegisterStack(&arch.StackFamily{Name: arch.FamilyNeoX, Title: "GPT-NeoX", Tensors: tensors, Validate: validate})
	arch.RegisterDecoderClass(decoderClass)
	graph.RegisterStack(arch.FamilyNeoX, graph.StackGraph{Build: stack, Work: work})
	source.Register(Layout{})
}

// validate is what a GPT-NeoX stack checks beyond the common checks.
func validate(name string, d *arch.DecoderConfig) error {
	switch {
	case d.Activation != "gelu": // HF's "gelu" is the exact erf form
		return fmt.Errorf("%s: activation %q is not supported (only exact gelu)", name, d.Activation)
	case d.KVHeads != 0 || len(d.Options) != 0:
		return fmt.Errorf("%s: a GPT-NeoX stack has no num_kv_heads or options", name)
	}
	return nil
}

// tensors is a stack's table, in the order of the checkpoints and our files: each layer's two
// LayerNorms, query/key/value, attention output, MLP up and down (each with a bias), then the
// final LayerNorm.
func tensors(comp string, d *arch.DecoderConfig) []arch.TensorSpec {
	hid := []string{comp + "." + arch.KeyHidden}
	ffn := []string{comp + "." + arch.KeyIntermediate}
	D, F := d.Hidden, d.Intermediate
	var out []arch.TensorSpec
	at := func(p arch.Part, layer int, param arch.Param) arch.ID {
		return arch.ID{Component: comp, Part: p, Layer: layer, Param: param}
	}
	norm := func(p arch.Part, layer int) {
		out = append(out, arch.NewSpec(at(p, layer, arch.Weight), []int{D}, [][]string{hid}, ""),
			arch.NewSpec(at(p, layer, arch.Bias), []int{D}, [][]string{hid}, ""))
	}
	linear := func(p arch.Part, layer, outN, inN int, outK, inK []string, fedBy arch.Part) {
		fed := ""
		if fedBy != 0 {
			fed = arch.Feeder(at(fedBy, layer, arch.Weight))
		}
		out = append(out, arch.NewSpec(at(p, layer, arch.Weight), []int{outN, inN}, [][]string{outK, inK}, fed),
			arch.NewSpec(at(p, layer, arch.Bias), []int{outN}, [][]string{outK}, ""))
	}
	for i := 0; i < d.Layers; i++ {
		norm(arch.PartLN1, i)
		norm(arch.PartLN2, i)
		linear(arch.PartAttnQKV, i, 3*D, D, hid, hid, arch.PartLN1) // q, k, v interleaved per head
		linear(arch.PartAttnOut, i, D, D, hid, hid, 0)
		linear(arch.PartMLPUp, i, F, D, ffn, hid, arch.PartLN2)
		linear(arch.PartMLPDown, i, D, F, hid, ffn, 0)
	}
	norm(arch.PartFinalNorm, arch.NoLayer)
	return out
}
