// Package uptrain builds the initialisation of a Block Transformer from a vanilla GPT-NeoX model,
// the paper's uptraining recipe (section 3.7; the official load_block_from_vanilla_checkpoint).
package uptrain

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
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
	BlockLength    int
	Method         Method // "" is Partition
	BlockLayers    int    // 0: the method's default
	ExpansionRatio int    // 0: 2
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
		return nil, errs.File(v.Path, "is a Block Transformer; uptraining starts from a vanilla GPT-NeoX model")
	}
	if len(v.Config.Quantization) > 0 {
		return nil, errs.File(v.Path, "is quantized; uptraining starts from the float model")
	}
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
	if o.BlockLayers != 0 && o.BlockLayers != len(blk) {
		return nil, errs.Option("Method", string(o.Method), "gives the block decoder %d of the %d layers; {BlockLayers} %d does not fit", len(blk), N, o.BlockLayers)
	}
	D, L := vd.Hidden, o.BlockLength
	bd, td := *vd, *vd
	bd.Layers, td.Layers = len(blk), len(tok)
	cfg := &arch.Config{Format: arch.FormatName, FormatVersion: arch.FormatVersion, Kind: arch.Block, VocabSize: v.Config.VocabSize,
		PadTokenID: v.Config.PadTokenID, BOSTokenID: v.Config.BOSTokenID, BlockLength: L,
		Embedder:     &arch.EmbedderConfig{Type: arch.ProjectionLayer, Dim: D},
		BlockDecoder: &bd,
		TokenDecoder: &arch.TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: r, Decoding: arch.Prefix}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src := func(name string) *formats.Tensor { return v.Tensor(arch.Decoder, name) }
	dt := src(arch.EmbedIn + ".weight").DType
	made := func(s arch.TensorSpec, fill func([]float32)) *formats.Tensor {
		return formats.Generated(s.Component, s.Name, dt, s.Shape, "(uptraining initialisation)", fill)
	}
	ones := func(f []float32) {
		for i := range f {
			f[i] = 1
		}
	}
	var out []*formats.Tensor
	for _, s := range arch.Tensors(cfg) {
		var t *formats.Tensor
		switch {
		case s.Component == arch.Embedder && s.Role == arch.RoleEmbedding:
			t = src(arch.EmbedIn+".weight").Renamed(s.Component, s.Name)
		case s.Name == arch.Project+".weight":
			// Mean of the L token vectors: weight[o, t*D+i] = (o==i)/L in our Linear layout.
			t = made(s, func(f []float32) {
				for o := 0; o < D; o++ {
					for k := 0; k < L; k++ {
						f[o*L*D+k*D+o] = 1 / float32(L)
					}
				}
			})
		case s.Name == arch.Expand+".weight":
			t = made(s, func(f []float32) {
				for k := 0; k < r; k++ {
					for o := 0; o < D; o++ {
						f[(k*D+o)*D+o] = 1
					}
				}
			})
		case s.Name == arch.Project+".bias" || s.Name == arch.Expand+".bias":
			t = made(s, func([]float32) {})
		case s.Component == arch.BlockDecoder && s.Role == arch.RoleNormWeight && s.Name == arch.FinalNorm+".weight":
			t = made(s, ones)
		case s.Component == arch.BlockDecoder && s.Role == arch.RoleNormBias && s.Name == arch.FinalNorm+".bias":
			t = made(s, func([]float32) {})
		case strings.HasPrefix(s.Name, "layers."):
			var i int
			fmt.Sscanf(s.Name, "layers.%d.", &i)
			rest := strings.SplitN(s.Name, ".", 3)[2]
			from := blk[i]
			if s.Component == arch.TokenDecoder {
				from = tok[i]
			}
			t = src(fmt.Sprintf("layers.%d.%s", from, rest)).Renamed(s.Component, s.Name)
		default: // token decoder embed_in, final LayerNorm, embed_out
			t = src(s.Name).Renamed(s.Component, s.Name)
		}
		out = append(out, t)
	}
	m := v.Derive("uptrain-"+string(o.Method), cfg, out)
	m.Notes = append(append([]string(nil), v.Notes...), fmt.Sprintf("uptraining init (%s): block decoder <- vanilla layers %v, token decoder <- layers %v, L_B=%d, r=%d",
		o.Method, blk, tok, L, r))
	return m, nil
}
