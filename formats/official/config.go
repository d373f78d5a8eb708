package official

import (
	"fmt"
	"path/filepath"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/neox"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// YAML is the part of the official Hydra config that fixes the architecture. Each decoder names
// its base model (model_name_or_path) and sets keys of that model's HF config on top.
type YAML struct {
	Name        string `yaml:"name,omitempty"`
	BlockLength int    `yaml:"block_length"`
	MaxLength   int    `yaml:"max_length,omitempty"`
	Embedder    struct {
		Cls              string `yaml:"cls"`
		ProjectionMethod string `yaml:"projection_method"`
		Config           struct {
			VocabSize  int `yaml:"vocab_size"`
			HiddenSize int `yaml:"hidden_size"`
		} `yaml:"config"`
	} `yaml:"embedder"`
	BlockDecoder struct {
		Cls            string `yaml:"cls"`
		neox.StackYAML `yaml:",inline"`
	} `yaml:"block_decoder"`
	TokenDecoder struct {
		Cls              string `yaml:"cls"`
		neox.StackYAML   `yaml:",inline"`
		ExpansionMethod  string `yaml:"expansion_method"`
		ExpansionRatio   int    `yaml:"expansion_ratio"`
		DecodingStrategy string `yaml:"decoding_strategy"`
	} `yaml:"token_decoder"`
	Precision string `yaml:"precision,omitempty"`
}

const (
	bdPrefix = "block_decoder.gpt_neox."
	tdPrefix = "token_decoder.gpt_neox."
	// vocabFrom is the table whose rows give the vocabulary when a config does not.
	vocabFrom = tdPrefix + arch.EmbedIn + ".weight"
)

// configFromYAML resolves the YAML into our config: each decoder from its base model and its keys.
func configFromYAML(path string, y *YAML, c *safetensors.Checkpoint, heads int, prov arch.Provenance) (*arch.Config, []string, error) {
	file := filepath.Base(path)
	method := arch.EmbedderType(y.Embedder.ProjectionMethod)
	if method == "" {
		method = arch.Concat
	}
	if y.TokenDecoder.ExpansionMethod != "" && y.TokenDecoder.ExpansionMethod != "expansion_layer" {
		return nil, nil, errs.File(path, "token_decoder.expansion_method %q is not supported (only expansion_layer)", y.TokenDecoder.ExpansionMethod)
	}
	dec := arch.Decoding(y.TokenDecoder.DecodingStrategy)
	if dec == "" {
		dec = arch.Prefix
	}
	ratio := y.TokenDecoder.ExpansionRatio
	if ratio == 0 {
		ratio = 1
	}
	resolve := func(stack string, st neox.StackYAML, prefix string) (*arch.NeoXConfig, error) {
		n, err := arch.ResolveStack(st.ModelNameOrPath, neox.Settings(st.Config), arch.Section{File: file, Stack: stack, Keys: stack + ".config"},
			heads, neox.StackShapes(c, prefix, vocabFrom))
		if err != nil {
			return nil, &errs.InputError{File: path, Msg: err.Error()}
		}
		return n, nil
	}
	bdC, err := resolve(arch.BlockDecoder, y.BlockDecoder.StackYAML, bdPrefix)
	if err != nil {
		return nil, nil, err
	}
	tdC, err := resolve(arch.TokenDecoder, y.TokenDecoder.StackYAML, tdPrefix)
	if err != nil {
		return nil, nil, err
	}
	prov["block_length"] = fmt.Sprintf("block_length %d from %s", y.BlockLength, file)
	prov["expansion_ratio"] = fmt.Sprintf("expansion_ratio %d from %s", ratio, file)
	prov["embedder."+arch.KeyHidden] = fmt.Sprintf("embedder hidden_size %d from %s", y.Embedder.Config.HiddenSize, file)
	cfg, err := arch.BlockConfig(bdC, tdC, arch.EmbedderConfig{Type: method, Dim: y.Embedder.Config.HiddenSize}, y.Embedder.Config.VocabSize,
		y.BlockLength, arch.TokenDecoderConfig{ExpansionRatio: ratio, Decoding: dec}, prov)
	if err != nil {
		return nil, nil, errs.File(path, "%v", err)
	}
	cfg.Source = arch.NewSource(y.MaxLength, y.Precision, map[string]string{arch.BlockDecoder: y.BlockDecoder.ModelNameOrPath, arch.TokenDecoder: y.TokenDecoder.ModelNameOrPath})
	notes := []string{"architecture from " + file, "block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	return cfg, notes, nil
}

// configFromShapes reads the architecture off the tensor shapes. Everything but the head count is
// there; heads must be given.
func configFromShapes(c *safetensors.Checkpoint, heads int, prov arch.Provenance) (*arch.Config, []string, error) {
	if heads < 1 {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: "no config.yaml beside the weights, and the number of attention heads cannot be read from them: pass {Heads} N (or give the official config.yaml with {Config})"}
	}
	shape := func(name string, rank int) ([]int, error) {
		info := c.Info(name)
		if info == nil {
			return nil, &errs.InputError{File: c.Dir, Tensor: name, Msg: "missing (needed to infer the architecture; give {Config})"}
		}
		if len(info.Shape) != rank {
			return nil, errs.Tensor(c.FileOf(name), name, "has rank %d, want %d", len(info.Shape), rank)
		}
		return info.Shape, nil
	}
	emb, err := shape(embeddings, 2)
	if err != nil {
		return nil, nil, err
	}
	exp, err := shape(expansion, 3)
	if err != nil {
		return nil, nil, err
	}
	stack := func(prefix string) (*arch.NeoXConfig, error) {
		if neox.CountLayers(c, prefix) == 0 {
			return nil, errs.File(c.Dir, "no %slayers.* tensors", prefix)
		}
		for name, rank := range map[string]int{prefix + arch.FinalNorm + ".weight": 1, prefix + "layers.0." + arch.MLPUp + ".weight": 2, vocabFrom: 2} {
			if _, err := shape(name, rank); err != nil {
				return nil, err
			}
		}
		return arch.FromShapesWithHeads(neox.StackShapes(c, prefix, vocabFrom), heads), nil
	}
	bdC, err := stack(bdPrefix)
	if err != nil {
		return nil, nil, err
	}
	tdC, err := stack(tdPrefix)
	if err != nil {
		return nil, nil, err
	}
	Dt := tdC.Hidden
	if Dt == 0 || exp[0]%Dt != 0 {
		return nil, nil, errs.Tensor(c.FileOf(expansion), expansion, "shape %v is not a multiple of the token decoder width %d", exp, Dt)
	}
	embCfg := arch.EmbedderConfig{Type: arch.Concat, Dim: emb[1]}
	L := 0
	if p := c.Info(projection); p != nil {
		if len(p.Shape) != 3 {
			return nil, nil, errs.Tensor(c.FileOf(p.Name), p.Name, "shape %v, want [out, in, block_length]", p.Shape)
		}
		embCfg.Type = arch.ProjectionLayer
		L = p.Shape[2]
	} else {
		if emb[1] == 0 || bdC.Hidden%emb[1] != 0 {
			return nil, nil, errs.Tensor(c.FileOf(embeddings), embeddings, "width %d does not divide the block decoder width %d (concat embedder)", emb[1], bdC.Hidden)
		}
		L = bdC.Hidden / emb[1]
	}
	for _, k := range []string{"block_length", "expansion_ratio", "embedder." + arch.KeyHidden} {
		prov[k] = k + " from " + arch.FromShapes
	}
	cfg, err := arch.BlockConfig(bdC, tdC, embCfg, emb[0], L, arch.TokenDecoderConfig{ExpansionRatio: exp[0] / Dt, Decoding: arch.Prefix}, prov)
	if err != nil {
		return nil, nil, errs.File(c.Dir, "inferred architecture is inconsistent: %v", err)
	}
	notes := []string{"no config.yaml: architecture inferred from tensor shapes (decoding assumed prefix), heads given",
		"block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	return cfg, notes, nil
}

// yamlFor writes our config back as the official Hydra schema. Every architecture key of each
// decoder is stated, so the YAML reads back to the same model whatever base model it names;
// model_name_or_path, max_length and precision are kept from the source.
func yamlFor(name string, c *arch.Config) ([]byte, error) {
	var y YAML
	y.Name = name
	y.BlockLength = c.BlockLength
	y.Embedder.Cls = "lookup"
	y.Embedder.ProjectionMethod = string(c.Embedder.Type)
	y.Embedder.Config.VocabSize = c.VocabSize
	y.Embedder.Config.HiddenSize = c.Embedder.Dim
	base := func(comp string) string {
		if c.Source != nil && c.Source.BaseModels[comp] != "" {
			return c.Source.BaseModels[comp]
		}
		return arch.DefaultBase // what the released configs name; every key is overridden
	}
	y.BlockDecoder.Cls = "gpt-neo-x"
	y.BlockDecoder.StackYAML = neox.StackYAML{ModelNameOrPath: base(arch.BlockDecoder), Config: neox.StackKeys(c.BlockDecoder, c.VocabSize)}
	y.TokenDecoder.Cls = "gpt-neo-x"
	y.TokenDecoder.StackYAML = neox.StackYAML{ModelNameOrPath: base(arch.TokenDecoder), Config: neox.StackKeys(&c.TokenDecoder.DecoderConfig, c.VocabSize)}
	y.TokenDecoder.ExpansionMethod = "expansion_layer"
	y.TokenDecoder.ExpansionRatio = c.TokenDecoder.ExpansionRatio
	y.TokenDecoder.DecodingStrategy = string(c.TokenDecoder.Decoding)
	if c.Source != nil {
		y.MaxLength, y.Precision = c.Source.MaxLength, c.Source.Precision
	}
	return yaml.Marshal(&y)
}
