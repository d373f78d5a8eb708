package formats

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// DefaultBase is the base model every released Block Transformer config names.
const DefaultBase = "EleutherAI/pythia-410m-deduped"

// Preset is a configuration of the paper's official code: a base model and the keys its YAML sets
// on top (0 keeps the base's value), as in conf/trainer/NAME.yaml.
type Preset struct {
	Name        string
	Base        string
	Hidden      int
	Heads       int
	BlockLayers int // block models
	TokenLayers int
	EmbedderDim int
	Layers      int // vanilla models
	Block       bool
}

// Presets are the paper's models (vocab 50304, block length 4). The block models and vanilla_31
// state only layers and hidden size (vanilla_31 also 8 heads) over pythia-410m-deduped, so they run
// with its 16 heads and FFN of 4096; vanilla_70/160/410 are their Pythia base as it is.
var Presets = []Preset{
	{Name: "block_main_b4_5", Base: DefaultBase, Hidden: 256, BlockLayers: 3, TokenLayers: 3, EmbedderDim: 64, Block: true},
	{Name: "block_main_b4_19", Base: DefaultBase, Hidden: 512, BlockLayers: 3, TokenLayers: 3, EmbedderDim: 128, Block: true},
	{Name: "block_main_b4_85", Base: DefaultBase, Hidden: 768, BlockLayers: 6, TokenLayers: 6, EmbedderDim: 192, Block: true},
	{Name: "block_main_b4_300", Base: DefaultBase, Hidden: 1024, BlockLayers: 12, TokenLayers: 12, EmbedderDim: 256, Block: true},
	{Name: "block_main_b4_800", Base: DefaultBase, Hidden: 2048, BlockLayers: 8, TokenLayers: 8, EmbedderDim: 512, Block: true},
	{Name: "block_main_b4_1.2b", Base: DefaultBase, Hidden: 2048, BlockLayers: 12, TokenLayers: 12, EmbedderDim: 512, Block: true},
	{Name: "vanilla_31", Base: DefaultBase, Hidden: 256, Layers: 6, Heads: 8},
	{Name: "vanilla_70", Base: "EleutherAI/pythia-70m-deduped"},
	{Name: "vanilla_160", Base: "EleutherAI/pythia-160m-deduped"},
	{Name: "vanilla_410", Base: "EleutherAI/pythia-410m-deduped"},
}

// FindPreset looks a preset up by name.
func FindPreset(name string) (*Preset, error) {
	var names []string
	for i := range Presets {
		if Presets[i].Name == name {
			return &Presets[i], nil
		}
		names = append(names, Presets[i].Name)
	}
	return nil, fmt.Errorf("--preset %q: want one of %s", name, strings.Join(names, ", "))
}

// ShapeSpec is a model shape for init: a base model with keys set on top (0 keeps the base's).
type ShapeSpec struct {
	Base                                     string // "" is DefaultBase
	Block                                    bool
	Hidden, Heads, FFN, Vocab                int
	BlockLayers, TokenLayers, Layers         int
	BlockLength, EmbedderDim, ExpansionRatio int    // block models; EmbedderDim 0: hidden / block length (concat)
	Origin                                   string // what the notes name as the origin of the keys set
}

// Config resolves a shape the way a YAML is resolved: base model config, then the keys given.
func (s ShapeSpec) Config() (*Config, error) {
	base := cmp.Or(s.Base, DefaultBase)
	origin := cmp.Or(s.Origin, "init")
	stack := func(layers int) (*NeoXConfig, error) {
		n, ok := BaseModel(base)
		if !ok {
			return nil, fmt.Errorf("--base %q: want one of %s", base, strings.Join(BaseModelNames(), ", "))
		}
		for _, kv := range []struct {
			key string
			v   int
		}{{KeyLayers, layers}, {KeyHidden, s.Hidden}, {KeyHeads, s.Heads}, {KeyIntermediate, s.FFN}, {KeyVocab, s.Vocab}} {
			if kv.v != 0 {
				if err := n.Set(kv.key, kv.v, origin); err != nil {
					return nil, err
				}
			}
		}
		return &n, nil
	}
	prov := Provenance{}
	if !s.Block {
		if s.BlockLayers > 0 || s.TokenLayers > 0 {
			return nil, fmt.Errorf("give --layers (vanilla) or --block-layers/--token-layers (block), not both")
		}
		n, err := stack(s.Layers)
		if err != nil {
			return nil, err
		}
		c, err := vanillaConfig("", n, &TokenIDs{}, prov)
		if err != nil {
			return nil, unwrapInput(err)
		}
		c.Source = sourceConfig(0, "", map[string]string{Decoder: base})
		return c, nil
	}
	if s.Layers > 0 {
		return nil, fmt.Errorf("give --layers (vanilla) or --block-layers/--token-layers (block), not both")
	}
	if s.BlockLength < 1 {
		return nil, fmt.Errorf("--block-length must be at least 1")
	}
	bd, err := stack(s.BlockLayers)
	if err != nil {
		return nil, err
	}
	td, err := stack(s.TokenLayers)
	if err != nil {
		return nil, err
	}
	de := s.EmbedderDim
	if de == 0 {
		if bd.Hidden%s.BlockLength != 0 {
			return nil, fmt.Errorf("--hidden %d is not a multiple of --block-length %d (concat embedder)", bd.Hidden, s.BlockLength)
		}
		de = bd.Hidden / s.BlockLength
	}
	c, err := blockConfig("", bd, td, EmbedderConfig{Type: "concat", Dim: de}, 0, s.BlockLength,
		TokenDecoderConfig{ExpansionRatio: cmp.Or(s.ExpansionRatio, 2), Decoding: "prefix"}, prov)
	if err != nil {
		return nil, unwrapInput(err)
	}
	c.Source = sourceConfig(0, "", map[string]string{BlockDecoder: base, TokenDecoder: base})
	return c, nil
}

// unwrapInput drops the (empty) file of an InputError made without a file.
func unwrapInput(err error) error {
	var ie *InputError
	if errors.As(err, &ie) && ie.File == "" {
		return errors.New(ie.Msg)
	}
	return err
}

// Spec of a preset.
func (p *Preset) Spec() ShapeSpec {
	return ShapeSpec{Base: p.Base, Block: p.Block, Hidden: p.Hidden, Heads: p.Heads, BlockLayers: p.BlockLayers,
		TokenLayers: p.TokenLayers, Layers: p.Layers, BlockLength: 4, EmbedderDim: p.EmbedderDim, Origin: "preset " + p.Name}
}

// ParamCount is the number of weights of a config.
func ParamCount(c *Config) int64 {
	var n int64
	for _, s := range ExpectedTensors(c) {
		k := int64(1)
		for _, d := range s.Shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}

// InitStd is the standard deviation of the official (HF GPT-NeoX) initialisation of Linear and
// Embedding weights; biases start at 0 and LayerNorms at (1, 0).
const InitStd = 0.02

// RandomModel is a model with the official random initialisation, generated lazily and
// reproducibly: tensor i draws from a PCG seeded with (seed, i), so one tensor exists at a time.
func RandomModel(c *Config, seed uint64, dtype DType) *Model {
	var ts []*Tensor
	for i, s := range ExpectedTensors(c) {
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		name, idx := s.Name, uint64(i)
		fill := func(f []float32) {
			switch {
			case strings.HasSuffix(name, "layernorm.weight") || name == "final_layer_norm.weight":
				for j := range f {
					f[j] = 1
				}
			case strings.HasSuffix(name, ".bias"):
			default:
				r := rand.New(rand.NewPCG(seed, idx))
				for j := range f {
					f[j] = float32(r.NormFloat64() * InitStd)
				}
			}
		}
		ts = append(ts, NewTensor(s.Component, s.Name, dtype, s.Shape, "(random init)", s.Component+"/"+s.Name, func() ([]byte, error) {
			f := make([]float32, n)
			fill(f)
			return FromFloat32(dtype, f)
		}))
	}
	return &Model{Format: "random-init", Path: "", Config: c, Tensors: ts,
		Notes: []string{fmt.Sprintf("random initialisation (normal std %.2f, seed %d)", InitStd, seed)}}
}
