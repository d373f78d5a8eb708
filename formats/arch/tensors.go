package arch

import (
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// Role is what a tensor is to the model; readers, writers, initialisation, uptraining, the
// quantizer and the graphs all decide by it, never by a name suffix of their own.
type Role int

// The roles.
const (
	RoleEmbedding  Role = iota // [V, D] lookup table
	RoleLinear                 // [out, in] weight of a Linear (PyTorch layout)
	RoleBias                   // [out] bias of a Linear
	RoleNormWeight             // LayerNorm gain
	RoleNormBias               // LayerNorm shift
	RoleQuantPart              // a stored part of a quantized tensor (codes, scales, minimums)
)

// Names of a GPT-NeoX layer's parts, inside "layers.{i}.". A Linear NAME has NAME.weight and
// NAME.bias; a LayerNorm NAME has NAME.weight and NAME.bias.
const (
	InputNorm = "input_layernorm"
	PostNorm  = "post_attention_layernorm"
	QKV       = "attention.query_key_value"
	AttnOut   = "attention.dense"
	MLPUp     = "mlp.dense_h_to_4h"
	MLPDown   = "mlp.dense_4h_to_h"
	FinalNorm = "final_layer_norm"
	EmbedIn   = "embed_in"   // token embeddings of a stack
	EmbedOut  = "embed_out"  // output head (no bias)
	Embedding = "embeddings" // the block embedder's token table
	Project   = "projection_layer"
	Expand    = "expansion_layer"
)

// layerPart is one Linear or LayerNorm of a GPT-NeoX layer.
type layerPart struct {
	name     string
	norm     bool   // a LayerNorm (else a Linear)
	fedBy    string // Linear: the LayerNorm its input comes from ("" if none)
	out, in  dim    // Linear: [out, in]; LayerNorm: out
	outScale int    // out = outScale x out dim (query_key_value is 3D)
}

type dim int

const (
	dimHidden dim = iota
	dimFFN
)

// layerParts are a GPT-NeoX layer's parts, in the order of the checkpoint and our files.
var layerParts = []layerPart{
	{name: InputNorm, norm: true, out: dimHidden, outScale: 1},
	{name: PostNorm, norm: true, out: dimHidden, outScale: 1},
	{name: QKV, fedBy: InputNorm, out: dimHidden, in: dimHidden, outScale: 3},
	{name: AttnOut, out: dimHidden, in: dimHidden, outScale: 1},
	{name: MLPUp, fedBy: PostNorm, out: dimFFN, in: dimHidden, outScale: 1},
	{name: MLPDown, out: dimHidden, in: dimFFN, outScale: 1},
}

// TensorSpec is one tensor a model of a given config has: where it lives, its shape, the config
// keys that fix each dimension (for messages: "block_decoder.intermediate_size"), its role, and
// for a Linear fed by a LayerNorm, that LayerNorm ("component/name", without .weight / .bias).
type TensorSpec struct {
	Component, Name string
	Shape           []int
	Dims            [][]string
	Role            Role
	FedBy           string
	// DType is the stored dtype where it is fixed (quantized parts); "" means any float type.
	DType safetensors.DType
}

// Key is "component/name".
func (s TensorSpec) Key() string { return s.Component + "/" + s.Name }

// NumElements is the product of the shape.
func (s TensorSpec) NumElements() int64 {
	n := int64(1)
	for _, d := range s.Shape {
		n *= int64(d)
	}
	return n
}

func stackSpecs(comp string, d *DecoderConfig) []TensorSpec {
	size := map[dim]int{dimHidden: d.Hidden, dimFFN: d.Intermediate}
	key := map[dim][]string{dimHidden: {comp + "." + KeyHidden}, dimFFN: {comp + "." + KeyIntermediate}}
	var out []TensorSpec
	add := func(name string, shape []int, dims [][]string, role Role, fedBy string) {
		out = append(out, TensorSpec{Component: comp, Name: name, Shape: shape, Dims: dims, Role: role, FedBy: fedBy})
	}
	for i := 0; i < d.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		for _, lp := range layerParts {
			o := lp.outScale * size[lp.out]
			if lp.norm {
				add(p+lp.name+".weight", []int{o}, [][]string{key[lp.out]}, RoleNormWeight, "")
				add(p+lp.name+".bias", []int{o}, [][]string{key[lp.out]}, RoleNormBias, "")
				continue
			}
			fed := ""
			if lp.fedBy != "" {
				fed = comp + "/" + p + lp.fedBy
			}
			add(p+lp.name+".weight", []int{o, size[lp.in]}, [][]string{key[lp.out], key[lp.in]}, RoleLinear, fed)
			add(p+lp.name+".bias", []int{o}, [][]string{key[lp.out]}, RoleBias, "")
		}
	}
	add(FinalNorm+".weight", []int{d.Hidden}, [][]string{key[dimHidden]}, RoleNormWeight, "")
	add(FinalNorm+".bias", []int{d.Hidden}, [][]string{key[dimHidden]}, RoleNormBias, "")
	return out
}

// Tensors is the canonical tensor list of a model of config c (docs/FORMAT.md), with logical
// shapes: a quantized tensor is listed as the weight it stands for (see StoredTensors).
func Tensors(c *Config) []TensorSpec {
	V := c.VocabSize
	table := func(comp, name string, hidden int, role Role, fedBy string) TensorSpec {
		return TensorSpec{Component: comp, Name: name, Shape: []int{V, hidden},
			Dims: [][]string{{KeyVocab}, {comp + "." + KeyHidden}}, Role: role, FedBy: fedBy}
	}
	if !c.IsBlock() {
		d := c.Decoder
		out := []TensorSpec{table(Decoder, EmbedIn+".weight", d.Hidden, RoleEmbedding, "")}
		out = append(out, stackSpecs(Decoder, d)...)
		return append(out, table(Decoder, EmbedOut+".weight", d.Hidden, RoleLinear, Decoder+"/"+FinalNorm))
	}
	D, Dt, L := c.BlockDecoder.Hidden, c.TokenDecoder.Hidden, c.BlockLength
	bdHid, embHid := []string{BlockDecoder + "." + KeyHidden}, []string{"embedder." + KeyHidden}
	out := []TensorSpec{{Component: Embedder, Name: Embedding + ".weight", Shape: []int{V, c.Embedder.Dim},
		Dims: [][]string{{KeyVocab}, embHid}, Role: RoleEmbedding}}
	if c.Embedder.Type == ProjectionLayer {
		out = append(out,
			TensorSpec{Component: Embedder, Name: Project + ".weight", Shape: []int{D, L * c.Embedder.Dim},
				Dims: [][]string{bdHid, {"block_length", "embedder." + KeyHidden}}, Role: RoleLinear},
			TensorSpec{Component: Embedder, Name: Project + ".bias", Shape: []int{D}, Dims: [][]string{bdHid}, Role: RoleBias})
	}
	out = append(out, stackSpecs(BlockDecoder, c.BlockDecoder)...)
	r := c.TokenDecoder.ExpansionRatio
	exp := []string{"expansion_ratio", TokenDecoder + "." + KeyHidden}
	out = append(out,
		// The expansion layer reads the block decoder's output: its final LayerNorm feeds it.
		TensorSpec{Component: TokenDecoder, Name: Expand + ".weight", Shape: []int{r * Dt, D}, Dims: [][]string{exp, bdHid},
			Role: RoleLinear, FedBy: BlockDecoder + "/" + FinalNorm},
		TensorSpec{Component: TokenDecoder, Name: Expand + ".bias", Shape: []int{r * Dt}, Dims: [][]string{exp}, Role: RoleBias},
		table(TokenDecoder, EmbedIn+".weight", Dt, RoleEmbedding, ""))
	out = append(out, stackSpecs(TokenDecoder, &c.TokenDecoder.DecoderConfig)...)
	return append(out, table(TokenDecoder, EmbedOut+".weight", Dt, RoleLinear, TokenDecoder+"/"+FinalNorm))
}

// StoredTensors is Tensors with every quantized tensor replaced by its stored parts.
func StoredTensors(c *Config) []TensorSpec {
	var out []TensorSpec
	for _, s := range Tensors(c) {
		if q, ok := c.Quantization[s.Key()]; ok {
			out = append(out, q.Parts(s.Component, s.Name)...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// Find returns the spec of component/name, or nil.
func Find(c *Config, component, name string) *TensorSpec {
	for _, s := range Tensors(c) {
		if s.Component == component && s.Name == name {
			return &s
		}
	}
	return nil
}

// ParamCount is the number of weights of a config.
func ParamCount(c *Config) int64 {
	var n int64
	for _, s := range Tensors(c) {
		n += s.NumElements()
	}
	return n
}

// Provenance says where each config value came from, by qualified key
// ("token_decoder.intermediate_size", "block_length") -> "intermediate_size 512 from config.yaml".
type Provenance map[string]string

// ExplainShape says which settings fix the dimension where got first differs from s.Shape ("" if
// it cannot tell).
func (p Provenance) ExplainShape(s TensorSpec, got []int) string {
	if p == nil || len(got) != len(s.Shape) || len(s.Dims) != len(s.Shape) {
		return ""
	}
	for i := range got {
		if got[i] == s.Shape[i] {
			continue
		}
		var parts []string
		for _, k := range s.Dims[i] {
			if e := p[k]; e != "" {
				parts = append(parts, e)
			}
		}
		return strings.Join(parts, " x ")
	}
	return ""
}
