package official

import (
	"fmt"
	"sync"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/neox"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// What the official layout knows of the embedder and token decoder classes that are neither the
// lookup table nor a GPT-NeoX stack: each class's module names in the official checkpoint and its
// section of config.yaml. The rest of the layout asks this table by class.

// Class is what the official layout knows of one class with modules of its own.
type Class struct {
	Layer   string               // a layer's modules under this, %d its index
	Modules map[arch.Part]string // each part's module
	Table   arch.ID              // its token table (which tells the layout it is there)
	// TableCopies are further names the official state_dict gives its token table (tied).
	TableCopies []string
	Base        string // the base model the released configs name
	// YAML states every key of its config section in a model of config c, and its n_cls_tokens.
	YAML func(c *arch.Config) (yaml.MapSlice, int)
}

var classes = struct {
	sync.RWMutex
	m map[string]*Class
}{m: map[string]*Class{}}

// RegisterClass makes an official embedder or token decoder class known to the layout by its
// official name; a class registers once, from its package's init.
func RegisterClass(name string, k *Class) {
	classes.Lock()
	defer classes.Unlock()
	if classes.m[name] != nil {
		panic(fmt.Sprintf("official: class %q registered twice", name))
	}
	classes.m[name] = k
}

// classNamed is the registered class of that name (nil: the lookup embedder or a GPT-NeoX stack).
func classNamed(name string) *Class {
	classes.RLock()
	defer classes.RUnlock()
	return classes.m[name]
}

func init() {
	RegisterClass(arch.ClassRoberta, robertaClass)
	RegisterClass(arch.ClassRobertaCLS, robertaClass)
	RegisterClass(arch.ClassT5, t5Class)
}

// classOf is the class of modules of its own that tensor id belongs to in a model of config cfg
// (nil: the lookup embedder's, a GPT-NeoX stack's, or the projection or expansion layer).
func classOf(cfg *arch.Config, id arch.ID) *Class {
	switch {
	case id.Component == arch.Embedder && id.Part != arch.PartProjection:
		return classNamed(cfg.Embedder.Class())
	case id.Component == arch.TokenDecoder && id.Part != arch.PartExpansion:
		return classNamed(cfg.TokenDecoder.Class())
	}
	return nil
}

// hasClassTable reports whether a checkpoint holds the token table of a registered class.
func hasClassTable(c *safetensors.Checkpoint) bool {
	classes.RLock()
	defer classes.RUnlock()
	for _, k := range classes.m {
		if c.Has(k.Table.Component + "." + familyName(k.Modules, "", k.Table)) {
			return true
		}
	}
	return false
}

// The RoBERTa embedders (roberta, roberta_cls): an HF RobertaModel, a layer's modules under
// encoder.layer.{i}.
var robertaClass = &Class{
	Layer: "encoder.layer.%d.",
	Modules: map[arch.Part]string{
		arch.PartEmbeddings: "embeddings.word_embeddings", arch.PartPositions: "embeddings.position_embeddings",
		arch.PartTokenTypes: "embeddings.token_type_embeddings", arch.PartEmbedNorm: "embeddings.LayerNorm",
		arch.PartAttnQ: "attention.self.query", arch.PartAttnK: "attention.self.key", arch.PartAttnV: "attention.self.value",
		arch.PartAttnOut: "attention.output.dense", arch.PartAttnNorm: "attention.output.LayerNorm",
		arch.PartMLPUp: "intermediate.dense", arch.PartMLPDown: "output.dense", arch.PartMLPNorm: "output.LayerNorm",
	},
	Table: outside(arch.Embedder, arch.PartEmbeddings),
	Base:  "roberta-base",
	// Every RobertaConfig key, with the embedder's width.
	YAML: func(c *arch.Config) (yaml.MapSlice, int) {
		r := c.Embedder.Encoder.(*arch.RobertaConfig)
		return yaml.MapSlice{
			{Key: arch.KeyLayers, Value: r.Layers}, {Key: arch.KeyHidden, Value: c.Embedder.Dim}, {Key: arch.KeyHeads, Value: r.Heads},
			{Key: arch.KeyIntermediate, Value: r.Intermediate}, {Key: arch.KeyVocab, Value: c.VocabSize}, {Key: arch.KeyMaxPositions, Value: r.MaxPositions},
			{Key: arch.KeyTypeVocab, Value: r.TypeVocab}, {Key: arch.KeyLayerNormEps, Value: neox.YAMLFloat(r.LayerNormEps)},
			{Key: arch.KeyAct, Value: r.Activation}, {Key: arch.KeyPositionType, Value: "absolute"},
			{Key: arch.KeyPadID, Value: r.PadTokenID}, {Key: arch.KeyBOSID, Value: r.BOSTokenID},
		}, r.CLSTokens
	},
}

// The T5 token decoder (t5): the decoder of a T5ForConditionalGeneration, a layer's modules under
// decoder.block.{i}.. Only block 0 has the relative position bias table; every block uses it.
var t5Class = &Class{
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
	Table: outside(arch.TokenDecoder, arch.PartEmbedIn),
	// Its decoder's input embeddings and its output head are the same tensor as shared.
	TableCopies: []string{"token_decoder.decoder.embed_tokens.weight", "token_decoder.lm_head.weight"},
	Base:        "t5-small",
	// Every T5Config key (num_layers too: the official code reads the decoder's from
	// num_decoder_layers).
	YAML: func(c *arch.Config) (yaml.MapSlice, int) {
		t := c.TokenDecoder.Own.(*arch.T5Config)
		return yaml.MapSlice{
			{Key: arch.KeyDModel, Value: t.Hidden}, {Key: arch.KeyDKV, Value: t.HeadDim}, {Key: arch.KeyDFF, Value: t.Intermediate},
			{Key: arch.KeyT5Layers, Value: t.Layers}, {Key: arch.KeyDecoderLayers, Value: t.Layers}, {Key: arch.KeyT5Heads, Value: t.Heads},
			{Key: arch.KeyBuckets, Value: t.Buckets}, {Key: arch.KeyMaxDistance, Value: t.MaxDistance},
			{Key: arch.KeyT5Eps, Value: neox.YAMLFloat(t.LayerNormEps)}, {Key: arch.KeyFeedForward, Value: t.Activation},
			{Key: arch.KeyVocab, Value: c.VocabSize}, {Key: arch.KeyEOSID, Value: t.EOSTokenID}, {Key: arch.KeyBOSID, Value: t.BOSTokenID},
		}, 0
	},
}
