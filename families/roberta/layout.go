package roberta

import (
	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/official"
)

// officialClass is the encoder in the official checkpoint and config.yaml: an HF RobertaModel
// under "embedder.", a layer's modules under encoder.layer.{i}., its section naming roberta-base
// and stating every RobertaConfig key.
var officialClass = &official.Class{
	Layer: "encoder.layer.%d.",
	Modules: map[arch.Part]string{
		arch.PartEmbeddings: "embeddings.word_embeddings", arch.PartPositions: "embeddings.position_embeddings",
		arch.PartTokenTypes: "embeddings.token_type_embeddings", arch.PartEmbedNorm: "embeddings.LayerNorm",
		arch.PartAttnQ: "attention.self.query", arch.PartAttnK: "attention.self.key", arch.PartAttnV: "attention.self.value",
		arch.PartAttnOut: "attention.output.dense", arch.PartAttnNorm: "attention.output.LayerNorm",
		arch.PartMLPUp: "intermediate.dense", arch.PartMLPDown: "output.dense", arch.PartMLPNorm: "output.LayerNorm",
	},
	Table: arch.ID{Component: arch.Embedder, Part: arch.PartEmbeddings, Layer: arch.NoLayer, Param: arch.Weight},
	Base:  "roberta-base",
	// Older transformers saved RobertaEmbeddings' index buffers.
	Buffers: []string{"embedder.embeddings.position_ids", "embedder.embeddings.token_type_ids"},
	// Every RobertaConfig key, with the embedder's width.
	YAML: func(c *arch.Config) (yaml.MapSlice, int) {
		r := c.Embedder.Encoder.(*Config)
		return yaml.MapSlice{
			{Key: arch.KeyLayers, Value: r.Layers}, {Key: arch.KeyHidden, Value: c.Embedder.Dim}, {Key: arch.KeyHeads, Value: r.Heads},
			{Key: arch.KeyIntermediate, Value: r.Intermediate}, {Key: arch.KeyVocab, Value: c.VocabSize}, {Key: arch.KeyMaxPositions, Value: r.MaxPositions},
			{Key: arch.KeyTypeVocab, Value: r.TypeVocab}, {Key: arch.KeyLayerNormEps, Value: official.YAMLFloat(r.LayerNormEps)},
			{Key: arch.KeyAct, Value: r.Activation}, {Key: arch.KeyPositionType, Value: "absolute"},
			{Key: arch.KeyPadID, Value: r.PadTokenID}, {Key: arch.KeyBOSID, Value: r.BOSTokenID},
		}, r.CLSTokens
	},
}
