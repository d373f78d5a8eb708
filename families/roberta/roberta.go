// Package roberta is the RoBERTa embedder of the official ablation configs (official classes
// roberta and roberta_cls), in one place: an HF RobertaModel without its pooler, run over each
// block on its own, bidirectionally. roberta projects the outputs of the block's L tokens;
// roberta_cls puts n_cls_tokens CLS tokens (the config's bos_token_id) before the block and
// projects their outputs alone. The projection is the lookup embedder's: concatenation, then
// (projection_layer, what a null projection_method means for these classes) one Linear.
//
// The package registers itself (init): its config and YAML resolution with arch, its graph with
// graph, its module names and config section with the official layout. Importing it for that side
// effect is all a program does to read, run, quantize and write models with a RoBERTa embedder.
package roberta

import (
	"fmt"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/graph"
)

// Key is the encoder's key in our config.json (embedder.roberta).
const Key = "roberta"

func init() {
	arch.RegisterEncoder(Key, func() arch.Encoder { return new(Config) })
	c := &arch.EncoderClass{Projection: arch.ProjectionLayer, Resolve: resolveSection} // not the base class's concat
	for _, class := range []string{arch.ClassRoberta, arch.ClassRobertaCLS} {
		arch.RegisterEncoderClass(class, c)
		graph.RegisterEncoder(class, vectors, work)
		official.RegisterClass(class, officialClass)
	}
}

// Config is the encoder of a RoBERTa embedder, fully explicit; its width is the embedder's Dim.
type Config struct {
	Layers       int     `json:"num_layers"`
	Heads        int     `json:"num_heads"`
	HeadDim      int     `json:"head_dim"`
	Intermediate int     `json:"intermediate_size"`
	LayerNormEps float64 `json:"layer_norm_eps"`
	Activation   string  `json:"activation"` // "gelu" (exact erf form), the only one supported
	MaxPositions int     `json:"max_position_embeddings"`
	TypeVocab    int     `json:"type_vocab_size"` // rows of the token type table; every token has type 0
	// PadTokenID is the padding_idx of the position rule: a token equal to it gets position
	// PadTokenID and does not advance the count of the tokens after it.
	PadTokenID int `json:"pad_token_id"`
	// BOSTokenID is the id of the CLS tokens roberta_cls puts before each block.
	BOSTokenID int `json:"bos_token_id"`
	// CLSTokens is roberta_cls's number of CLS tokens, whose outputs alone make the block
	// embedding; 0 for roberta (the outputs of the block's tokens do).
	CLSTokens int `json:"n_cls_tokens,omitempty"`
}

var _ arch.Encoder = (*Config)(nil)

// Key is the encoder's key in our config.json.
func (r *Config) Key() string { return Key }

// Class is the official embedder class: roberta or roberta_cls.
func (r *Config) Class() string {
	if r.CLSTokens > 0 {
		return arch.ClassRobertaCLS
	}
	return arch.ClassRoberta
}

// Inputs is how many tokens the encoder reads per block of L tokens (CLS tokens included).
func (r *Config) Inputs(L int) int { return r.CLSTokens + L }

// Outputs is how many of its output vectors make the block embedding.
func (r *Config) Outputs(L int) int {
	if r.CLSTokens > 0 {
		return r.CLSTokens
	}
	return L
}

// Check checks the encoder of the embedder of c: its sizes over blocks of c's length, its ids
// against c's vocabulary and padding.
func (r *Config) Check(c *arch.Config) error {
	dim, L, V := c.Embedder.Dim, c.BlockLength, c.VocabSize
	switch {
	case r.Layers < 1, r.Heads < 1, r.HeadDim < 1, r.Intermediate < 1, r.MaxPositions < 1, r.TypeVocab < 1:
		return fmt.Errorf("embedder: layers, heads, head_dim, intermediate_size, max_position_embeddings and type_vocab_size must be positive")
	case r.Layers > arch.MaxLayers || r.Heads > arch.MaxHeads || r.HeadDim > arch.MaxHidden || r.Intermediate > arch.MaxFFN ||
		r.MaxPositions > arch.MaxPositions || r.TypeVocab > arch.MaxVocab || r.CLSTokens < 0 || r.CLSTokens > arch.MaxBlockLength:
		return fmt.Errorf("embedder: a size is out of range (layers at most %d, heads %d, head_dim %d, intermediate_size %d, max_position_embeddings %d, n_cls_tokens %d)",
			arch.MaxLayers, arch.MaxHeads, arch.MaxHidden, arch.MaxFFN, arch.MaxPositions, arch.MaxBlockLength)
	case r.Heads*r.HeadDim != dim:
		return fmt.Errorf("embedder: num_heads %d x head_dim %d != dim %d", r.Heads, r.HeadDim, dim)
	case r.Activation != "gelu":
		return fmt.Errorf("embedder: activation %q is not supported (only exact gelu)", r.Activation)
	case r.LayerNormEps <= 0:
		return fmt.Errorf("embedder: layer_norm_eps must be positive")
	case r.PadTokenID < 0 || r.PadTokenID >= V || r.BOSTokenID < 0 || r.BOSTokenID >= V:
		return fmt.Errorf("embedder: pad_token_id %d and bos_token_id %d must be ids of the vocabulary (0 to %d)", r.PadTokenID, r.BOSTokenID, V-1)
	case r.PadTokenID+r.Inputs(L) >= r.MaxPositions:
		// Position ids run up to pad_token_id + the tokens read per block.
		return fmt.Errorf("embedder: max_position_embeddings %d is too few for position ids up to pad_token_id %d + %d tokens per block",
			r.MaxPositions, r.PadTokenID, r.Inputs(L))
	case c.PadTokenID != r.PadTokenID:
		// Prompts are padded as the official code pads them: with the embedder's pad id.
		return fmt.Errorf("pad_token_id %d disagrees with the RoBERTa embedder's %d", c.PadTokenID, r.PadTokenID)
	}
	return nil
}

// Table is the encoder's tensors: its token, position and token type tables and their LayerNorm,
// then its post-LayerNorm layers (query, key, value, output, norm, up, down, norm, each Linear with
// its bias); its last layer's LayerNorm feeds the projection, which concatenates the block's tokens
// or its CLS tokens.
func (r *Config) Table(c *arch.Config) arch.EmbedderTable {
	const comp = arch.Embedder
	He, F := c.Embedder.Dim, r.Intermediate
	hid, ffn := []string{comp + "." + arch.KeyHidden}, []string{comp + "." + arch.KeyIntermediate}
	var out []arch.TensorSpec
	add := func(id arch.ID, shape []int, dims [][]string, fed string) {
		out = append(out, arch.NewSpec(id, shape, dims, fed))
	}
	at := func(p arch.Part, layer int, param arch.Param) arch.ID {
		return arch.ID{Component: comp, Part: p, Layer: layer, Param: param}
	}
	norm := func(p arch.Part, layer int) {
		add(at(p, layer, arch.Weight), []int{He}, [][]string{hid}, "")
		add(at(p, layer, arch.Bias), []int{He}, [][]string{hid}, "")
	}
	linear := func(p arch.Part, layer, outN, inN int, outK, inK []string, fed string) {
		add(at(p, layer, arch.Weight), []int{outN, inN}, [][]string{outK, inK}, fed)
		add(at(p, layer, arch.Bias), []int{outN}, [][]string{outK}, "")
	}
	add(at(arch.PartEmbeddings, arch.NoLayer, arch.Weight), []int{c.VocabSize, He}, [][]string{{arch.KeyVocab}, hid}, "")
	add(at(arch.PartPositions, arch.NoLayer, arch.Weight), []int{r.MaxPositions, He}, [][]string{{comp + "." + arch.KeyMaxPositions}, hid}, "")
	add(at(arch.PartTokenTypes, arch.NoLayer, arch.Weight), []int{r.TypeVocab, He}, [][]string{{comp + "." + arch.KeyTypeVocab}, hid}, "")
	norm(arch.PartEmbedNorm, arch.NoLayer)
	input := at(arch.PartEmbedNorm, arch.NoLayer, arch.Weight) // what feeds a layer: the norm before it
	for i := 0; i < r.Layers; i++ {
		for _, p := range []arch.Part{arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV} {
			linear(p, i, He, He, hid, hid, arch.Feeder(input))
		}
		linear(arch.PartAttnOut, i, He, He, hid, hid, "")
		norm(arch.PartAttnNorm, i)
		linear(arch.PartMLPUp, i, F, He, ffn, hid, arch.Feeder(at(arch.PartAttnNorm, i, arch.Weight)))
		linear(arch.PartMLPDown, i, He, F, hid, ffn, "")
		norm(arch.PartMLPNorm, i)
		input = at(arch.PartMLPNorm, i, arch.Weight)
	}
	t := arch.EmbedderTable{Specs: out, ProjFedBy: arch.Feeder(input), VectorsKey: "block_length"}
	if r.CLSTokens > 0 {
		t.VectorsKey = "embedder.n_cls_tokens"
	}
	return t
}

// Describe is the encoder in Config.Describe's line.
func (r *Config) Describe(dim int) string {
	s := fmt.Sprintf("%s (%d layers D=%d (%d heads x %d, FFN %d)", r.Class(), r.Layers, dim, r.Heads, r.HeadDim, r.Intermediate)
	if r.CLSTokens > 0 {
		s += fmt.Sprintf(", %d CLS", r.CLSTokens)
	}
	return s + ")"
}

// Summarize adds the encoder's shape and CLS tokens to the embedder's summary.
func (r *Config) Summarize(s *arch.EmbedderSummary, stack func(*arch.DecoderConfig) *arch.StackSummary, dim int) {
	s.CLSTokens = r.CLSTokens
	s.Encoder = stack(&arch.DecoderConfig{Hidden: dim, Heads: r.Heads, HeadDim: r.HeadDim, Intermediate: r.Intermediate, Layers: r.Layers})
}
