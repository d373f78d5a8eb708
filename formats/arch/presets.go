package arch

import (
	"cmp"
	"strings"

	"github.com/btconvert/btconvert/formats/errs"
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
	return nil, errs.Option("Preset", name, "want one of %s", strings.Join(names, ", "))
}

// Shape is a model shape: a base model with keys set on top (0 keeps the base's), resolved like a
// YAML.
type Shape struct {
	Base                                     string // "" is DefaultBase
	Block                                    bool
	Hidden, Heads, FFN, Vocab                int
	BlockLayers, TokenLayers, Layers         int
	BlockLength, EmbedderDim, ExpansionRatio int    // block models; EmbedderDim 0: hidden / block length (concat)
	Origin                                   string // the origin the notes give the keys set here
}

// Shape of a preset.
func (p *Preset) Shape() Shape {
	return Shape{Base: p.Base, Block: p.Block, Hidden: p.Hidden, Heads: p.Heads, BlockLayers: p.BlockLayers,
		TokenLayers: p.TokenLayers, Layers: p.Layers, BlockLength: 4, EmbedderDim: p.EmbedderDim, Origin: "preset " + p.Name}
}

// Config resolves the shape the way a YAML is resolved: base model config, then the keys given.
func (s Shape) Config() (*Config, error) {
	base := cmp.Or(s.Base, DefaultBase)
	origin := cmp.Or(s.Origin, "the shape given")
	stack := func(layers int) (*NeoXConfig, error) {
		n, ok := BaseModel(base)
		if !ok {
			return nil, errs.Option("Base", base, "want one of %s", strings.Join(BaseModelNames(), ", "))
		}
		for _, kv := range []struct {
			key, option string
			v           int
		}{{KeyLayers, "Layers", layers}, {KeyHidden, "Hidden", s.Hidden}, {KeyHeads, "Heads", s.Heads},
			{KeyIntermediate, "FFN", s.FFN}, {KeyVocab, "Vocab", s.Vocab}} {
			if kv.v != 0 {
				if err := n.Set(kv.key, kv.v, origin); err != nil {
					return nil, errs.Option(kv.option, kv.v, "must be a positive integer")
				}
			}
		}
		return &n, nil
	}
	prov := Provenance{}
	if s.Block == (s.Layers > 0) && (s.Layers > 0 || s.BlockLayers > 0 || s.TokenLayers > 0) {
		return nil, errs.Option("Layers", nil, "{Layers} makes a vanilla model, {BlockLayers} / {TokenLayers} a block model: give one kind")
	}
	if !s.Block {
		n, err := stack(s.Layers)
		if err != nil {
			return nil, err
		}
		c, err := VanillaConfig(n, TokenIDs{}, prov)
		if err != nil {
			return nil, errs.Option("Heads", s.Heads, "%v", err)
		}
		c.Source = NewSource(0, "", map[string]string{Decoder: base})
		return c, nil
	}
	if s.BlockLength < 1 {
		return nil, errs.Option("BlockLength", s.BlockLength, "must be at least 1")
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
			return nil, errs.Option("Hidden", bd.Hidden, "is not a multiple of {BlockLength} %d (concat embedder)", s.BlockLength)
		}
		de = bd.Hidden / s.BlockLength
	}
	ratio := cmp.Or(s.ExpansionRatio, 2)
	c, err := BlockConfig(bd, td, EmbedderConfig{Type: Concat, Dim: de}, 0, s.BlockLength,
		TokenDecoderConfig{ExpansionRatio: ratio, Decoding: Prefix}, prov)
	if err != nil {
		return nil, errs.Option("Heads", s.Heads, "%v", err)
	}
	c.Source = NewSource(0, "", map[string]string{BlockDecoder: base, TokenDecoder: base})
	return c, nil
}
