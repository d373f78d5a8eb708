package arch

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
)

// The configs of the official repository (conf/trainer/NAME.yaml), by name, with the values each
// states. The official download folders hold only checkpoint-N/model.safetensors, so a user names
// the config instead of giving its YAML. Every Block config names pythia-410m-deduped as the base
// of its GPT-NeoX decoders, states only layers and width in their config sections (the fill-in
// does the rest), max_length 2048 and precision bf16.

// releasedBlock is one Block config: what its YAML states.
type releasedBlock struct {
	name             string
	blockLength      int
	embCls, embProj  string // "" : lookup, concat
	embHidden        int
	embLayers        int // RoBERTa embedders (based on roberta-base): layers, beside width and vocabulary
	nCLS             int // roberta_cls: n_cls_tokens
	bdLayers, bdD    int
	tdLayers, tdD    int
	tdHeads, tdFFN   int    // a T5 token decoder (based on t5-small) states them too
	ratio            int    // 0: not stated
	decoding         string // prefix, summation or cross_attention
	tdCls            string // "" : gpt-neo-x
	uptrainFromModel string // the vanilla model an uptraining config starts from
}

var releasedBlocks = []releasedBlock{
	{name: "block_main_b4_5", blockLength: 4, embHidden: 64, bdLayers: 3, bdD: 256, tdLayers: 3, tdD: 256, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_19", blockLength: 4, embHidden: 128, bdLayers: 3, bdD: 512, tdLayers: 3, tdD: 512, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_85", blockLength: 4, embHidden: 192, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_300", blockLength: 4, embHidden: 256, bdLayers: 12, bdD: 1024, tdLayers: 12, tdD: 1024, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_800", blockLength: 4, embHidden: 512, bdLayers: 8, bdD: 2048, tdLayers: 8, tdD: 2048, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_1.2b", blockLength: 4, embHidden: 512, bdLayers: 12, bdD: 2048, tdLayers: 12, tdD: 2048, ratio: 2, decoding: "prefix"},
	// The FLOP-matched runs: the same shapes, trained for fewer steps.
	{name: "block_main_b4_85_flop_v70", blockLength: 4, embHidden: 192, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_300_flop_v70", blockLength: 4, embHidden: 256, bdLayers: 12, bdD: 1024, tdLayers: 12, tdD: 1024, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_800_flop_v70", blockLength: 4, embHidden: 512, bdLayers: 8, bdD: 2048, tdLayers: 8, tdD: 2048, ratio: 2, decoding: "prefix"},
	{name: "block_main_b4_1.2b_flop_v70", blockLength: 4, embHidden: 512, bdLayers: 12, bdD: 2048, tdLayers: 12, tdD: 2048, ratio: 2, decoding: "prefix"},
	// MEGABYTE-style: summation decoding, a narrower token decoder, no expansion_ratio stated.
	{name: "block_megabyte_b4_5", blockLength: 4, embHidden: 64, bdLayers: 5, bdD: 256, tdLayers: 4, tdD: 128, decoding: "summation"},
	{name: "block_megabyte_b4_19", blockLength: 4, embHidden: 128, bdLayers: 5, bdD: 512, tdLayers: 4, tdD: 256, decoding: "summation"},
	{name: "block_megabyte_b4_85", blockLength: 4, embHidden: 192, bdLayers: 11, bdD: 768, tdLayers: 4, tdD: 512, decoding: "summation"},
	// Uptraining from a vanilla model: a projection_layer embedder as wide as the decoders.
	{name: "block_uptrain_b4_85_10", blockLength: 4, embProj: "projection_layer", embHidden: 768, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 2, decoding: "prefix", uptrainFromModel: "vanilla_160"},
	{name: "block_uptrain_b4_300_10", blockLength: 4, embProj: "projection_layer", embHidden: 1024, bdLayers: 12, bdD: 1024, tdLayers: 12, tdD: 1024, ratio: 2, decoding: "prefix", uptrainFromModel: "vanilla_410"},
	{name: "block_uptrain_b4_800_10", blockLength: 4, embProj: "projection_layer", embHidden: 2048, bdLayers: 8, bdD: 2048, tdLayers: 8, tdD: 2048, ratio: 2, decoding: "prefix", uptrainFromModel: "EleutherAI/pythia-1b-deduped"},
	// Ablations.
	{name: "block_vanilla_ablation_b1_85", blockLength: 1, embHidden: 768, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 1, decoding: "prefix"},
	{name: "block_ablation_b4_85_lookup_prefix", blockLength: 4, embHidden: 192, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 1, decoding: "prefix"},
	// RoBERTa embedders (a null projection_method: the projection layer) and a T5 token decoder.
	{name: "block_ablation_b4_85_roberta_prefix", blockLength: 4, embCls: "roberta", embHidden: 256, embLayers: 3, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, ratio: 1, decoding: "prefix"},
	{name: "block_ablation_b4_85_cls_sum", blockLength: 4, embCls: "roberta_cls", embHidden: 256, embLayers: 3, nCLS: 3, bdLayers: 6, bdD: 768, tdLayers: 6, tdD: 768, decoding: "summation"},
	{name: "block_ablation_b4_85_cls_cross_attn", blockLength: 4, embCls: "roberta_cls", embHidden: 256, embLayers: 3, nCLS: 3, bdLayers: 6, bdD: 768,
		tdLayers: 6, tdD: 768, tdHeads: 12, tdFFN: 3072, decoding: "cross_attention", tdCls: "t5"},
}

// releasedVanilla is one vanilla config: its base model and the keys of model_config.
type releasedVanilla struct {
	name, base            string
	layers, heads, hidden int // 0: not stated
}

var releasedVanillas = []releasedVanilla{
	{name: "vanilla_31", base: DefaultBase, layers: 6, heads: 8, hidden: 256},
	{name: "vanilla_70", base: "EleutherAI/pythia-70m-deduped"},
	{name: "vanilla_160", base: "EleutherAI/pythia-160m-deduped"},
	{name: "vanilla_410", base: "EleutherAI/pythia-410m-deduped"},
}

// DefaultBase is the base model every released Block Transformer config names for its GPT-NeoX
// decoders; the ablations name robertaBase for their RoBERTa embedders and t5Base for their T5
// token decoder.
const (
	DefaultBase = "EleutherAI/pythia-410m-deduped"
	robertaBase = "roberta-base"
	t5Base      = "t5-small"
)

// ReleasedNames lists the official config names, Block configs first.
func ReleasedNames() []string {
	var out []string
	for _, r := range releasedBlocks {
		out = append(out, r.name)
	}
	for _, r := range releasedVanillas {
		out = append(out, r.name)
	}
	return out
}

// IsReleased reports whether name is an official config.
func IsReleased(name string) bool {
	for _, n := range ReleasedNames() {
		if n == name {
			return true
		}
	}
	return false
}

// Released returns an official config by name as its YAML states it: a *BlockSpec or a
// *VanillaSpec. kind is the origin its values get (OriginYAML for an import, OriginPreset for init).
func Released(name string, kind OriginKind) (block *BlockSpec, vanilla *VanillaSpec, err error) {
	file := "released config " + name
	for _, r := range releasedBlocks {
		if r.name != name {
			continue
		}
		stack := func(layers, hidden int) StackSpec {
			return StackSpec{Cls: ClassNeoX, Base: DefaultBase, Settings: []Setting{{Key: KeyLayers, Value: layers}, {Key: KeyHidden, Value: hidden}}}
		}
		s := &BlockSpec{Name: name, File: file, Kind: kind, BlockLength: r.blockLength, MaxLength: 2048, Precision: "bf16",
			Embedder:     EmbedderSpec{Cls: cmp.Or(r.embCls, ClassLookup), ProjectionMethod: r.embProj, Hidden: r.embHidden, Vocab: 50304, EmbeddingTokens: 1},
			BlockDecoder: stack(r.bdLayers, r.bdD),
			TokenDecoder: TokenSpec{StackSpec: stack(r.tdLayers, r.tdD), ExpansionMethod: "expansion_layer", ExpansionRatio: r.ratio, Decoding: r.decoding}}
		if s.Embedder.Cls == ClassLookup && s.Embedder.ProjectionMethod == "" {
			s.Embedder.ProjectionMethod = string(Concat)
		}
		if r.embLayers != 0 {
			s.Embedder.Base, s.Embedder.Hidden, s.Embedder.Vocab, s.Embedder.CLSTokens = robertaBase, 0, 0, r.nCLS
			s.Embedder.Settings = []Setting{{Key: KeyLayers, Value: r.embLayers}, {Key: KeyHidden, Value: r.embHidden}, {Key: KeyVocab, Value: 50304}}
		}
		if r.tdCls == ClassT5 {
			s.TokenDecoder.StackSpec = StackSpec{Cls: ClassT5, Base: t5Base, Settings: []Setting{{Key: KeyDModel, Value: r.tdD}, {Key: KeyDFF, Value: r.tdFFN},
				{Key: KeyT5Layers, Value: r.tdLayers}, {Key: KeyDecoderLayers, Value: r.tdLayers}, {Key: KeyT5Heads, Value: r.tdHeads}, {Key: KeyVocab, Value: 50304}}}
		}
		return s, nil, nil
	}
	for _, r := range releasedVanillas {
		if r.name != name {
			continue
		}
		s := &VanillaSpec{Name: name, File: file, Kind: kind, Base: r.base, MaxLength: 2048, Precision: "bf16"}
		for _, kv := range []struct {
			key string
			v   int
		}{{KeyLayers, r.layers}, {KeyHeads, r.heads}, {KeyHidden, r.hidden}} {
			if kv.v != 0 {
				s.Settings = append(s.Settings, Setting{Key: kv.key, Value: kv.v})
			}
		}
		return nil, s, nil
	}
	return nil, nil, fmt.Errorf("%q is not an official config name (want one of %s)", name, strings.Join(ReleasedNames(), ", "))
}

// UptrainSource is the vanilla model an official uptraining config starts from ("" for others).
func UptrainSource(name string) string {
	for _, r := range releasedBlocks {
		if r.name == name {
			return r.uptrainFromModel
		}
	}
	return ""
}

// MatchingReleased lists the released Block configs whose tensors have the shapes of cfg (same
// widths, layers, FFN, embedder, expansion and vocabulary): the names a checkpoint without its
// YAML may have been trained with.
func MatchingReleased(shapes func(c *Config) bool) []string {
	var out []string
	for _, r := range releasedBlocks {
		s, _, _ := Released(r.name, OriginYAML)
		c, _, err := s.Resolve(nil, nil, Provenance{})
		if err == nil && shapes(c) {
			out = append(out, r.name)
		}
	}
	sort.Strings(out)
	return out
}
