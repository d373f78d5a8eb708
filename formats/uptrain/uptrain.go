// Package uptrain builds the initialisation of a Block Transformer from a vanilla model, the
// paper's uptraining recipe (section 3.7; the official load_block_from_vanilla_checkpoint). The
// decoders are of the vanilla model's family: GPT-NeoX, or a registered one (Llama).
package uptrain

import (
	"cmp"
	"fmt"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
)

// Method is how the vanilla layers are shared between the two decoders.
type Method string

// The methods of the official code.
const (
	Partition Method = "partition" // block decoder <- layers 0..Nb-1, token decoder <- the rest
	Skip      Method = "skip"      // both <- layers 0, 2, 4, ...
	Duplicate Method = "duplicate" // both <- every layer
)

// Options chooses the initialisation.
type Options struct {
	BlockLength    int    // 0: 4
	Method         Method // "" is Partition
	BlockLayers    int    // 0: the method's default
	ExpansionRatio int    // 0: 2
	// Target is the Block config the uptraining trains (an official uptraining config, or any
	// Block YAML): its block length, layers, expansion and heads replace the fields above, as
	// the official code builds the Block model from its YAML and loads the vanilla weights into
	// it. nil keeps the vanilla model's heads.
	Target *arch.Config
}

// Uptrain returns a block model whose tensors are built lazily from the vanilla model v:
//   - embedder: v's embed_in + a projection_layer that averages the block's token vectors;
//   - block decoder layer i <- v layer blk[i], final LayerNorm = (1, 0);
//   - token decoder layer i <- v layer tok[i], embed_in / final LayerNorm / embed_out <- v;
//   - expansion_layer: r stacked identities, bias 0.
//
// New tensors take the dtype of v's embed_in. Closing the result closes v.
func Uptrain(v *formats.Model, o Options) (*formats.Model, error) {
	if v.Config.IsBlock() {
		return nil, errs.File(v.Path, "is a Block Transformer; uptraining starts from a vanilla model")
	}
	if len(v.Config.Quantization) > 0 {
		return nil, errs.File(v.Path, "is quantized; uptraining starts from the float model")
	}
	if o.Target != nil {
		if d := v.Config.Decoder; !d.IsNeoX() {
			return nil, errs.Option("Config", nil, "the official Block configs build GPT-NeoX decoders; a %s model is uptrained without one ({BlockLength}, {BlockLayers}, {ExpansionRatio})", arch.Family(d.Family).Title)
		}
		if o.BlockLength != 0 || o.BlockLayers != 0 || o.ExpansionRatio != 0 {
			return nil, errs.Option("Config", nil, "the Block config gives the block length, layers and expansion ratio: give none of {BlockLength}, {BlockLayers}, {ExpansionRatio} with it")
		}
		t := o.Target
		o.BlockLength, o.BlockLayers, o.ExpansionRatio = t.BlockLength, t.BlockDecoder.Layers, t.TokenDecoder.ExpansionRatio
	}
	o.BlockLength = cmp.Or(o.BlockLength, 4)
	if o.BlockLength < 1 || o.BlockLength > 1024 {
		return nil, errs.Option("BlockLength", o.BlockLength, "must be between 1 and 1024")
	}
	o.Method = cmp.Or(o.Method, Partition)
	if o.ExpansionRatio < 0 || o.ExpansionRatio > 64 {
		return nil, errs.Option("ExpansionRatio", o.ExpansionRatio, "must be between 1 and 64")
	}
	r := cmp.Or(o.ExpansionRatio, 2)
	vd := v.Config.Decoder
	N := vd.Layers
	var blk, tok []int
	switch o.Method {
	case Partition:
		nb := cmp.Or(o.BlockLayers, N/2)
		if nb < 1 || nb >= N {
			return nil, errs.Option("Method", string(o.Method), "{BlockLayers} must be between 1 and %d for a %d-layer model, got %d", N-1, N, nb)
		}
		for i := 0; i < N; i++ {
			if i < nb {
				blk = append(blk, i)
			} else {
				tok = append(tok, i)
			}
		}
	case Skip:
		for i := 0; i < N; i += 2 {
			blk = append(blk, i)
		}
		tok = blk
	case Duplicate:
		for i := 0; i < N; i++ {
			blk = append(blk, i)
		}
		tok = blk
	default:
		return nil, errs.Option("Method", string(o.Method), "want partition, skip or duplicate")
	}
	if o.Target == nil && o.BlockLayers != 0 && o.BlockLayers != len(blk) {
		return nil, errs.Option("Method", string(o.Method), "gives the block decoder %d of the %d layers; {BlockLayers} %d does not fit", len(blk), N, o.BlockLayers)
	}
	D, L := vd.Hidden, o.BlockLength
	bd, td := *vd, *vd
	bd.Layers, td.Layers = len(blk), len(tok)
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Block, VocabSize: v.Config.VocabSize,
		PadTokenID: v.Config.PadTokenID, BOSTokenID: v.Config.BOSTokenID, EOSTokenID: v.Config.EOSTokenID, StopTokenIDs: v.Config.StopTokenIDs, BlockLength: L,
		Embedder:     &arch.EmbedderConfig{Type: arch.ProjectionLayer, Dim: D},
		BlockDecoder: &bd,
		TokenDecoder: &arch.TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: r, Decoding: arch.Prefix}}
	headsNote := fmt.Sprintf("heads kept from the vanilla model (%d x %d)", vd.Heads, vd.HeadDim)
	if o.Target != nil {
		if err := fitTarget(v.Config, o.Target, cfg); err != nil {
			return nil, err
		}
		cfg.Origins = o.Target.Origins
		cfg.Source = o.Target.Source
		headsNote = fmt.Sprintf("heads from the Block config: block decoder %d x %d, token decoder %d x %d (the vanilla model has %d x %d)",
			cfg.BlockDecoder.Heads, cfg.BlockDecoder.HeadDim, cfg.TokenDecoder.Heads, cfg.TokenDecoder.HeadDim, vd.Heads, vd.HeadDim)
	} else {
		cfg.Origins = map[string]string{}
		for _, comp := range []string{arch.BlockDecoder, arch.TokenDecoder} {
			for _, k := range []string{"hidden_size", "heads", "head_dim", "intermediate_size"} {
				cfg.Origins[comp+"."+k] = string(arch.OriginVanilla)
			}
		}
		if h, err := arch.OfficialHeads(D); err == nil && h != vd.Heads && vd.IsNeoX() {
			headsNote += fmt.Sprintf("; the official uptraining configs train a decoder of width %d with %d heads of %d (import with the official config, by name or as a Block YAML, to follow one)",
				D, h, D/h)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// from is v's tensor of the part, layer and parameter given, as the spec s.
	from := func(s arch.TensorSpec, p arch.Part, layer int, param arch.Param) *formats.Tensor {
		id := arch.ID{Component: arch.Decoder, Part: p, Layer: layer, Param: param}
		return v.Tensor(id.Component, id.Name()).Renamed(s.Component, s.Name)
	}
	dt := v.Tensor(arch.Decoder, arch.ID{Component: arch.Decoder, Part: arch.PartEmbedIn, Layer: arch.NoLayer}.Name()).DType
	made := func(s arch.TensorSpec, fill func([]float32)) *formats.Tensor {
		return formats.Generated(s.Component, s.Name, dt, s.Shape, "(uptraining initialisation)", fill)
	}
	zeros := func([]float32) {}
	ones := func(f []float32) {
		for i := range f {
			f[i] = 1
		}
	}
	var out []*formats.Tensor
	for _, s := range arch.Tensors(cfg) {
		var t *formats.Tensor
		switch {
		case s.Part == arch.PartEmbeddings:
			t = from(s, arch.PartEmbedIn, arch.NoLayer, arch.Weight)
		case s.Part == arch.PartProjection && s.Param == arch.Weight:
			// Mean of the L token vectors: weight[o, t*D+i] = (o==i)/L in our Linear layout.
			t = made(s, func(f []float32) {
				for o := 0; o < D; o++ {
					for k := 0; k < L; k++ {
						f[o*L*D+k*D+o] = 1 / float32(L)
					}
				}
			})
		case s.Part == arch.PartExpansion && s.Param == arch.Weight:
			t = made(s, func(f []float32) {
				for k := 0; k < r; k++ {
					for o := 0; o < D; o++ {
						f[(k*D+o)*D+o] = 1
					}
				}
			})
		case s.Part == arch.PartProjection || s.Part == arch.PartExpansion: // biases
			t = made(s, zeros)
		case s.Part == arch.PartFinalNorm && s.Component == arch.BlockDecoder:
			// Not loaded from the vanilla model: a fresh LayerNorm, (1, 0).
			fill := zeros
			if s.Param == arch.Weight {
				fill = ones
			}
			t = made(s, fill)
		case s.Layer >= 0:
			layer := blk[s.Layer]
			if s.Component == arch.TokenDecoder {
				layer = tok[s.Layer]
			}
			t = from(s, s.Part, layer, s.Param)
		default: // token decoder embed_in, final LayerNorm, embed_out
			t = from(s, s.Part, arch.NoLayer, s.Param)
		}
		out = append(out, t)
	}
	m := v.Derive("uptrain-"+string(o.Method), cfg, out)
	m.Notes = append(append([]string(nil), v.Notes...), fmt.Sprintf("uptraining init (%s): block decoder <- vanilla layers %v, token decoder <- layers %v, L_B=%d, r=%d",
		o.Method, blk, tok, L, r), headsNote)
	return m, nil
}

// fitTarget checks that the vanilla model's weights load into the Block config t (as the official
// code loads them: the same widths, FFN and vocabulary, the layer counts the method gives, a
// projection_layer embedder as wide as the model) and takes t's heads (and what depends on them)
// into cfg.
func fitTarget(v, t, cfg *arch.Config) error {
	vd := v.Decoder
	bad := func(format string, args ...any) error {
		return errs.Option("Config", nil, "the Block config does not fit the vanilla model: "+format, args...)
	}
	if t.Embedder.Encoder != nil {
		return bad("uptraining loads the vanilla token embeddings into a lookup embedder; the config has a %s embedder", t.Embedder.Class())
	}
	if t.Embedder.Type != arch.ProjectionLayer || t.Embedder.Dim != vd.Hidden {
		return bad("uptraining loads the vanilla token embeddings into a projection_layer embedder of width %d; the config has a %s embedder of width %d",
			vd.Hidden, t.Embedder.Type, t.Embedder.Dim)
	}
	if t.TokenDecoder.Decoding != arch.Prefix {
		return bad("uptraining initialises prefix decoding; the config has %s", t.TokenDecoder.Decoding)
	}
	if t.VocabSize != v.VocabSize {
		return bad("vocab_size %d, the vanilla model has %d", t.VocabSize, v.VocabSize)
	}
	for _, p := range []struct {
		name string
		d    *arch.DecoderConfig
		into *arch.DecoderConfig
	}{{arch.BlockDecoder, t.BlockDecoder, cfg.BlockDecoder}, {arch.TokenDecoder, &t.TokenDecoder.DecoderConfig, &cfg.TokenDecoder.DecoderConfig}} {
		switch {
		case p.d.Hidden != vd.Hidden || p.d.Intermediate != vd.Intermediate:
			return bad("%s hidden_size %d and intermediate_size %d, the vanilla model has %d and %d", p.name, p.d.Hidden, p.d.Intermediate, vd.Hidden, vd.Intermediate)
		case p.d.Layers != p.into.Layers:
			return bad("%s has %d layers; the method gives it %d of the vanilla model's %d", p.name, p.d.Layers, p.into.Layers, vd.Layers)
		}
		layers := p.into.Layers
		*p.into = *p.d
		p.into.Layers = layers
	}
	return nil
}
