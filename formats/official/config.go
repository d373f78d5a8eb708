package official

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// YAML is the part of the official Hydra config that fixes the architecture. Each decoder names
// its base model (model_name_or_path) and sets keys of that model's HF config on top.
type YAML struct {
	Name        string `yaml:"name,omitempty"`
	BlockLength int    `yaml:"block_length"`
	BlockSplit  *struct {
		Distribution       string `yaml:"distribution"`
		DistributionKwargs struct {
			Length int `yaml:"length"`
		} `yaml:"distribution_kwargs"`
	} `yaml:"block_split,omitempty"`
	MaxLength int `yaml:"max_length,omitempty"`
	Embedder  struct {
		Cls              string        `yaml:"cls"`
		ModelNameOrPath  string        `yaml:"model_name_or_path,omitempty"`
		NEmbeddingTokens int           `yaml:"n_embedding_tokens,omitempty"`
		NCLSTokens       int           `yaml:"n_cls_tokens,omitempty"`
		ProjectionMethod string        `yaml:"projection_method"`
		Config           yaml.MapSlice `yaml:"config"`
	} `yaml:"embedder"`
	BlockDecoder struct {
		Cls       string `yaml:"cls"`
		StackYAML `yaml:",inline"`
	} `yaml:"block_decoder"`
	TokenDecoder struct {
		Cls              string `yaml:"cls"`
		StackYAML        `yaml:",inline"`
		ExpansionMethod  string `yaml:"expansion_method"`
		ExpansionRatio   int    `yaml:"expansion_ratio,omitempty"`
		DecodingStrategy string `yaml:"decoding_strategy"`
	} `yaml:"token_decoder"`
	Precision string `yaml:"precision,omitempty"`
}

// vocabFrom is the table whose rows give the vocabulary when a config does not.
var vocabFrom = neoxName(outside(arch.TokenDecoder, arch.PartEmbedIn))

// spec is what the YAML says, as the architecture's spec.
func (y *YAML) spec(file string) *arch.BlockSpec {
	L := y.BlockLength
	if L == 0 && y.BlockSplit != nil && y.BlockSplit.Distribution == "fixed" {
		L = y.BlockSplit.DistributionKwargs.Length
	}
	s := &arch.BlockSpec{Name: y.Name, File: file, BlockLength: L, MaxLength: y.MaxLength, Precision: y.Precision,
		Embedder: arch.EmbedderSpec{Cls: y.Embedder.Cls, Base: y.Embedder.ModelNameOrPath, ProjectionMethod: y.Embedder.ProjectionMethod,
			EmbeddingTokens: y.Embedder.NEmbeddingTokens, CLSTokens: y.Embedder.NCLSTokens, Settings: Settings(y.Embedder.Config)},
		BlockDecoder: arch.StackSpec{Cls: y.BlockDecoder.Cls, Base: y.BlockDecoder.ModelNameOrPath, Settings: Settings(y.BlockDecoder.Config)},
		TokenDecoder: arch.TokenSpec{StackSpec: arch.StackSpec{Cls: y.TokenDecoder.Cls, Base: y.TokenDecoder.ModelNameOrPath,
			Settings: Settings(y.TokenDecoder.Config)}, ExpansionMethod: y.TokenDecoder.ExpansionMethod,
			ExpansionRatio: y.TokenDecoder.ExpansionRatio, Decoding: y.TokenDecoder.DecodingStrategy}}
	return s
}

// checkpointShapes reads each decoder's shape keys off the checkpoint.
func checkpointShapes(c *safetensors.Checkpoint) func(stack string) map[string]int {
	return func(stack string) map[string]int {
		return StackShapes(c, stackPrefix(stack), vocabFrom)
	}
}

// configFromYAML resolves an official YAML file into our config.
func configFromYAML(path string, c *safetensors.Checkpoint, o openOptions, prov arch.Provenance) (*arch.Config, []string, error) {
	var y YAML
	if err := ReadYAML(path, &y); err != nil {
		return nil, nil, err
	}
	return resolveSpec(path, y.spec(filepath.Base(path)), c, o, prov)
}

// configFromName resolves an official config by name.
func configFromName(name string, c *safetensors.Checkpoint, o openOptions, prov arch.Provenance) (*arch.Config, []string, error) {
	blk, _, err := arch.Released(name, arch.OriginYAML)
	if err != nil {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: err.Error()}
	}
	if blk == nil {
		return nil, nil, errs.File(c.Dir, "holds a Block Transformer; %s is the config of a vanilla model", name)
	}
	return resolveSpec(c.Dir, blk, c, o, prov)
}

func resolveSpec(path string, s *arch.BlockSpec, c *safetensors.Checkpoint, o openOptions, prov arch.Provenance) (*arch.Config, []string, error) {
	if o.Decoding != "" {
		return nil, nil, &errs.InputError{File: path, Msg: fmt.Sprintf("{Decoding} %s: the config states the decoding (only a checkpoint without one needs it)", o.Decoding)}
	}
	cfg, notes, err := s.Resolve(o.Heads, checkpointShapes(c), prov)
	if err != nil {
		return nil, nil, &errs.InputError{File: path, Msg: err.Error()}
	}
	return cfg, notes, nil
}

// openOptions are the formats.OpenOptions a config reader uses.
type openOptions struct {
	Heads    arch.Heads
	Decoding arch.Decoding
}

// configFromShapes reads the architecture off the tensor shapes. Everything but the head counts
// and (where the weights fit both) the decoding strategy is there; those must be given.
func configFromShapes(c *safetensors.Checkpoint, o openOptions, prov arch.Provenance) (*arch.Config, []string, error) {
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
	if hasClassTable(c) {
		// Besides the heads, a RoBERTa encoder's token ids and position rule and a T5 stack's
		// relative positions and ids are not in the weights either.
		return nil, nil, &errs.InputError{File: c.Dir, Msg: fmt.Sprintf("no config.yaml beside the weights, and a RoBERTa embedder's or T5 token decoder's architecture (heads, token ids, positions) cannot be read from them: give %s",
			configHint(c))}
	}
	emb, err := shape(embeddings, 2)
	if err != nil {
		return nil, nil, err
	}
	exp, err := shape(expansion, 3)
	if err != nil {
		return nil, nil, err
	}
	stackShapes := func(comp string) (map[string]int, error) {
		prefix := stackPrefix(comp)
		if CountLayers(c, prefix) == 0 {
			return nil, errs.File(c.Dir, "no %slayers.* tensors", prefix)
		}
		finalNorm, mlpUp := neoxName(outside(comp, arch.PartFinalNorm)), neoxName(arch.ID{Component: comp, Part: arch.PartMLPUp, Layer: 0})
		for name, rank := range map[string]int{finalNorm: 1, mlpUp: 2, vocabFrom: 2} {
			if _, err := shape(name, rank); err != nil {
				return nil, err
			}
		}
		return StackShapes(c, prefix, vocabFrom), nil
	}
	bdS, err := stackShapes(arch.BlockDecoder)
	if err != nil {
		return nil, nil, err
	}
	tdS, err := stackShapes(arch.TokenDecoder)
	if err != nil {
		return nil, nil, err
	}
	D, Dt := bdS[arch.KeyHidden], tdS[arch.KeyHidden]
	if Dt == 0 || exp[0]%Dt != 0 || exp[1] != D {
		return nil, nil, errs.Tensor(c.FileOf(expansion), expansion, "shape %v, want [r x %d, %d, 1] (r vectors of the token decoder's width from the block decoder's)", exp, Dt, D)
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
		if emb[1] == 0 || D%emb[1] != 0 {
			return nil, nil, errs.Tensor(c.FileOf(embeddings), embeddings, "width %d does not divide the block decoder width %d (concat embedder)", emb[1], D)
		}
		L = D / emb[1]
	}
	r := exp[0] / Dt
	if len(o.Heads) == 0 {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: noConfigMessage(c, D, Dt)}
	}
	dec := o.Decoding
	switch {
	case dec == "" && r == L:
		return nil, nil, errs.File(c.Dir, "no config.yaml, and the decoding strategy cannot be read from the weights: the expansion layer gives %d vectors = block_length %d, which fits both prefix and summation decoding: give {Decoding} prefix or {Decoding} summation (or {Config} NAME)", r, L)
	case dec == "":
		dec = arch.Prefix
	case dec == arch.Summation && r != L:
		return nil, nil, errs.Tensor(c.FileOf(expansion), expansion, "gives %d vectors; summation decoding needs block_length %d of them ({Decoding} %s does not fit these weights)", r, L, dec)
	case dec != arch.Prefix && dec != arch.Summation:
		return nil, nil, &errs.InputError{File: c.Dir, Msg: fmt.Sprintf("{Decoding} %q: want prefix or summation", dec)}
	}
	if len(o.Heads) > 2 {
		return nil, nil, &errs.InputError{File: c.Dir, Msg: fmt.Sprintf("{Heads} %s: give one head count, or the block decoder's and the token decoder's", o.Heads)}
	}
	bdC, err := arch.FromShapesWithHeads(arch.BlockDecoder, bdS, o.Heads.For(arch.BlockDecoder))
	if err != nil {
		return nil, nil, errs.File(c.Dir, "%v", err)
	}
	tdC, err := arch.FromShapesWithHeads(arch.TokenDecoder, tdS, o.Heads.For(arch.TokenDecoder))
	if err != nil {
		return nil, nil, errs.File(c.Dir, "%v", err)
	}
	decOrigin := arch.Origin{Kind: arch.OriginGiven, From: "the given decoding"}
	if o.Decoding == "" {
		decOrigin = arch.Origin{Kind: arch.OriginShapes, From: fmt.Sprintf("tensor shapes (the expansion layer's %d vectors != block_length %d: prefix)", r, L)}
	}
	cfg, err := arch.BlockConfig(bdC, tdC, arch.BlockParts{Embedder: embCfg, EmbedderOrigin: arch.FromShapes, EmbedderVocab: emb[0],
		BlockLength: L, LengthOrigin: arch.FromShapes, ExpansionRatio: r, RatioOrigin: arch.FromShapes,
		Decoding: dec, DecodingOrigin: decOrigin}, prov)
	if err != nil {
		return nil, nil, errs.File(c.Dir, "inferred architecture is inconsistent: %v", err)
	}
	notes := []string{fmt.Sprintf("no config.yaml: architecture read off the tensor shapes, heads given (%s), %s decoding", o.Heads, dec),
		"block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	return cfg, notes, nil
}

// noConfigMessage is the refusal for a checkpoint without a config and without head counts: what
// cannot be read from the weights, the official default heads for these widths, and the released
// configs whose shapes these weights have.
func noConfigMessage(c *safetensors.Checkpoint, D, Dt int) string {
	def := func(h int) string {
		n, err := arch.OfficialHeads(h)
		if err != nil {
			return ""
		}
		return fmt.Sprint(n)
	}
	var heads string
	switch hb, ht := def(D), def(Dt); {
	case hb == "" || ht == "":
		heads = "{Heads} N (the official head sizes do not divide these widths)"
	case D == Dt:
		heads = fmt.Sprintf("{Heads} (the official default for hidden %d is %s heads: {Heads} %s)", D, hb, hb)
	default:
		heads = fmt.Sprintf("{Heads} (the official defaults for hidden %d and %d are %s and %s heads: {Heads} %s,%s)", D, Dt, hb, ht, hb, ht)
	}
	return fmt.Sprintf("no config.yaml beside the weights, and the attention heads and the decoding strategy cannot be read from them: give %s, or %s", configHint(c), heads)
}

// configHint names the released configs whose shapes the checkpoint has, for a refusal.
func configHint(c *safetensors.Checkpoint) string {
	match := arch.MatchingReleased(func(cfg *arch.Config) bool { return fits(c, cfg) })
	if len(match) > 0 {
		return fmt.Sprintf("{Config} NAME (these shapes are those of %s)", strings.Join(match, ", "))
	}
	return "{Config} NAME (an official config, e.g. block_main_b4_85) or {Config} PATH.yaml"
}

// fits reports whether the checkpoint is the official checkpoint of a model of config cfg: every
// tensor there with its shape, and nothing else the model does not read.
func fits(c *safetensors.Checkpoint, cfg *arch.Config) bool {
	tab := Table(cfg)
	for _, e := range tab {
		if info := c.Info(e.Name); e.Spec != nil && !e.Tied && (info == nil || !slices.Equal(info.Shape, e.Shape)) {
			return false
		}
	}
	_, err := formats.CheckNames(arch.Tensors(cfg), specName(cfg), c.Names, expect(c, tab))
	return err == nil
}

// yamlFor writes our config back as the official Hydra schema. Every architecture key of each
// part is stated, so the YAML reads back to the same model whatever base model it names;
// model_name_or_path, max_length and precision are kept from the source.
func yamlFor(name string, c *arch.Config) ([]byte, error) {
	var y YAML
	y.Name = name
	y.BlockLength = c.BlockLength
	base := func(comp, def string) string {
		if c.Source != nil && c.Source.BaseModels[comp] != "" {
			return c.Source.BaseModels[comp]
		}
		return def // what the released configs name; every key is overridden
	}
	e := c.Embedder
	y.Embedder.Cls = e.Class()
	y.Embedder.NEmbeddingTokens = 1
	y.Embedder.ProjectionMethod = string(e.Type)
	if k := classNamed(e.Class()); k != nil {
		y.Embedder.ModelNameOrPath = base(arch.Embedder, k.Base)
		y.Embedder.Config, y.Embedder.NCLSTokens = k.YAML(c)
	} else {
		y.Embedder.Config = yaml.MapSlice{{Key: arch.KeyVocab, Value: c.VocabSize}, {Key: arch.KeyHidden, Value: e.Dim}}
	}
	y.BlockDecoder.Cls = "gpt-neo-x"
	y.BlockDecoder.StackYAML = StackYAML{ModelNameOrPath: base(arch.BlockDecoder, arch.DefaultBase), Config: StackKeys(c.BlockDecoder, c.VocabSize)}
	td := c.TokenDecoder
	y.TokenDecoder.Cls = td.Class()
	if k := classNamed(td.Class()); k != nil {
		cfg, _ := k.YAML(c)
		y.TokenDecoder.StackYAML = StackYAML{ModelNameOrPath: base(arch.TokenDecoder, k.Base), Config: cfg}
	} else {
		y.TokenDecoder.StackYAML = StackYAML{ModelNameOrPath: base(arch.TokenDecoder, arch.DefaultBase), Config: StackKeys(&td.DecoderConfig, c.VocabSize)}
	}
	y.TokenDecoder.ExpansionMethod = "expansion_layer"
	y.TokenDecoder.ExpansionRatio = td.ExpansionRatio
	y.TokenDecoder.DecodingStrategy = string(td.Decoding)
	if c.Source != nil {
		y.MaxLength, y.Precision = c.Source.MaxLength, c.Source.Precision
	}
	return yaml.Marshal(&y)
}

// BlockTarget resolves a Block config given without weights (an official config by name, or an
// official YAML file): the model an uptraining trains. It returns nil, nil when the config is a
// vanilla model's (the source's own config).
func BlockTarget(config string, heads arch.Heads) (*arch.Config, error) {
	var spec *arch.BlockSpec
	file := config
	if arch.IsReleased(config) && !fsio.Exists(config) {
		blk, _, err := arch.Released(config, arch.OriginYAML)
		if err != nil {
			return nil, err
		}
		spec, file = blk, "--config "+config
	} else {
		if strings.HasSuffix(config, ".json") {
			return nil, nil
		}
		var y YAML
		if err := ReadYAML(config, &y); err != nil {
			return nil, err
		}
		if y.BlockLength == 0 && y.BlockSplit == nil {
			return nil, nil // a vanilla YAML
		}
		spec = y.spec(filepath.Base(config))
	}
	if spec == nil {
		return nil, nil
	}
	cfg, _, err := spec.Resolve(heads, nil, arch.Provenance{})
	if err != nil {
		return nil, &errs.InputError{File: file, Msg: err.Error()}
	}
	return cfg, nil
}
