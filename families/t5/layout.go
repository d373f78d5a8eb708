package t5

import (
	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/official"
)

// officialClass is the stack in the official checkpoint and config.yaml: the decoder of a
// T5ForConditionalGeneration under "token_decoder.", a layer's modules under decoder.block.{i}.
// (only block 0 has the relative position bias table; every block uses it), its section naming
// t5-small and stating every T5Config key.
var officialClass = &official.Class{
	Layer: "decoder.block.%d.",
	Modules: map[arch.Part]string{
		arch.PartEmbedIn: "shared", arch.PartRelBias: "decoder.block.0.layer.0.SelfAttention.relative_attention_bias",
		arch.PartFinalNorm: "decoder.final_layer_norm",
		arch.PartAttnQ:     "layer.0.SelfAttention.q", arch.PartAttnK: "layer.0.SelfAttention.k", arch.PartAttnV: "layer.0.SelfAttention.v",
		arch.PartAttnOut: "layer.0.SelfAttention.o", arch.PartLN1: "layer.0.layer_norm",
		arch.PartCrossQ: "layer.1.EncDecAttention.q", arch.PartCrossK: "layer.1.EncDecAttention.k", arch.PartCrossV: "layer.1.EncDecAttention.v",
		arch.PartCrossOut: "layer.1.EncDecAttention.o", arch.PartCrossNorm: "layer.1.layer_norm",
		arch.PartMLPUp: "layer.2.DenseReluDense.wi", arch.PartMLPDown: "layer.2.DenseReluDense.wo", arch.PartLN2: "layer.2.layer_norm",
	},
	Table: arch.ID{Component: arch.TokenDecoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer, Param: arch.Weight},
	// Its decoder's input embeddings and its output head are the same tensor as shared.
	TableCopies: []string{"token_decoder.decoder.embed_tokens.weight", "token_decoder.lm_head.weight"},
	Base:        "t5-small",
	// Every T5Config key (num_layers too: the official code reads the decoder's from
	// num_decoder_layers).
	YAML: func(c *arch.Config) (yaml.MapSlice, int) {
		t := c.TokenDecoder.Own.(*Config)
		return yaml.MapSlice{
			{Key: arch.KeyDModel, Value: t.Hidden}, {Key: arch.KeyDKV, Value: t.HeadDim}, {Key: arch.KeyDFF, Value: t.Intermediate},
			{Key: arch.KeyT5Layers, Value: t.Layers}, {Key: arch.KeyDecoderLayers, Value: t.Layers}, {Key: arch.KeyT5Heads, Value: t.Heads},
			{Key: arch.KeyBuckets, Value: t.Buckets}, {Key: arch.KeyMaxDistance, Value: t.MaxDistance},
			{Key: arch.KeyT5Eps, Value: official.YAMLFloat(t.LayerNormEps)}, {Key: arch.KeyFeedForward, Value: t.Activation},
			{Key: arch.KeyVocab, Value: c.VocabSize}, {Key: arch.KeyEOSID, Value: t.EOSTokenID}, {Key: arch.KeyBOSID, Value: t.BOSTokenID},
		}, 0
	},
}
