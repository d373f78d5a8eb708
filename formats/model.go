package formats

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Tensor is one tensor of a model in our layout. Its data is produced on demand (usually a view of
// a memory-mapped file), so a Model never holds more than the caller asks for.
type Tensor struct {
	Component string
	Name      string // name inside the component, e.g. "layers.0.attention.dense.weight"
	DType     DType
	Shape     []int
	SrcFile   string // where the bytes come from, for error messages
	SrcName   string // the tensor's name in SrcFile
	load      func() ([]byte, error)
	release   func() // drops the bytes from memory after use (mapped files), or nil
}

// Release lets the memory behind a mapped tensor go once it has been used.
func (t *Tensor) Release() {
	if t.release != nil {
		t.release()
	}
}

// Key is "component/name", unique in a model.
func (t *Tensor) Key() string { return t.Component + "/" + t.Name }

// Raw returns the bytes as stored, little-endian.
func (t *Tensor) Raw() ([]byte, error) {
	b, err := t.load()
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != t.Bytes() {
		return nil, badTensor(t.SrcFile, t.SrcName, "%d bytes, want %d for %s%v", len(b), t.Bytes(), t.DType, t.Shape)
	}
	return b, nil
}

// Float32 returns the values converted to float32.
func (t *Tensor) Float32() ([]float32, error) {
	raw, err := t.Raw()
	if err != nil {
		return nil, err
	}
	return ToFloat32(t.DType, raw)
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Bytes is the stored size.
func (t *Tensor) Bytes() int64 { return t.NumElements() * int64(t.DType.Size()) }

// Model is a model in our layout: config plus tensors in canonical order, from whatever source.
type Model struct {
	Format  string // "btconvert", "official-block-transformer", "hf-gpt-neox", "uptrain-<method>"
	Path    string
	Config  *Config
	Tensors []*Tensor
	Notes   []string // things the user should be told (dropped tensors, inferred settings)
	// Manifest is set for our directory.
	Manifest *Manifest
	// Bundle is the .btz the model was read from, if any (Path is then its extracted copy).
	Bundle  string
	closers []io.Closer
	byKey   map[string]*Tensor
}

// Tensor looks up a tensor by component and name.
func (m *Model) Tensor(component, name string) *Tensor {
	if m.byKey == nil {
		m.byKey = map[string]*Tensor{}
		for _, t := range m.Tensors {
			m.byKey[t.Key()] = t
		}
	}
	return m.byKey[component+"/"+name]
}

// Close releases the files behind the model.
func (m *Model) Close() error {
	var first error
	for _, c := range m.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	m.closers = nil
	return first
}

// ComponentTensors returns the tensors of one component, in order.
func (m *Model) ComponentTensors(component string) []*Tensor {
	var out []*Tensor
	for _, t := range m.Tensors {
		if t.Component == component {
			out = append(out, t)
		}
	}
	return out
}

// Spec is an expected tensor: where it lives, its shape, and for each dimension the config keys
// that fix it ("block_decoder.intermediate_size"), so a disagreement can say which setting is wrong.
type Spec struct {
	Component, Name string
	Shape           []int
	Dims            [][]string
}

// LayerTensorNames are a GPT-NeoX layer's tensors, as named inside "layers.{i}.".
var LayerTensorNames = []string{
	"input_layernorm.weight", "input_layernorm.bias",
	"post_attention_layernorm.weight", "post_attention_layernorm.bias",
	"attention.query_key_value.weight", "attention.query_key_value.bias",
	"attention.dense.weight", "attention.dense.bias",
	"mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias",
	"mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias",
}

func layerSpec(comp string, d *DecoderConfig, name string) Spec {
	D, F := d.Hidden, d.Intermediate
	hid, ffn := []string{comp + "." + KeyHidden}, []string{comp + "." + KeyIntermediate}
	s := Spec{Component: comp, Name: name}
	switch {
	case strings.HasSuffix(name, "attention.query_key_value.weight"):
		s.Shape, s.Dims = []int{3 * D, D}, [][]string{hid, hid}
	case strings.HasSuffix(name, "attention.query_key_value.bias"):
		s.Shape, s.Dims = []int{3 * D}, [][]string{hid}
	case strings.HasSuffix(name, "attention.dense.weight"):
		s.Shape, s.Dims = []int{D, D}, [][]string{hid, hid}
	case strings.HasSuffix(name, "mlp.dense_h_to_4h.weight"):
		s.Shape, s.Dims = []int{F, D}, [][]string{ffn, hid}
	case strings.HasSuffix(name, "mlp.dense_h_to_4h.bias"):
		s.Shape, s.Dims = []int{F}, [][]string{ffn}
	case strings.HasSuffix(name, "mlp.dense_4h_to_h.weight"):
		s.Shape, s.Dims = []int{D, F}, [][]string{hid, ffn}
	default: // layer norms and D-sized biases
		s.Shape, s.Dims = []int{D}, [][]string{hid}
	}
	return s
}

func stackSpecs(comp string, d *DecoderConfig) []Spec {
	var out []Spec
	for i := 0; i < d.Layers; i++ {
		for _, n := range LayerTensorNames {
			out = append(out, layerSpec(comp, d, fmt.Sprintf("layers.%d.%s", i, n)))
		}
	}
	return append(out,
		layerSpec(comp, d, "final_layer_norm.weight"),
		layerSpec(comp, d, "final_layer_norm.bias"))
}

// ExpectedTensors is the canonical tensor list of our layout for cfg (docs/FORMAT.md). Shapes are
// logical: a quantized tensor stores other tensors in its place (see quant/).
func ExpectedTensors(c *Config) []Spec {
	V := c.VocabSize
	table := func(comp, name string, hidden int) Spec {
		return Spec{comp, name, []int{V, hidden}, [][]string{{KeyVocab}, {comp + "." + KeyHidden}}}
	}
	if !c.IsBlock() {
		d := c.Decoder
		out := []Spec{table(Decoder, "embed_in.weight", d.Hidden)}
		out = append(out, stackSpecs(Decoder, d)...)
		return append(out, table(Decoder, "embed_out.weight", d.Hidden))
	}
	D, Dt, L := c.BlockDecoder.Hidden, c.TokenDecoder.Hidden, c.BlockLength
	bdHid, embHid := []string{BlockDecoder + "." + KeyHidden}, []string{"embedder." + KeyHidden}
	out := []Spec{{Embedder, "embeddings.weight", []int{V, c.Embedder.Dim}, [][]string{{KeyVocab}, embHid}}}
	if c.Embedder.Type == "projection_layer" {
		out = append(out,
			Spec{Embedder, "projection_layer.weight", []int{D, L * c.Embedder.Dim}, [][]string{bdHid, {"block_length", "embedder." + KeyHidden}}},
			Spec{Embedder, "projection_layer.bias", []int{D}, [][]string{bdHid}})
	}
	out = append(out, stackSpecs(BlockDecoder, c.BlockDecoder)...)
	r := c.TokenDecoder.ExpansionRatio
	exp := []string{"expansion_ratio", TokenDecoder + "." + KeyHidden}
	out = append(out,
		Spec{TokenDecoder, "expansion_layer.weight", []int{r * Dt, D}, [][]string{exp, bdHid}},
		Spec{TokenDecoder, "expansion_layer.bias", []int{r * Dt}, [][]string{exp}},
		table(TokenDecoder, "embed_in.weight", Dt))
	out = append(out, stackSpecs(TokenDecoder, &c.TokenDecoder.DecoderConfig)...)
	return append(out, table(TokenDecoder, "embed_out.weight", Dt))
}

// checkAgainstSpecs verifies that tensors match the config's expected list exactly (same keys, same
// shapes, float dtypes) and reorders them canonically. file names the source and srcName gives a
// tensor's name in it, for messages.
func checkAgainstSpecs(file string, c *Config, prov Provenance, tensors []*Tensor, srcName func(component, name string) string) ([]*Tensor, error) {
	return matchSpecs(file, storedSpecs(c, false), prov, tensors, srcName)
}

// checkStored is checkAgainstSpecs for our own directory, where quantized tensors are stored as
// their parts.
func checkStored(file string, c *Config, tensors []*Tensor) ([]*Tensor, error) {
	return matchSpecs(file, storedSpecs(c, true), nil, tensors, func(comp, name string) string { return comp + "/" + name })
}

// Provenance says where each config value came from, by qualified key
// ("token_decoder.intermediate_size", "block_length") -> "intermediate_size 512 from config.yaml".
type Provenance map[string]string

// explainDims says which settings fix the dimension where got and want first differ.
func (p Provenance) explainDims(s Spec, got []int) string {
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

func matchSpecs(file string, specs []storedSpec, prov Provenance, tensors []*Tensor, srcName func(component, name string) string) ([]*Tensor, error) {
	byKey := map[string]*Tensor{}
	for _, t := range tensors {
		byKey[t.Key()] = t
	}
	var out []*Tensor
	for _, s := range specs {
		t := byKey[s.Component+"/"+s.Name]
		if t == nil {
			return nil, &InputError{File: file, Tensor: srcName(s.Component, s.Name), Msg: "missing (the architecture needs it)"}
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return nil, shapeError(t.SrcFile, t.SrcName, t.Shape, s.Spec, prov)
		}
		if s.DType != "" && t.DType != s.DType {
			return nil, badTensor(t.SrcFile, t.SrcName, "dtype %s, want %s", t.DType, s.DType)
		}
		if s.DType == "" && !t.DType.IsFloat() {
			return nil, badTensor(t.SrcFile, t.SrcName, "dtype %s is not a float type", t.DType)
		}
		delete(byKey, t.Key())
		out = append(out, t)
	}
	if len(byKey) > 0 {
		var extra []string
		for k := range byKey {
			extra = append(extra, byKey[k].SrcName)
		}
		slices.Sort(extra)
		return nil, &InputError{File: file, Msg: fmt.Sprintf("unexpected tensor(s) the architecture does not use: %s", strings.Join(extra, ", "))}
	}
	return out, nil
}

// NewTensor makes a tensor whose bytes come from load (called each time they are needed).
func NewTensor(component, name string, dtype DType, shape []int, srcFile, srcName string, load func() ([]byte, error)) *Tensor {
	return &Tensor{Component: component, Name: name, DType: dtype, Shape: shape, SrcFile: srcFile, SrcName: srcName, load: load}
}

// Derive returns a model with the same source and notes but a new config and tensors (e.g. a
// quantized copy). Closing it closes the original.
func (m *Model) Derive(format string, cfg *Config, tensors []*Tensor) *Model {
	return &Model{Format: format, Path: m.Path, Config: cfg, Tensors: tensors, Notes: m.Notes, closers: []io.Closer{m}}
}

// shapeError says a tensor's shape disagrees with the config, and which settings (with their origin)
// fixed the dimension that differs.
func shapeError(file, tensor string, got []int, s Spec, prov Provenance) error {
	if why := prov.explainDims(s, got); why != "" {
		return badTensor(file, tensor, "shape %v disagrees with the config (want %v): %s", got, s.Shape, why)
	}
	return badTensor(file, tensor, "shape %v disagrees with the config (want %v)", got, s.Shape)
}
