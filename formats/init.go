package formats

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Preset is a paper configuration (Ho et al., 2024, table in docs): D, layers and embedder width.
type Preset struct {
	Name        string
	Hidden      int
	BlockLayers int // block models
	TokenLayers int
	EmbedderDim int
	Layers      int // vanilla models
}

// Presets are the paper's models (vocab 50304, block length 4).
var Presets = []Preset{
	{Name: "block_main_b4_5", Hidden: 256, BlockLayers: 3, TokenLayers: 3, EmbedderDim: 64},
	{Name: "block_main_b4_19", Hidden: 512, BlockLayers: 3, TokenLayers: 3, EmbedderDim: 128},
	{Name: "block_main_b4_85", Hidden: 768, BlockLayers: 6, TokenLayers: 6, EmbedderDim: 192},
	{Name: "block_main_b4_300", Hidden: 1024, BlockLayers: 12, TokenLayers: 12, EmbedderDim: 256},
	{Name: "block_main_b4_800", Hidden: 2048, BlockLayers: 8, TokenLayers: 8, EmbedderDim: 512},
	{Name: "block_main_b4_1.2b", Hidden: 2048, BlockLayers: 12, TokenLayers: 12, EmbedderDim: 512},
	{Name: "vanilla_31", Hidden: 256, Layers: 6},
	{Name: "vanilla_70", Hidden: 512, Layers: 6},
	{Name: "vanilla_160", Hidden: 768, Layers: 12},
	{Name: "vanilla_410", Hidden: 1024, Layers: 24},
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

// ShapeSpec is a model shape for init: a preset, or any shape from flags.
type ShapeSpec struct {
	Hidden, BlockLayers, TokenLayers, Layers, BlockLength, Vocab int
	EmbedderDim                                                  int // 0: hidden / block length (concat)
}

// Config builds the full config of a shape (official defaults: head-dim rule, F = 4D, rotary 25 %,
// concat embedder, prefix decoding with expansion ratio 2).
func (s ShapeSpec) Config() (*Config, error) {
	c := &Config{Format: FormatName, FormatVersion: FormatVersion, VocabSize: s.Vocab}
	if s.Layers > 0 {
		if s.BlockLayers > 0 || s.TokenLayers > 0 {
			return nil, fmt.Errorf("give --layers (vanilla) or --block-layers/--token-layers (block), not both")
		}
		d := NewDecoderConfig(s.Layers, s.Hidden)
		c.Kind, c.Decoder = "vanilla", &d
	} else {
		if s.BlockLength < 1 {
			return nil, fmt.Errorf("--block-length must be at least 1")
		}
		de := s.EmbedderDim
		if de == 0 {
			if s.Hidden%s.BlockLength != 0 {
				return nil, fmt.Errorf("--hidden %d is not a multiple of --block-length %d (concat embedder)", s.Hidden, s.BlockLength)
			}
			de = s.Hidden / s.BlockLength
		}
		bd, td := NewDecoderConfig(s.BlockLayers, s.Hidden), NewDecoderConfig(s.TokenLayers, s.Hidden)
		c.Kind, c.BlockLength = "block", s.BlockLength
		c.Embedder = &EmbedderConfig{Type: "concat", Dim: de}
		c.BlockDecoder = &bd
		c.TokenDecoder = &TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: 2, Decoding: "prefix"}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Spec of a preset.
func (p *Preset) Spec() ShapeSpec {
	return ShapeSpec{Hidden: p.Hidden, BlockLayers: p.BlockLayers, TokenLayers: p.TokenLayers, Layers: p.Layers,
		BlockLength: 4, Vocab: 50304, EmbedderDim: p.EmbedderDim}
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
