package roberta

import (
	"fmt"
	"maps"
	"slices"

	"github.com/btconvert/btconvert/arch"
)

// How a RoBERTa embedder resolves from an official YAML, as the official code builds it: the
// official fill-in (heads and FFN from the width), then the config of the base model the section
// names, then every key of the section on top.

// bases are the base models of the ablation configs' RoBERTa embedders: their public config.json
// facts, and the class defaults where config.json is silent. A RoBERTa part must name one of them
// (the official code builds it from that model's config, which btconvert cannot read otherwise).
var bases = map[string]HF{
	"roberta-base": {Layers: 12, Hidden: 768, Heads: 12, Intermediate: 3072, Vocab: 50265, MaxPositions: 514, TypeVocab: 1,
		LayerNormEps: 1e-5, Act: "gelu", PositionType: "absolute", PadID: 1, BOSID: 0},
}

// base is the HF config of a base model by its model_name_or_path.
func base(name string) (HF, bool) {
	c, ok := bases[name]
	if !ok {
		return HF{}, false
	}
	c.Origin = arch.BaseOrigins(name, keys)
	return c, true
}

// resolveSection resolves a YAML's roberta or roberta_cls embedder section into p: its CLS tokens
// (roberta_cls: 1 unless stated) and its HF config.
func resolveSection(e arch.EmbedderSpec, sec arch.Section, p *arch.BlockParts) error {
	p.CLSTokens, p.CLSOrigin = e.CLSTokens, sec.Origin()
	switch {
	case e.Cls == arch.ClassRoberta && e.CLSTokens != 0:
		return fmt.Errorf("embedder.n_cls_tokens is for the roberta_cls embedder, not roberta")
	case e.Cls == arch.ClassRobertaCLS && e.CLSTokens == 0:
		p.CLSTokens, p.CLSOrigin = 1, arch.Origin{Kind: arch.OriginFillIn, From: "the official default of roberta_cls (n_cls_tokens 1)"}
	case e.CLSTokens < 0 || e.CLSTokens > arch.MaxBlockLength:
		return fmt.Errorf("embedder.n_cls_tokens %d is out of range (1 to %d)", e.CLSTokens, arch.MaxBlockLength)
	}
	r, err := Resolve(e.Base, e.Settings, sec)
	if err != nil {
		return err
	}
	p.Encoder = r
	return nil
}

// Resolve builds a RoBERTa embedder's HF config from the base model named and the settings of its
// section, as the official code does.
func Resolve(baseName string, settings []arch.Setting, sec arch.Section) (*HF, error) {
	c, known := base(baseName)
	if !known {
		return nil, arch.BaseNotKnown(sec, baseName, slices.Sorted(maps.Keys(bases)))
	}
	settings, err := arch.FillIn(settings, sec)
	if err != nil {
		return nil, err
	}
	if err := arch.ApplySettings(&c, settings, sec); err != nil {
		return nil, err
	}
	return &c, nil
}

// HF is the architecture part of an HF RobertaConfig, with where each value came from.
type HF struct {
	Layers, Hidden, Heads, Intermediate, Vocab, MaxPositions, TypeVocab int
	PadID, BOSID                                                        int
	LayerNormEps                                                        float64
	Act, PositionType                                                   string
	Origin                                                              map[string]arch.Origin
}

var _ arch.PartHF = (*HF)(nil)

// keys are the RobertaConfig keys that shape the model, in the order notes list them.
var keys = []string{arch.KeyLayers, arch.KeyHidden, arch.KeyHeads, arch.KeyIntermediate, arch.KeyVocab, arch.KeyMaxPositions, arch.KeyTypeVocab,
	arch.KeyLayerNormEps, arch.KeyAct, arch.KeyPositionType, arch.KeyPadID, arch.KeyBOSID}

// inert are RobertaConfig keys that do not change inference; those with a value that would are
// refused (Set).
var inert = map[string]bool{
	arch.KeyEOSID: true, "hidden_dropout_prob": true, "attention_probs_dropout_prob": true, "initializer_range": true,
	"use_cache": true, "classifier_dropout": true, "torch_dtype": true, "dtype": true, "_attn_implementation": true,
	"tie_word_embeddings": true, "chunk_size_feed_forward": true, "is_decoder": true, "add_cross_attention": true,
}

func (c *HF) fields() arch.Fields {
	return arch.Fields{
		Ints: map[string]*int{arch.KeyLayers: &c.Layers, arch.KeyHidden: &c.Hidden, arch.KeyHeads: &c.Heads, arch.KeyIntermediate: &c.Intermediate,
			arch.KeyVocab: &c.Vocab, arch.KeyMaxPositions: &c.MaxPositions, arch.KeyTypeVocab: &c.TypeVocab},
		IDs:    map[string]*int{arch.KeyPadID: &c.PadID, arch.KeyBOSID: &c.BOSID},
		Floats: map[string]*float64{arch.KeyLayerNormEps: &c.LayerNormEps},
		Strs:   map[string]*string{arch.KeyAct: &c.Act, arch.KeyPositionType: &c.PositionType},
	}
}

// Set overrides one key as the embedder's config section does, recording origin.
func (c *HF) Set(key string, v any, origin arch.Origin) error {
	return arch.SetKey(c.fields(), c.Origin, "RobertaConfig", key, v, origin, inert, func(key string, v any) error {
		if b, _ := v.(bool); b && (key == "is_decoder" || key == "add_cross_attention") {
			return fmt.Errorf("%s: true is not supported (the embedder is a bidirectional encoder)", key)
		}
		return nil
	})
}

// Explain says where a key's value came from.
func (c *HF) Explain(key string) string { return arch.ExplainKey(c.fields().Value, c.Origin, key) }

// OriginOf is where a key's value came from.
func (c *HF) OriginOf(key string) arch.Origin { return c.Origin[key] }

// Summary lists the keys with their values, grouped by origin.
func (c *HF) Summary() string { return arch.Summarize(c.fields().Value, c.Origin, keys) }

// VocabSize is vocab_size.
func (c *HF) VocabSize() int { return c.Vocab }

// Assemble makes the embedder of cfg this encoder (with p's CLS tokens) and records its origins.
func (c *HF) Assemble(cfg *arch.Config, p *arch.BlockParts, tdVocab arch.Explained, prov arch.Provenance, origins map[string]string) error {
	if c.Vocab != cfg.VocabSize {
		return fmt.Errorf("embedder: %s disagrees with the token decoder's %s", c.Explain(arch.KeyVocab), tdVocab.Explain(arch.KeyVocab))
	}
	enc, err := c.encoder(p.CLSTokens)
	if err != nil {
		return err
	}
	cfg.Embedder.Encoder, cfg.Embedder.Dim, p.EmbedderOrigin = &enc, c.Hidden, c.Origin[arch.KeyHidden]
	cfg.PadTokenID = enc.PadTokenID
	arch.RecordHF(arch.Embedder, c, keys, prov)
	for name, k := range map[string]string{"layers": arch.KeyLayers, "heads": arch.KeyHeads, "head_dim": arch.KeyHeads,
		"intermediate_size": arch.KeyIntermediate, "max_position_embeddings": arch.KeyMaxPositions, "layer_norm_eps": arch.KeyLayerNormEps,
		"pad_token_id": arch.KeyPadID, "bos_token_id": arch.KeyBOSID} {
		origins[arch.Embedder+"."+name] = string(c.Origin[k].Kind)
	}
	if p.CLSTokens > 0 {
		prov["embedder.n_cls_tokens"] = fmt.Sprintf("embedder.n_cls_tokens %d from %s", p.CLSTokens, p.CLSOrigin.From)
		origins[arch.Embedder+".n_cls_tokens"] = string(p.CLSOrigin.Kind)
	}
	return nil
}

// encoder is our config of the resolved HF config (cls CLS tokens: roberta_cls's count, 0 for
// roberta).
func (c *HF) encoder(cls int) (Config, error) {
	r := Config{Layers: c.Layers, Heads: c.Heads, Intermediate: c.Intermediate, LayerNormEps: c.LayerNormEps, Activation: c.Act,
		MaxPositions: c.MaxPositions, TypeVocab: c.TypeVocab, PadTokenID: c.PadID, BOSTokenID: c.BOSID, CLSTokens: cls}
	switch {
	case c.Hidden%c.Heads != 0:
		return r, fmt.Errorf("embedder: %s is not a multiple of %s", c.Explain(arch.KeyHidden), c.Explain(arch.KeyHeads))
	case c.Act != "gelu":
		return r, fmt.Errorf("embedder: %s is not supported (only gelu, the exact form)", c.Explain(arch.KeyAct))
	case c.PositionType != "absolute":
		return r, fmt.Errorf("embedder: %s is not supported (only absolute)", c.Explain(arch.KeyPositionType))
	}
	r.HeadDim = c.Hidden / c.Heads
	return r, nil
}
