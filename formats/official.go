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

// OfficialYAML is the part of the official Hydra config that fixes the architecture. Each decoder
// names its base model (model_name_or_path) and overrides keys of that model's HF config.
type OfficialYAML struct {
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
		Cls       string `yaml:"cls"`
		StackYAML `yaml:",inline"`
	} `yaml:"block_decoder"`
	TokenDecoder struct {
		Cls              string `yaml:"cls"`
		StackYAML        `yaml:",inline"`
		ExpansionMethod  string `yaml:"expansion_method"`
		ExpansionRatio   int    `yaml:"expansion_ratio"`
		DecodingStrategy string `yaml:"decoding_strategy"`
	} `yaml:"token_decoder"`
	Precision string `yaml:"precision,omitempty"`
}

// StackYAML is one decoder of an official YAML: its base model and the keys set on top of it.
type StackYAML struct {
	ModelNameOrPath string        `yaml:"model_name_or_path,omitempty"`
	Config          yaml.MapSlice `yaml:"config"`
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

// readYAML reads a YAML file into v.
func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return badFile(path, "cannot read: %v", unwrapPathErr(err))
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return badFile(path, "not valid YAML: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return nil
}

// resolveStack builds one decoder's HF config as the official code does: the named base model's
// config, then every key of the section set on top of it, in order. heads (> 0) gives the head
// count where the section does not state it. Shape keys a base outside the table leaves open are
// taken from shapes (key -> value read off the weights).
func resolveStack(path, section string, st StackYAML, heads int, shapes map[string]int) (*NeoXConfig, error) {
	file := filepath.Base(path)
	c, known := BaseModel(st.ModelNameOrPath)
	if !known {
		c = UnknownBase()
	}
	for _, it := range st.Config {
		key, _ := it.Key.(string)
		if err := c.Set(key, it.Value, file); err != nil {
			return nil, badFile(path, "%s.config: %v", section, err)
		}
	}
	if heads > 0 {
		if c.Origin[KeyHeads] == file && c.Heads != heads {
			return nil, badFile(path, "%s.config states num_attention_heads %d; --heads %d disagrees", section, c.Heads, heads)
		}
		c.Heads, c.Origin[KeyHeads] = heads, "--heads"
	}
	if c.Heads == 0 {
		why := fmt.Sprintf("model_name_or_path %q is not a base model btconvert knows", st.ModelNameOrPath)
		if st.ModelNameOrPath == "" {
			why = "no model_name_or_path names a base model"
		}
		return nil, badFile(path, "%s: num_attention_heads is unknown (%s and %s.config does not state it): state num_attention_heads under %s.config in %s, or pass --heads N",
			section, why, section, section, file)
	}
	for _, k := range c.Missing() {
		if v, ok := shapes[k]; ok && v > 0 {
			_ = c.Set(k, v, "tensor shapes")
		}
	}
	if miss := c.Missing(); len(miss) > 0 {
		return nil, badFile(path, "%s: %s unknown (not stated, not in the base model, not readable from the weights)", section, strings.Join(miss, ", "))
	}
	return &c, nil
}

// stackShapes reads the shape keys of one decoder off the checkpoint (missing tensors are skipped;
// the spec check reports them later).
func stackShapes(c *Checkpoint, prefix, vocabFrom string) map[string]int {
	out := map[string]int{}
	if n := countLayers(c, prefix); n > 0 {
		out[KeyLayers] = n
	}
	if t := c.Info(prefix + "final_layer_norm.weight"); t != nil && len(t.Shape) == 1 {
		out[KeyHidden] = t.Shape[0]
	}
	if t := c.Info(prefix + "layers.0.mlp.dense_h_to_4h.weight"); t != nil && len(t.Shape) == 2 {
		out[KeyIntermediate] = t.Shape[0]
	}
	if t := c.Info(vocabFrom); t != nil && len(t.Shape) == 2 {
		out[KeyVocab] = t.Shape[0]
	}
	return out
}

// blockConfig assembles a Block Transformer config from its two resolved decoders and the
// embedder / expansion settings, recording where every value came from.
func blockConfig(where string, bdC, tdC *NeoXConfig, emb EmbedderConfig, embVocab, blockLength int, td TokenDecoderConfig, prov Provenance) (*Config, error) {
	bd, err := bdC.Decoder()
	if err != nil {
		return nil, badFile(where, "block_decoder: %v", err)
	}
	tdd, err := tdC.Decoder()
	if err != nil {
		return nil, badFile(where, "token_decoder: %v", err)
	}
	td.DecoderConfig = tdd
	if embVocab != 0 && embVocab != tdC.Vocab {
		return nil, badFile(where, "embedder vocab_size %d disagrees with the token decoder's %s", embVocab, tdC.Explain(KeyVocab))
	}
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: "block", VocabSize: tdC.Vocab,
		BlockLength: blockLength, Embedder: &emb, BlockDecoder: &bd, TokenDecoder: &td}
	if cfg.BlockLength == 0 && emb.Type == "concat" && emb.Dim > 0 {
		cfg.BlockLength = bd.Hidden / emb.Dim
	}
	for comp, c := range map[string]*NeoXConfig{BlockDecoder: bdC, TokenDecoder: tdC} {
		for k := range c.Origin {
			prov[comp+"."+k] = c.Explain(k)
		}
	}
	prov[KeyVocab] = tdC.Explain(KeyVocab)
	if err := cfg.Validate(); err != nil {
		return nil, badFile(where, "%v", err)
	}
	return cfg, nil
}

// officialConfig resolves the YAML into our config.
func officialConfig(path string, y *OfficialYAML, c *Checkpoint, heads int, prov Provenance) (*Config, []string, error) {
	file := filepath.Base(path)
	method := y.Embedder.ProjectionMethod
	if method == "" {
		method = "concat"
	}
	if y.TokenDecoder.ExpansionMethod != "" && y.TokenDecoder.ExpansionMethod != "expansion_layer" {
		return nil, nil, badFile(path, "token_decoder.expansion_method %q is not supported (only expansion_layer)", y.TokenDecoder.ExpansionMethod)
	}
	dec := y.TokenDecoder.DecodingStrategy
	if dec == "" {
		dec = "prefix"
	}
	ratio := y.TokenDecoder.ExpansionRatio
	if ratio == 0 {
		ratio = 1
	}
	bdC, err := resolveStack(path, BlockDecoder, y.BlockDecoder.StackYAML, heads, stackShapes(c, "block_decoder.gpt_neox.", "token_decoder.gpt_neox.embed_in.weight"))
	if err != nil {
		return nil, nil, err
	}
	tdC, err := resolveStack(path, TokenDecoder, y.TokenDecoder.StackYAML, heads, stackShapes(c, "token_decoder.gpt_neox.", "token_decoder.gpt_neox.embed_in.weight"))
	if err != nil {
		return nil, nil, err
	}
	prov["block_length"] = fmt.Sprintf("block_length %d from %s", y.BlockLength, file)
	prov["expansion_ratio"] = fmt.Sprintf("expansion_ratio %d from %s", ratio, file)
	prov["embedder."+KeyHidden] = fmt.Sprintf("embedder hidden_size %d from %s", y.Embedder.Config.HiddenSize, file)
	cfg, err := blockConfig(path, bdC, tdC, EmbedderConfig{Type: method, Dim: y.Embedder.Config.HiddenSize}, y.Embedder.Config.VocabSize,
		y.BlockLength, TokenDecoderConfig{ExpansionRatio: ratio, Decoding: dec}, prov)
	if err != nil {
		return nil, nil, err
	}
	cfg.Source = sourceConfig(y.MaxLength, y.Precision, map[string]string{BlockDecoder: y.BlockDecoder.ModelNameOrPath, TokenDecoder: y.TokenDecoder.ModelNameOrPath})
	notes := []string{"architecture from " + file,
		"block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	return cfg, notes, nil
}

// sourceConfig keeps the YAML's provenance settings (nil when it had none).
func sourceConfig(maxLength int, precision string, bases map[string]string) *SourceConfig {
	s := &SourceConfig{MaxLength: maxLength, Precision: precision}
	for k, v := range bases {
		if v != "" {
			if s.BaseModels == nil {
				s.BaseModels = map[string]string{}
			}
			s.BaseModels[k] = v
		}
	}
	if s.BaseModels == nil && s.MaxLength == 0 && s.Precision == "" {
		return nil
	}
	return s
}

// inferOfficialConfig reads the architecture off the tensor shapes. Everything but the head count
// is there; heads must be given.
func inferOfficialConfig(c *Checkpoint, heads int, prov Provenance) (*Config, []string, error) {
	if heads < 1 {
		return nil, nil, badFile(c.Dir, "no config.yaml beside the weights, and the number of attention heads cannot be read from them: pass --heads N (or give the official config.yaml with --config)")
	}
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
		return nil, nil, err
	}
	exp, err := shape("token_decoder.expansion_layer.weight", 3)
	if err != nil {
		return nil, nil, err
	}
	const from = "tensor shapes"
	stack := func(prefix, section string) (*NeoXConfig, error) {
		if countLayers(c, prefix) == 0 {
			return nil, badFile(c.Dir, "no %slayers.* tensors", prefix)
		}
		for name, rank := range map[string]int{prefix + "final_layer_norm.weight": 1, prefix + "layers.0.mlp.dense_h_to_4h.weight": 2,
			"token_decoder.gpt_neox.embed_in.weight": 2} {
			if _, err := shape(name, rank); err != nil {
				return nil, err
			}
		}
		n := UnknownBase()
		for k, v := range stackShapes(c, prefix, "token_decoder.gpt_neox.embed_in.weight") {
			_ = n.Set(k, v, from)
		}
		n.Heads, n.Origin[KeyHeads] = heads, "--heads"
		return &n, nil
	}
	bdC, err := stack("block_decoder.gpt_neox.", BlockDecoder)
	if err != nil {
		return nil, nil, err
	}
	tdC, err := stack("token_decoder.gpt_neox.", TokenDecoder)
	if err != nil {
		return nil, nil, err
	}
	Dt := tdC.Hidden
	if Dt == 0 || exp[0]%Dt != 0 {
		return nil, nil, badTensor(c.FileOf("token_decoder.expansion_layer.weight"), "token_decoder.expansion_layer.weight", "shape %v is not a multiple of the token decoder width %d", exp, Dt)
	}
	embCfg := EmbedderConfig{Type: "concat", Dim: emb[1]}
	L := 0
	if p := c.Info("embedder.projection_layer.weight"); p != nil {
		if len(p.Shape) != 3 {
			return nil, nil, badTensor(c.FileOf(p.Name), p.Name, "shape %v, want [out, in, block_length]", p.Shape)
		}
		embCfg.Type = "projection_layer"
		L = p.Shape[2]
	} else {
		if emb[1] == 0 || bdC.Hidden%emb[1] != 0 {
			return nil, nil, badTensor(c.FileOf("embedder.embeddings.weight"), "embedder.embeddings.weight", "width %d does not divide the block decoder width %d (concat embedder)", emb[1], bdC.Hidden)
		}
		L = bdC.Hidden / emb[1]
	}
	for _, k := range []string{"block_length", "expansion_ratio", "embedder." + KeyHidden} {
		prov[k] = k + " from " + from
	}
	cfg, err := blockConfig(c.Dir, bdC, tdC, embCfg, emb[0], L, TokenDecoderConfig{ExpansionRatio: exp[0] / Dt, Decoding: "prefix"}, prov)
	if err != nil {
		return nil, nil, badFile(c.Dir, "inferred architecture is inconsistent: %v", err)
	}
	notes := []string{"no config.yaml: architecture inferred from tensor shapes (decoding assumed prefix), heads from --heads",
		"block_decoder: " + bdC.Summary(), "token_decoder: " + tdC.Summary()}
	return cfg, notes, nil
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

// openOfficial maps an official checkpoint onto our layout. o.Config may be "" (then config.yaml
// beside the weights is used if present, else the shapes with o.Heads).
func openOfficial(c *Checkpoint, o OpenOptions) (*Model, error) {
	m := &Model{Format: FormatOfficial, Path: c.Dir}
	configPath := o.Config
	if configPath == "" {
		if p := filepath.Join(c.Dir, "config.yaml"); fileExists(p) {
			configPath = p
		}
	}
	var err error
	var notes []string
	prov := Provenance{}
	if configPath != "" {
		var y OfficialYAML
		if err = readYAML(configPath, &y); err == nil {
			m.Config, notes, err = officialConfig(configPath, &y, c, o.Heads, prov)
		}
	} else {
		m.Config, notes, err = inferOfficialConfig(c, o.Heads, prov)
	}
	if err != nil {
		return nil, err
	}
	m.Notes = append(m.Notes, notes...)
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
				return nil, shapeError(t.SrcFile, src, info.Shape, Spec{Shape: []int{D, De, L},
					Dims: [][]string{s.Dims[0], {"embedder." + KeyHidden}, {"block_length"}}}, prov)
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
	if m.Tensors, err = checkAgainstSpecs(c.Dir, cfg, prov, tensors, officialName); err != nil {
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

// OfficialYAMLFor writes our config back as the official Hydra schema (for export). Every
// architecture key of each decoder is stated, so the YAML reads back to the same model whatever
// base model it names; model_name_or_path, max_length and precision are kept from the source.
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
	base := func(comp string) string {
		if c.Source != nil && c.Source.BaseModels[comp] != "" {
			return c.Source.BaseModels[comp]
		}
		return "EleutherAI/pythia-410m-deduped" // what the released configs name; every key is overridden
	}
	y.BlockDecoder.Cls = "gpt-neo-x"
	y.BlockDecoder.StackYAML = StackYAML{base(BlockDecoder), stackKeys(c.BlockDecoder, c.VocabSize)}
	y.TokenDecoder.Cls = "gpt-neo-x"
	y.TokenDecoder.StackYAML = StackYAML{base(TokenDecoder), stackKeys(&c.TokenDecoder.DecoderConfig, c.VocabSize)}
	y.TokenDecoder.ExpansionMethod = "expansion_layer"
	y.TokenDecoder.ExpansionRatio = c.TokenDecoder.ExpansionRatio
	y.TokenDecoder.DecodingStrategy = c.TokenDecoder.Decoding
	if c.Source != nil {
		y.MaxLength, y.Precision = c.Source.MaxLength, c.Source.Precision
	}
	return yaml.Marshal(&y)
}

// stackKeys states every architecture key of a decoder, in the HF GPTNeoXConfig spelling.
func stackKeys(d *DecoderConfig, vocab int) yaml.MapSlice {
	out := yaml.MapSlice{
		{Key: KeyLayers, Value: d.Layers}, {Key: KeyHidden, Value: d.Hidden}, {Key: KeyHeads, Value: d.Heads},
		{Key: KeyIntermediate, Value: d.Intermediate}, {Key: KeyVocab, Value: vocab},
		{Key: KeyRotaryPct, Value: yamlFloat(RotaryPct(d))}, {Key: KeyRotaryBase, Value: yamlFloat(d.RotaryBase)},
		{Key: KeyLayerNormEps, Value: yamlFloat(d.LayerNormEps)}, {Key: KeyParallelResidual, Value: d.ParallelResidual},
		{Key: KeyAct, Value: d.Activation},
	}
	if d.MaxPositions > 0 {
		out = append(out, yaml.MapItem{Key: KeyMaxPositions, Value: d.MaxPositions})
	}
	return out
}

// RotaryPct is the rotary_pct that gives back d's rotary dims through HF's int(head_dim * pct).
func RotaryPct(d *DecoderConfig) float64 {
	pct := float64(d.RotaryDims) / float64(d.HeadDim)
	if int(float64(d.HeadDim)*pct) != d.RotaryDims { // rounding: aim at the middle of the interval
		pct = (float64(d.RotaryDims) + 0.5) / float64(d.HeadDim)
	}
	return pct
}

// yamlFloat is written with a decimal point (1.0e-05), so YAML 1.1 readers such as PyYAML (the
// official code's OmegaConf) read a number, not a string.
type yamlFloat float64

// MarshalYAML implements yaml.BytesMarshaler.
func (f yamlFloat) MarshalYAML() ([]byte, error) {
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
