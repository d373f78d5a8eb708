package official

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// The official code's decoders are GPT-NeoX models (HF GPTNeoXForCausalLM): how its YAML states
// one (a base model and the GPTNeoXConfig keys set on top) and where its checkpoints keep one.
// The GPT-NeoX family (families/gptneox) reads Pythia folders with the same helpers.

// StackYAML is one GPT-NeoX stack of an official YAML: its base model and the keys of that
// model's HF config set on top (a Block Transformer decoder's config:, a vanilla model's
// model_config:).
type StackYAML struct {
	ModelNameOrPath string        `yaml:"model_name_or_path,omitempty"`
	Config          yaml.MapSlice `yaml:"config"`
}

// Settings are the section's keys in order.
func Settings(m yaml.MapSlice) []arch.Setting {
	out := make([]arch.Setting, 0, len(m))
	for _, it := range m {
		key, _ := it.Key.(string)
		out = append(out, arch.Setting{Key: key, Value: it.Value})
	}
	return out
}

// StackKeys states every architecture key of a decoder in the HF GPTNeoXConfig spelling, so a YAML
// that holds them reads back to the same stack whatever base model it names.
func StackKeys(d *arch.DecoderConfig, vocab int) yaml.MapSlice {
	out := yaml.MapSlice{
		{Key: arch.KeyLayers, Value: d.Layers}, {Key: arch.KeyHidden, Value: d.Hidden}, {Key: arch.KeyHeads, Value: d.Heads},
		{Key: arch.KeyIntermediate, Value: d.Intermediate}, {Key: arch.KeyVocab, Value: vocab},
		{Key: arch.KeyRotaryPct, Value: YAMLFloat(RotaryPct(d))}, {Key: arch.KeyRotaryBase, Value: YAMLFloat(d.RotaryBase)},
		{Key: arch.KeyLayerNormEps, Value: YAMLFloat(d.LayerNormEps)}, {Key: arch.KeyParallelResidual, Value: d.ParallelResidual},
		{Key: arch.KeyAct, Value: d.Activation},
	}
	if d.MaxPositions > 0 {
		out = append(out, yaml.MapItem{Key: arch.KeyMaxPositions, Value: d.MaxPositions})
	}
	return out
}

// YAMLFloat is written with a decimal point (1.0e-05), so YAML 1.1 readers such as PyYAML (the
// official code's OmegaConf) read a number, not a string.
type YAMLFloat float64

// MarshalYAML implements yaml.BytesMarshaler.
func (f YAMLFloat) MarshalYAML() ([]byte, error) {
	s := strconv.FormatFloat(float64(f), 'g', -1, 64)
	mant, exp, hasExp := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	if hasExp {
		return []byte(mant + "e" + exp), nil
	}
	return []byte(mant), nil
}

// VanillaYAML is the official code's config of a vanilla model: a base model and the keys of its
// HF config set on top (model_config).
type VanillaYAML struct {
	Name            string        `yaml:"name,omitempty"`
	Model           string        `yaml:"model,omitempty"`
	ModelNameOrPath string        `yaml:"model_name_or_path,omitempty"`
	ModelConfig     yaml.MapSlice `yaml:"model_config"`
	MaxLength       int           `yaml:"max_length,omitempty"`
	Precision       string        `yaml:"precision,omitempty"`
}

// Buffer reports an HF GPT-NeoX buffer that old checkpoints carry (not a weight).
func Buffer(name string) bool { return bufferName.MatchString(name) }

var bufferName = regexp.MustCompile(`\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$`)

var layerIndex = regexp.MustCompile(`^layers\.(\d+)\.`)

// CountLayers is one more than the largest layer index under prefix.
func CountLayers(c *safetensors.Checkpoint, prefix string) int {
	n := 0
	for _, name := range c.Names {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			if m := layerIndex.FindStringSubmatch(rest); m != nil {
				i, _ := strconv.Atoi(m[1])
				n = max(n, i+1)
			}
		}
	}
	return n
}

// StackShapes reads the shape keys of the stack under prefix off the checkpoint, the vocabulary
// from the table vocabFrom (missing tensors are skipped: the spec check reports them).
func StackShapes(c *safetensors.Checkpoint, prefix, vocabFrom string) map[string]int {
	out := map[string]int{}
	if n := CountLayers(c, prefix); n > 0 {
		out[arch.KeyLayers] = n
	}
	if t := c.Info(prefix + arch.ID{Part: arch.PartFinalNorm, Layer: arch.NoLayer}.Name()); t != nil && len(t.Shape) == 1 {
		out[arch.KeyHidden] = t.Shape[0]
	}
	if t := c.Info(prefix + arch.ID{Part: arch.PartMLPUp, Layer: 0}.Name()); t != nil && len(t.Shape) == 2 {
		out[arch.KeyIntermediate] = t.Shape[0]
	}
	if t := c.Info(vocabFrom); t != nil && len(t.Shape) == 2 {
		out[arch.KeyVocab] = t.Shape[0]
	}
	return out
}

// RotaryPct is the rotary_pct that gives back d's rotary dims through HF's int(head_dim * pct).
func RotaryPct(d *arch.DecoderConfig) float64 {
	pct := float64(d.RotaryDims) / float64(d.HeadDim)
	if int(float64(d.HeadDim)*pct) != d.RotaryDims { // rounding: aim at the middle of the interval
		pct = (float64(d.RotaryDims) + 0.5) / float64(d.HeadDim)
	}
	return pct
}
