package formats

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// FormatOfficial is the official Block Transformer checkpoint (github.com/itsnamgyu/block-transformer).
const FormatOfficial = "official-block-transformer"

// unusedEmbedIn is in every official checkpoint but never used by the model.
const unusedEmbedIn = "block_decoder.gpt_neox.embed_in.weight"

// OfficialYAML is the part of the official Hydra config that fixes the architecture.
type OfficialYAML struct {
	Name        string `yaml:"name,omitempty"`
	BlockLength int    `yaml:"block_length"`
	Embedder    struct {
		Cls              string `yaml:"cls"`
		ProjectionMethod string `yaml:"projection_method"`
		Config           struct {
			VocabSize  int `yaml:"vocab_size"`
			HiddenSize int `yaml:"hidden_size"`
		} `yaml:"config"`
	} `yaml:"embedder"`
	BlockDecoder struct {
		Cls    string           `yaml:"cls"`
		Config officialStackYML `yaml:"config"`
	} `yaml:"block_decoder"`
	TokenDecoder struct {
		Cls              string           `yaml:"cls"`
		ExpansionMethod  string           `yaml:"expansion_method"`
		ExpansionRatio   int              `yaml:"expansion_ratio"`
		DecodingStrategy string           `yaml:"decoding_strategy"`
		Config           officialStackYML `yaml:"config"`
	} `yaml:"token_decoder"`
}

type officialStackYML struct {
	NumHiddenLayers int `yaml:"num_hidden_layers"`
	HiddenSize      int `yaml:"hidden_size"`
	VocabSize       int `yaml:"vocab_size,omitempty"`
}

// officialName maps one of our tensor keys to its name in an official checkpoint.
func officialName(component, name string) string {
	switch {
	case component == Embedder:
		return "embedder." + name
	case component == TokenDecoder && (name == "embed_out.weight" || strings.HasPrefix(name, "expansion_layer.")):
		return "token_decoder." + name
	}
	return component + ".gpt_neox." + name
}

// OfficialName is exported for export: our key -> official tensor name.
func OfficialName(component, name string) string { return officialName(component, name) }

// isOfficial tells an official checkpoint by its tensor names.
func isOfficial(c *Checkpoint) bool {
	return c.Has("embedder.embeddings.weight") || c.Has("token_decoder.embed_out.weight")
}

// HF GPT-NeoX buffers that old checkpoints carry; not weights.
var neoxBuffer = regexp.MustCompile(`\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$`)

func readOfficialYAML(path string) (*OfficialYAML, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badFile(path, "cannot read: %v", unwrapPathErr(err))
	}
	var y OfficialYAML
	if err := yaml.Unmarshal(b, &y); err != nil {
		return nil, badFile(path, "not valid YAML: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return &y, nil
}

// officialConfig turns the YAML into our config, with the official defaults filled in.
func officialConfig(path string, y *OfficialYAML) (*Config, error) {
	vocab := y.Embedder.Config.VocabSize
	if vocab == 0 {
		vocab = 50304
	}
	method := y.Embedder.ProjectionMethod
	if method == "" {
		method = "concat"
	}
	if y.TokenDecoder.ExpansionMethod != "" && y.TokenDecoder.ExpansionMethod != "expansion_layer" {
		return nil, badFile(path, "token_decoder.expansion_method %q is not supported (only expansion_layer)", y.TokenDecoder.ExpansionMethod)
	}
	dec := y.TokenDecoder.DecodingStrategy
	if dec == "" {
		dec = "prefix"
	}
	ratio := y.TokenDecoder.ExpansionRatio
	if ratio == 0 {
		ratio = 1
	}
	bd := NewDecoderConfig(y.BlockDecoder.Config.NumHiddenLayers, y.BlockDecoder.Config.HiddenSize)
	td := NewDecoderConfig(y.TokenDecoder.Config.NumHiddenLayers, y.TokenDecoder.Config.HiddenSize)
	cfg := &Config{
		Format: FormatName, FormatVersion: FormatVersion, Kind: "block", VocabSize: vocab,
		BlockLength:  y.BlockLength,
		Embedder:     &EmbedderConfig{Type: method, Dim: y.Embedder.Config.HiddenSize},
		BlockDecoder: &bd,
		TokenDecoder: &TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: ratio, Decoding: dec},
	}
	if cfg.BlockLength == 0 && method == "concat" && cfg.Embedder.Dim > 0 {
		cfg.BlockLength = bd.Hidden / cfg.Embedder.Dim
	}
	if err := cfg.Validate(); err != nil {
		return nil, badFile(path, "%v", err)
	}
	return cfg, nil
}

// inferOfficialConfig reads the architecture off the tensor shapes, with the official defaults.
func inferOfficialConfig(c *Checkpoint) (*Config, error) {
	shape := func(name string, rank int) ([]int, error) {
		info := c.Info(name)
		if info == nil {
			return nil, badTensor(c.Dir, name, "missing (needed to infer the architecture; give --config)")
		}
		if len(info.Shape) != rank {
			return nil, badTensor(c.FileOf(name), name, "has rank %d, want %d", len(info.Shape), rank)
		}
		return info.Shape, nil
	}
	emb, err := shape("embedder.embeddings.weight", 2)
	if err != nil {
		return nil, err
	}
	bdLN, err := shape("block_decoder.gpt_neox.final_layer_norm.weight", 1)
	if err != nil {
		return nil, err
	}
	tdLN, err := shape("token_decoder.gpt_neox.final_layer_norm.weight", 1)
	if err != nil {
		return nil, err
	}
	exp, err := shape("token_decoder.expansion_layer.weight", 3)
	if err != nil {
		return nil, err
	}
	D, Dt := bdLN[0], tdLN[0]
	stack := func(prefix string) (DecoderConfig, error) {
		n := countLayers(c, prefix)
		hidden := map[string]int{"block_decoder.gpt_neox.": D, "token_decoder.gpt_neox.": Dt}[prefix]
		d := NewDecoderConfig(n, hidden)
		if n == 0 {
			return d, badFile(c.Dir, "no %slayers.* tensors", prefix)
		}
		if s, err := shape(prefix+"layers.0.mlp.dense_h_to_4h.weight", 2); err == nil {
			d.Intermediate = s[0]
		} else {
			return d, err
		}
		return d, nil
	}
	bd, err := stack("block_decoder.gpt_neox.")
	if err != nil {
		return nil, err
	}
	td, err := stack("token_decoder.gpt_neox.")
	if err != nil {
		return nil, err
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: "block", VocabSize: emb[0],
		Embedder: &EmbedderConfig{Type: "concat", Dim: emb[1]}, BlockDecoder: &bd,
		TokenDecoder: &TokenDecoderConfig{DecoderConfig: td, Decoding: "prefix"}}
	if Dt == 0 || exp[0]%Dt != 0 {
		return nil, badTensor(c.FileOf("token_decoder.expansion_layer.weight"), "token_decoder.expansion_layer.weight", "shape %v is not a multiple of the token decoder width %d", exp, Dt)
	}
	cfg.TokenDecoder.ExpansionRatio = exp[0] / Dt
	if p := c.Info("embedder.projection_layer.weight"); p != nil {
		if len(p.Shape) != 3 {
			return nil, badTensor(c.FileOf(p.Name), p.Name, "shape %v, want [out, in, block_length]", p.Shape)
		}
		cfg.Embedder.Type = "projection_layer"
		cfg.BlockLength = p.Shape[2]
	} else {
		if emb[1] == 0 || D%emb[1] != 0 {
			return nil, badTensor(c.FileOf("embedder.embeddings.weight"), "embedder.embeddings.weight", "width %d does not divide the block decoder width %d (concat embedder)", emb[1], D)
		}
		cfg.BlockLength = D / emb[1]
	}
	if err := cfg.Validate(); err != nil {
		return nil, badFile(c.Dir, "inferred architecture is inconsistent: %v", err)
	}
	return cfg, nil
}

var layerIndex = regexp.MustCompile(`^layers\.(\d+)\.`)

func countLayers(c *Checkpoint, prefix string) int {
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

// openOfficial maps an official checkpoint onto our layout. configPath may be "" (then config.yaml
// beside the weights is used if present, else the shapes).
func openOfficial(c *Checkpoint, configPath string) (*Model, error) {
	m := &Model{Format: FormatOfficial, Path: c.Dir}
	if configPath == "" {
		if p := filepath.Join(c.Dir, "config.yaml"); fileExists(p) {
			configPath = p
		}
	}
	var err error
	if configPath != "" {
		var y *OfficialYAML
		if y, err = readOfficialYAML(configPath); err == nil {
			m.Config, err = officialConfig(configPath, y)
		}
		m.Notes = append(m.Notes, "architecture from "+configPath)
	} else {
		m.Config, err = inferOfficialConfig(c)
		m.Notes = append(m.Notes, "no config.yaml: architecture inferred from tensor shapes with the official defaults (decoding assumed prefix)")
	}
	if err != nil {
		return nil, err
	}
	cfg := m.Config
	var tensors []*Tensor
	used := map[string]bool{}
	for _, s := range ExpectedTensors(cfg) {
		src := officialName(s.Component, s.Name)
		info := c.Info(src)
		if info == nil {
			return nil, badTensor(c.Dir, src, "missing from the checkpoint (the architecture needs it)")
		}
		used[src] = true
		t := c.tensor(src, s.Component, s.Name)
		switch s.Name {
		case "projection_layer.weight":
			// Conv1d [D, De, L] -> Linear [D, L*De] over the concatenated token vectors.
			D, De, L := cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.BlockLength
			if !shapeIs(info.Shape, D, De, L) {
				return nil, badTensor(t.SrcFile, src, "shape %v disagrees with the config (want %v)", info.Shape, []int{D, De, L})
			}
			t.Shape = []int{D, L * De}
			load := t.load
			es := info.DType.Size()
			t.load = func() ([]byte, error) {
				raw, err := load()
				if err != nil {
					return nil, err
				}
				return permute3(raw, es, D, De, L, []int{0, 2, 1}), nil
			}
		case "expansion_layer.weight":
			// Conv1d with kernel 1 [r*Dt, D, 1] is a Linear [r*Dt, D]: same bytes.
			if len(info.Shape) != 3 || info.Shape[2] != 1 {
				return nil, badTensor(t.SrcFile, src, "shape %v, want [%d, %d, 1]", info.Shape, s.Shape[0], s.Shape[1])
			}
			t.Shape = info.Shape[:2]
		}
		tensors = append(tensors, t)
	}
	for _, name := range c.Names {
		switch {
		case used[name]:
		case name == unusedEmbedIn:
			m.Notes = append(m.Notes, "dropped "+unusedEmbedIn+" (present in official checkpoints, never used by the model)")
		case neoxBuffer.MatchString(name):
			m.Notes = append(m.Notes, "ignored buffer "+name)
		default:
			return nil, badTensor(c.FileOf(name), name, "not part of a Block Transformer with this architecture (check --config)")
		}
	}
	if m.Tensors, err = checkAgainstSpecs(c.Dir, cfg, tensors, officialName); err != nil {
		return nil, err
	}
	m.closers = append(m.closers, c)
	return m, nil
}

func shapeIs(s []int, want ...int) bool {
	if len(s) != len(want) {
		return false
	}
	for i := range s {
		if s[i] != want[i] {
			return false
		}
	}
	return true
}

// permute3 transposes a row-major [a, b, c] array of elemSize-byte elements by perm (output axis k
// is input axis perm[k]).
func permute3(raw []byte, elemSize, a, b, c int, perm []int) []byte {
	dims := []int{a, b, c}
	strides := []int{b * c, c, 1}
	od := []int{dims[perm[0]], dims[perm[1]], dims[perm[2]]}
	os := []int{strides[perm[0]], strides[perm[1]], strides[perm[2]]}
	out := make([]byte, len(raw))
	o := 0
	for i := 0; i < od[0]; i++ {
		for j := 0; j < od[1]; j++ {
			for k := 0; k < od[2]; k++ {
				src := (i*os[0] + j*os[1] + k*os[2]) * elemSize
				copy(out[o:o+elemSize], raw[src:src+elemSize])
				o += elemSize
			}
		}
	}
	return out
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// OfficialYAMLFor writes our config back as the official Hydra schema (for export).
func OfficialYAMLFor(name string, c *Config) ([]byte, error) {
	if !c.IsBlock() {
		return nil, fmt.Errorf("not a block model")
	}
	var y OfficialYAML
	y.Name = name
	y.BlockLength = c.BlockLength
	y.Embedder.Cls = "lookup"
	y.Embedder.ProjectionMethod = c.Embedder.Type
	y.Embedder.Config.VocabSize = c.VocabSize
	y.Embedder.Config.HiddenSize = c.Embedder.Dim
	y.BlockDecoder.Cls = "gpt-neo-x"
	y.BlockDecoder.Config = officialStackYML{c.BlockDecoder.Layers, c.BlockDecoder.Hidden, c.VocabSize}
	y.TokenDecoder.Cls = "gpt-neo-x"
	y.TokenDecoder.ExpansionMethod = "expansion_layer"
	y.TokenDecoder.ExpansionRatio = c.TokenDecoder.ExpansionRatio
	y.TokenDecoder.DecodingStrategy = c.TokenDecoder.Decoding
	y.TokenDecoder.Config = officialStackYML{c.TokenDecoder.Layers, c.TokenDecoder.Hidden, c.VocabSize}
	return yaml.Marshal(&y)
}
