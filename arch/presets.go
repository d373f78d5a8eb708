package arch

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/btconvert/btconvert/errs"
)

// Presets are the official configs init builds by name: the paper's main and MEGABYTE Block
// models, the ablations with RoBERTa embedders and a T5 token decoder, and the vanilla baselines,
// resolved exactly as an import of their YAML is.
var Presets = []string{
	"block_main_b4_5", "block_main_b4_19", "block_main_b4_85", "block_main_b4_300", "block_main_b4_800", "block_main_b4_1.2b",
	"block_megabyte_b4_5", "block_megabyte_b4_19", "block_megabyte_b4_85",
	"block_ablation_b4_85_roberta_prefix", "block_ablation_b4_85_cls_sum", "block_ablation_b4_85_cls_cross_attn",
	"vanilla_31", "vanilla_70", "vanilla_160", "vanilla_410",
}

// FindPreset is the shape of a preset.
func FindPreset(name string) (Shape, error) {
	if !slices.Contains(Presets, name) {
		return Shape{}, errs.Option("Preset", name, "want one of %s", strings.Join(Presets, ", "))
	}
	return Shape{Preset: name}, nil
}

// Shape is a model shape for init: a preset, or a base model, with keys set on top (0 keeps what
// the preset or base says). It is resolved like a YAML that states those keys: a block shape gets
// the official fill-in for the heads and FFN it does not give.
type Shape struct {
	Preset                                   string // "" : a shape from Base and the fields alone
	Base                                     string // "" : the preset's, or DefaultBase
	Block                                    bool   // without a preset: a block model
	Hidden, Heads, FFN, Vocab                int
	BlockLayers, TokenLayers, Layers         int
	BlockLength, EmbedderDim, ExpansionRatio int // block models; EmbedderDim 0: hidden / block length (concat)
}

var shapeOrigin = Origin{OriginShape, "the shape asked for"}

// Config resolves the shape.
func (s Shape) Config() (*Config, error) {
	blk, van, err := s.spec()
	if err != nil {
		return nil, err
	}
	var c *Config
	if blk != nil {
		c, _, err = blk.Resolve(nil, nil, Provenance{})
	} else {
		c, _, err = van.Resolve(nil, nil, Provenance{})
	}
	if err != nil {
		if s.Preset != "" {
			return nil, errs.Option("Preset", s.Preset, "%s", err.Error())
		}
		return nil, errs.Option("Hidden", s.Hidden, "%s", err.Error())
	}
	return c, nil
}

// spec is the YAML the shape stands for.
func (s Shape) spec() (*BlockSpec, *VanillaSpec, error) {
	for _, kv := range []struct {
		option string
		v      int
	}{{"Hidden", s.Hidden}, {"Heads", s.Heads}, {"FFN", s.FFN}, {"Vocab", s.Vocab}, {"BlockLayers", s.BlockLayers},
		{"TokenLayers", s.TokenLayers}, {"Layers", s.Layers}, {"BlockLength", s.BlockLength}, {"EmbedderDim", s.EmbedderDim},
		{"ExpansionRatio", s.ExpansionRatio}} {
		if kv.v < 0 || kv.v > 1<<20 {
			return nil, nil, errs.Option(kv.option, kv.v, "must be between 1 and %d", 1<<20)
		}
	}
	var blk *BlockSpec
	var van *VanillaSpec
	if s.Preset != "" {
		var err error
		if blk, van, err = Released(s.Preset, OriginPreset); err != nil {
			return nil, nil, errs.Option("Preset", s.Preset, "%v", err)
		}
	} else if s.Block {
		stack := StackSpec{Cls: ClassNeoX, Base: DefaultBase}
		blk = &BlockSpec{File: "the shape asked for", Kind: OriginShape, BlockLength: cmp.Or(s.BlockLength, 4),
			Embedder:     EmbedderSpec{Cls: ClassLookup, ProjectionMethod: string(Concat)},
			BlockDecoder: stack, TokenDecoder: TokenSpec{StackSpec: stack, ExpansionRatio: 2, Decoding: string(Prefix)}}
	} else {
		van = &VanillaSpec{File: "the shape asked for", Kind: OriginShape, Base: DefaultBase}
	}
	set := func(st *StackSpec, layers int) {
		keys := []string{KeyLayers, KeyHidden, KeyHeads, KeyIntermediate, KeyVocab}
		if st.Cls == ClassT5 { // T5Config's own keys (t5-small stays its base)
			keys = []string{KeyDecoderLayers, KeyDModel, KeyT5Heads, KeyDFF, KeyVocab}
		} else if s.Base != "" {
			st.Base = s.Base
		}
		for i, v := range []int{layers, s.Hidden, s.Heads, s.FFN, s.Vocab} {
			if v != 0 {
				st.Settings = append(slices.Clip(st.Settings), Setting{Key: keys[i], Value: v, Origin: shapeOrigin})
			}
		}
	}
	if s.Base != "" {
		class, err := Decoders("the base models")
		if err != nil {
			return nil, nil, errs.Option("Base", s.Base, "%v", err)
		}
		if _, ok := class.Base(s.Base); !ok {
			return nil, nil, errs.Option("Base", s.Base, "want one of %s", strings.Join(BaseModelNames(), ", "))
		}
	}
	if van != nil {
		if s.BlockLayers != 0 || s.TokenLayers != 0 || s.BlockLength != 0 || s.EmbedderDim != 0 || s.ExpansionRatio != 0 {
			return nil, nil, errs.Option("Layers", nil, "{BlockLayers}, {TokenLayers}, {BlockLength}, {EmbedderDim} and {ExpansionRatio} are for block models; this is a vanilla model")
		}
		st := StackSpec{Base: van.Base, Settings: van.Settings}
		set(&st, s.Layers)
		van.Base, van.Settings = st.Base, st.Settings
		return nil, van, nil
	}
	if s.Layers != 0 {
		what := "this is a block model"
		if s.Preset != "" {
			what = fmt.Sprintf("preset %s is a block model", s.Preset)
		}
		return nil, nil, errs.Option("Layers", s.Layers, "is for vanilla models; %s (give {BlockLayers} and {TokenLayers})", what)
	}
	set(&blk.BlockDecoder, s.BlockLayers)
	set(&blk.TokenDecoder.StackSpec, s.TokenLayers)
	cls := encoderClass(blk.Embedder.Cls)
	encoder := cls != nil && cls.Table == nil // a class with a network of its own, not the lookup table
	if encoder {
		// The encoder keeps its own width and layers; the vocabulary and EmbedderDim reach it as
		// keys of its config (the fill-in then gives the heads and FFN of a new width).
		for _, kv := range []struct {
			key string
			v   int
		}{{KeyVocab, s.Vocab}, {KeyHidden, s.EmbedderDim}} {
			if kv.v != 0 {
				blk.Embedder.Settings = append(slices.Clip(blk.Embedder.Settings), Setting{Key: kv.key, Value: kv.v, Origin: shapeOrigin})
			}
		}
	}
	if s.Vocab != 0 && !encoder {
		blk.Embedder.Vocab = s.Vocab
	}
	if s.BlockLength != 0 {
		blk.BlockLength = s.BlockLength
	}
	if s.ExpansionRatio != 0 {
		blk.TokenDecoder.ExpansionRatio = s.ExpansionRatio
	}
	if (s.Hidden != 0 || s.BlockLength != 0) && !encoder {
		blk.Embedder.Hidden = 0 // the concat embedder follows the width and block length
	}
	if s.EmbedderDim != 0 && !encoder {
		blk.Embedder.Hidden = s.EmbedderDim
	}
	return blk, nil, nil
}
