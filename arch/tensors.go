package arch

import (
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/formats/safetensors"
)

// Role is what a tensor is to the model, coarsely: how it is initialised, whether it may be
// quantized. Part (with Layer and Param) says which tensor it is.
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

// Names of the modules of a model, as they appear in tensor names: inside "layers.{i}." for a
// layer's parts. A Linear or LayerNorm NAME has NAME.weight and NAME.bias; an Embedding
// NAME.weight. The table (Part.Module, ID.Name) builds every tensor name from them.
const (
	InputNorm = "input_layernorm"
	PostNorm  = "post_attention_layernorm"
	QKV       = "attention.query_key_value"
	AttnOut   = "attention.dense"
	MLPUp     = "mlp.dense_h_to_4h"
	MLPDown   = "mlp.dense_4h_to_h"
	FinalNorm = "final_layer_norm"
	EmbedIn   = "embed_in"   // token embeddings of a stack (a T5 one's are its output head too)
	EmbedOut  = "embed_out"  // output head (no bias)
	Embedding = "embeddings" // the block embedder's token table
	Project   = "projection_layer"
	Expand    = "expansion_layer"

	// A RoBERTa encoder's: position and token type tables, the LayerNorm of its embeddings, and in
	// each layer separate query, key and value Linears and a LayerNorm after the attention block
	// and after the MLP block (its attention output and MLP are AttnOut, MLPUp and MLPDown).
	Positions  = "position_embeddings"
	TokenTypes = "token_type_embeddings"
	EmbedNorm  = "embeddings_layernorm"
	AttnQuery  = "attention.query"
	AttnKey    = "attention.key"
	AttnValue  = "attention.value"
	AttnNorm   = "attention_layernorm"
	MLPNorm    = "mlp_layernorm"

	// A T5 decoder's: the relative position bias table (one for every layer) and in each layer the
	// cross-attention and its norm (its self-attention is AttnQuery, AttnKey, AttnValue and
	// AttnOut after InputNorm, its feed-forward MLPUp and MLPDown after PostNorm; its norms are
	// RMS norms, weight only).
	RelBias    = "relative_attention_bias"
	CrossNorm  = "cross_attention_layernorm"
	CrossQuery = "cross_attention.query"
	CrossKey   = "cross_attention.key"
	CrossValue = "cross_attention.value"
	CrossOut   = "cross_attention.dense"
)

// Part is which module of a model a tensor belongs to, as fine as the parts of a layer. With the
// component, the layer index and Param it identifies the tensor (ID).
type Part int

// The parts. The zero Part is none: a spec always has one.
const (
	_              Part = iota
	PartEmbeddings      // the block embedder's token table
	PartProjection      // the projection_layer embedder's Linear
	PartEmbedIn         // a stack's token embeddings
	PartLN1             // input_layernorm: a layer's LayerNorm before attention
	PartLN2             // post_attention_layernorm: a layer's LayerNorm before the MLP
	PartAttnQKV         // a layer's query/key/value Linear
	PartAttnOut         // a layer's attention output Linear
	PartMLPUp           // a layer's MLP Linear into the FFN width
	PartMLPDown         // a layer's MLP Linear back to the hidden width
	PartFinalNorm       // a stack's final LayerNorm
	PartExpansion       // the token decoder's Linear from the block decoder's output
	PartEmbedOut        // the output head
	PartPositions       // a RoBERTa encoder's position table
	PartTokenTypes      // a RoBERTa encoder's token type table
	PartEmbedNorm       // a RoBERTa encoder's LayerNorm of its embeddings
	PartAttnQ           // a layer's query Linear (RoBERTa, T5)
	PartAttnK           // a layer's key Linear
	PartAttnV           // a layer's value Linear
	PartAttnNorm        // a RoBERTa layer's LayerNorm after the attention block
	PartMLPNorm         // a RoBERTa layer's LayerNorm after the MLP block
	PartRelBias         // a T5 decoder's relative position bias table [buckets, heads]
	PartCrossNorm       // a T5 layer's norm before the cross-attention
	PartCrossQ          // a T5 layer's cross-attention query Linear
	PartCrossK          // its key Linear (over the expanded block vectors)
	PartCrossV          // its value Linear
	PartCrossOut        // its output Linear
)

type kind int

const (
	kindEmbedding kind = iota
	kindLinear
	kindNorm
)

type partEntry struct {
	short, module string
	kind          kind
	inLayer       bool
}

// partInfo describes every Part: the built-in ones, then those families register (RegisterPart).
var partInfo = []partEntry{
	0:              {},
	PartEmbeddings: {"embeddings", Embedding, kindEmbedding, false},
	PartProjection: {"projection", Project, kindLinear, false},
	PartEmbedIn:    {"embed_in", EmbedIn, kindEmbedding, false},
	PartLN1:        {"ln1", InputNorm, kindNorm, true},
	PartLN2:        {"ln2", PostNorm, kindNorm, true},
	PartAttnQKV:    {"attn_qkv", QKV, kindLinear, true},
	PartAttnOut:    {"attn_out", AttnOut, kindLinear, true},
	PartMLPUp:      {"mlp_up", MLPUp, kindLinear, true},
	PartMLPDown:    {"mlp_down", MLPDown, kindLinear, true},
	PartFinalNorm:  {"final_norm", FinalNorm, kindNorm, false},
	PartExpansion:  {"expansion", Expand, kindLinear, false},
	PartEmbedOut:   {"embed_out", EmbedOut, kindLinear, false},
	PartPositions:  {"positions", Positions, kindEmbedding, false},
	PartTokenTypes: {"token_types", TokenTypes, kindEmbedding, false},
	PartEmbedNorm:  {"embed_norm", EmbedNorm, kindNorm, false},
	PartAttnQ:      {"attn_q", AttnQuery, kindLinear, true},
	PartAttnK:      {"attn_k", AttnKey, kindLinear, true},
	PartAttnV:      {"attn_v", AttnValue, kindLinear, true},
	PartAttnNorm:   {"attn_norm", AttnNorm, kindNorm, true},
	PartMLPNorm:    {"mlp_norm", MLPNorm, kindNorm, true},
	PartRelBias:    {"rel_bias", RelBias, kindEmbedding, false},
	PartCrossNorm:  {"cross_norm", CrossNorm, kindNorm, true},
	PartCrossQ:     {"cross_q", CrossQuery, kindLinear, true},
	PartCrossK:     {"cross_k", CrossKey, kindLinear, true},
	PartCrossV:     {"cross_v", CrossValue, kindLinear, true},
	PartCrossOut:   {"cross_out", CrossOut, kindLinear, true},
}

func (p Part) valid() bool { return p > 0 && int(p) < len(partInfo) }

// String is the part's short name ("attn_qkv", "ln1").
func (p Part) String() string {
	if !p.valid() {
		return fmt.Sprintf("Part(%d)", int(p))
	}
	return partInfo[p].short
}

// Module is the part's module name in tensor names ("attention.query_key_value").
func (p Part) Module() string {
	if !p.valid() {
		return ""
	}
	return partInfo[p].module
}

// InLayer reports whether the part is one of a layer's (and so has a layer index).
func (p Part) InLayer() bool { return p.valid() && partInfo[p].inLayer }

// Param is which parameter of a module a tensor is.
type Param int

// The parameters.
const (
	Weight Param = iota
	Bias
)

func (p Param) String() string {
	if p == Bias {
		return "bias"
	}
	return "weight"
}

// NoLayer is the layer index of a tensor outside the layers.
const NoLayer = -1

// ID is the identity of a tensor of a model: its component, part, layer (NoLayer outside the
// layers) and parameter. Every tensor name comes from an ID (Name); nothing parses names back.
type ID struct {
	Component string
	Part      Part
	Layer     int
	Param     Param
}

// Module is the tensor's module inside its component, "layers.{i}.MODULE" for a layer's part
// ("layers.0.input_layernorm"), MODULE for the others.
func (id ID) Module() string {
	if id.Layer >= 0 {
		return fmt.Sprintf("layers.%d.%s", id.Layer, id.Part.Module())
	}
	return id.Part.Module()
}

// Name is the tensor's name inside its component ("layers.0.attention.dense.bias").
func (id ID) Name() string { return id.Module() + "." + id.Param.String() }

// Key is "component/name".
func (id ID) Key() string { return id.Component + "/" + id.Name() }

// String is the identity in words ("block_decoder attn_qkv.weight of layer 1").
func (id ID) String() string {
	s := fmt.Sprintf("%s %s.%s", id.Component, id.Part, id.Param)
	if id.Layer >= 0 {
		s += fmt.Sprintf(" of layer %d", id.Layer)
	}
	return s
}

// role is the coarse role of the tensor id names.
func (id ID) role() Role {
	if !id.Part.valid() {
		return RoleLinear
	}
	switch k := partInfo[id.Part].kind; {
	case k == kindEmbedding:
		return RoleEmbedding
	case k == kindNorm && id.Param == Bias:
		return RoleNormBias
	case k == kindNorm:
		return RoleNormWeight
	case id.Param == Bias:
		return RoleBias
	}
	return RoleLinear
}

// TensorSpec is one tensor a model of a given config has: what it is (component, part, layer,
// parameter; its name follows from them), its shape, the config keys that fix each dimension
// (for messages: "block_decoder.intermediate_size"), its coarse role, and for a Linear fed by a
// LayerNorm, that LayerNorm ("component/module", without .weight / .bias).
//
// The stored parts of a quantized tensor (StoredTensors) share its identity: their Role is
// RoleQuantPart and their Name adds the part's suffix.
type TensorSpec struct {
	Component, Name string
	Part            Part
	Layer           int // NoLayer outside the layers
	Param           Param
	Shape           []int
	Dims            [][]string
	Role            Role
	FedBy           string
	// DType is the stored dtype where it is fixed (quantized parts); "" means any float type.
	DType safetensors.DType
}

// ID is the identity of the tensor.
func (s TensorSpec) ID() ID {
	return ID{Component: s.Component, Part: s.Part, Layer: s.Layer, Param: s.Param}
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

// newSpec is the spec of the tensor id, named by id.
func newSpec(id ID, shape []int, dims [][]string, fedBy string) TensorSpec {
	return TensorSpec{Component: id.Component, Name: id.Name(), Part: id.Part, Layer: id.Layer, Param: id.Param,
		Shape: shape, Dims: dims, Role: id.role(), FedBy: fedBy}
}

// outside is the ID of a tensor outside the layers.
func outside(comp string, p Part, param Param) ID {
	return ID{Component: comp, Part: p, Layer: NoLayer, Param: param}
}

// feeder is FedBy for a Linear whose input comes from the LayerNorm ln.
func feeder(ln ID) string { return ln.Component + "/" + ln.Module() }

func stackSpecs(comp string, d *DecoderConfig) []TensorSpec {
	f := Family(d.FamilyOf())
	if f == nil { // an unknown family (Validate refuses it): no tensors, and the readers say what is missing
		return nil
	}
	return f.Tensors(comp, d)
}

// Tensors is the canonical tensor list of a model of config c (docs/FORMAT.md), with logical
// shapes: a quantized tensor is listed as the weight it stands for (see StoredTensors).
func Tensors(c *Config) []TensorSpec {
	V := c.VocabSize
	// table is a [V, hidden] table: a stack's embed_in, or its output head fed by its final LayerNorm.
	table := func(comp string, p Part, hidden int) TensorSpec {
		fed := ""
		if p == PartEmbedOut {
			fed = feeder(outside(comp, PartFinalNorm, Weight))
		}
		return newSpec(outside(comp, p, Weight), []int{V, hidden}, [][]string{{KeyVocab}, {comp + "." + KeyHidden}}, fed)
	}
	if !c.IsBlock() {
		d := c.Decoder
		out := []TensorSpec{table(Decoder, PartEmbedIn, d.Hidden)}
		out = append(out, stackSpecs(Decoder, d)...)
		if d.Tied() {
			return out
		}
		return append(out, table(Decoder, PartEmbedOut, d.Hidden))
	}
	// A Block Transformer: the embedder's tensors (its encoder's, or the lookup table), its
	// projection, the block decoder stack, the expansion layer, then the token decoder's tensors.
	D, Dt, L := c.BlockDecoder.Hidden, c.TokenDecoder.Width(), c.BlockLength
	bdHid := []string{BlockDecoder + "." + KeyHidden}
	var emb EmbedderTable // the encoder's, or the lookup embedder's (none in a program built without it: Validate says so)
	if enc := c.Embedder.Encoder; enc != nil {
		emb = enc.Table(c)
	} else if l, err := lookupClass(Embedder); err == nil {
		emb = l.Table(c)
	}
	out := emb.Specs
	if c.Embedder.Type == ProjectionLayer {
		out = append(out,
			newSpec(outside(Embedder, PartProjection, Weight), []int{D, c.Embedder.Vectors(L) * c.Embedder.Dim}, [][]string{bdHid, {emb.VectorsKey, Embedder + "." + KeyHidden}}, emb.ProjFedBy),
			newSpec(outside(Embedder, PartProjection, Bias), []int{D}, [][]string{bdHid}, ""))
	}
	out = append(out, stackSpecs(BlockDecoder, c.BlockDecoder)...)
	r := c.TokenDecoder.ExpansionRatio
	exp := []string{"expansion_ratio", TokenDecoder + "." + c.TokenDecoder.WidthKey()}
	out = append(out,
		// The expansion layer reads the block decoder's output: its final norm feeds it.
		newSpec(outside(TokenDecoder, PartExpansion, Weight), []int{r * Dt, D}, [][]string{exp, bdHid}, feeder(outside(BlockDecoder, PartFinalNorm, Weight))),
		newSpec(outside(TokenDecoder, PartExpansion, Bias), []int{r * Dt}, [][]string{exp}, ""))
	if own := c.TokenDecoder.Own; own != nil {
		return append(out, own.Tensors(c)...)
	}
	// A stack token decoder: its table, the stack of its family, its head unless tied.
	out = append(out, table(TokenDecoder, PartEmbedIn, Dt))
	out = append(out, stackSpecs(TokenDecoder, &c.TokenDecoder.DecoderConfig)...)
	if c.TokenDecoder.Tied() {
		return out
	}
	return append(out, table(TokenDecoder, PartEmbedOut, Dt))
}

// EmbedderTable is what an embedder class contributes to the tensor table: its tensors before the
// projection, the norm that feeds the projection ("" if none: see Feeder) and the key of how many
// vectors it concatenates.
type EmbedderTable struct {
	Specs      []TensorSpec
	ProjFedBy  string
	VectorsKey string
}

// StoredTensors is Tensors with every quantized tensor replaced by its stored parts (with its
// identity).
func StoredTensors(c *Config) []TensorSpec {
	var out []TensorSpec
	for _, s := range Tensors(c) {
		if q, ok := c.Quantization[s.Key()]; ok {
			for _, p := range QuantParts(&q, s.Component, s.Name) {
				p.Part, p.Layer, p.Param = s.Part, s.Layer, s.Param
				out = append(out, p)
			}
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
