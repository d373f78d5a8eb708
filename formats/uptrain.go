package formats

import (
	"fmt"
	"io"
	"strings"
)

// UptrainOptions chooses how a Block Transformer is initialised from a vanilla model (paper
// section 3.7, the official load_block_from_vanilla_checkpoint).
type UptrainOptions struct {
	BlockLength    int
	Method         string // partition (default), skip, duplicate
	BlockLayers    int    // 0: the method's default
	ExpansionRatio int    // 0: 2
}

// Uptrain returns a block model whose tensors are built lazily from the vanilla model v:
//   - embedder: v's embed_in + a projection_layer that averages the block's token vectors;
//   - block decoder layer i <- v layer blockLayers[i], final LN = (1, 0);
//   - token decoder layer i <- v layer tokenLayers[i], embed_in / final LN / embed_out <- v;
//   - expansion_layer: r stacked identities, bias 0.
//
// New tensors take the dtype of v's embed_in.
func Uptrain(v *Model, o UptrainOptions) (*Model, error) {
	if v.Config.IsBlock() {
		return nil, badFile(v.Path, "--from-vanilla needs a vanilla GPT-NeoX model, this is a Block Transformer")
	}
	if o.BlockLength < 1 {
		return nil, fmt.Errorf("--block-length must be at least 1, got %d", o.BlockLength)
	}
	if o.Method == "" {
		o.Method = "partition"
	}
	if o.ExpansionRatio == 0 {
		o.ExpansionRatio = 2
	}
	if o.ExpansionRatio < 1 {
		return nil, fmt.Errorf("--expansion-ratio must be at least 1, got %d", o.ExpansionRatio)
	}
	vd := v.Config.Decoder
	N := vd.Layers
	var blk, tok []int
	switch o.Method {
	case "partition":
		nb := o.BlockLayers
		if nb == 0 {
			nb = N / 2
		}
		if nb < 1 || nb >= N {
			return nil, fmt.Errorf("--method partition: --block-layers must be between 1 and %d for a %d-layer model, got %d", N-1, N, nb)
		}
		for i := 0; i < N; i++ {
			if i < nb {
				blk = append(blk, i)
			} else {
				tok = append(tok, i)
			}
		}
	case "skip":
		for i := 0; i < N; i += 2 {
			blk = append(blk, i)
		}
		tok = blk
	case "duplicate":
		for i := 0; i < N; i++ {
			blk = append(blk, i)
		}
		tok = blk
	default:
		return nil, fmt.Errorf("--method %q: want partition, skip or duplicate", o.Method)
	}
	if o.BlockLayers != 0 && o.BlockLayers != len(blk) {
		return nil, fmt.Errorf("--method %s gives the block decoder %d of the %d layers; --block-layers %d does not fit", o.Method, len(blk), N, o.BlockLayers)
	}
	if len(tok) == 0 {
		return nil, fmt.Errorf("--method %s leaves the token decoder no layers", o.Method)
	}
	D, L, r := vd.Hidden, o.BlockLength, o.ExpansionRatio
	bd, td := *vd, *vd
	bd.Layers, td.Layers = len(blk), len(tok)
	cfg := &Config{Format: FormatName, FormatVersion: FormatVersion, Kind: "block", VocabSize: v.Config.VocabSize,
		PadTokenID: v.Config.PadTokenID, BOSTokenID: v.Config.BOSTokenID, BlockLength: L,
		Embedder:     &EmbedderConfig{Type: "projection_layer", Dim: D},
		BlockDecoder: &bd,
		TokenDecoder: &TokenDecoderConfig{DecoderConfig: td, ExpansionRatio: r, Decoding: "prefix"}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src := func(name string) *Tensor { return v.Tensor(Decoder, name) }
	dt := src("embed_in.weight").DType
	made := func(comp, name string, shape []int, fill func([]float32)) *Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return &Tensor{Component: comp, Name: name, DType: dt, Shape: shape, SrcFile: v.Path, SrcName: "(initialised) " + name,
			load: func() ([]byte, error) {
				f := make([]float32, n)
				fill(f)
				return FromFloat32(dt, f)
			}}
	}
	zero := func([]float32) {}
	ones := func(f []float32) {
		for i := range f {
			f[i] = 1
		}
	}
	alias := func(comp, name string, from *Tensor) *Tensor {
		t := *from
		t.Component, t.Name = comp, name
		return &t
	}
	layer := func(comp string, i int, from int, t string) *Tensor {
		return alias(comp, fmt.Sprintf("layers.%d.%s", i, t), src(fmt.Sprintf("layers.%d.%s", from, t)))
	}
	var out []*Tensor
	for _, s := range ExpectedTensors(cfg) {
		var t *Tensor
		switch {
		case s.Component == Embedder && s.Name == "embeddings.weight":
			t = alias(Embedder, s.Name, src("embed_in.weight"))
		case s.Name == "projection_layer.weight":
			// Mean of the L token vectors: weight[o, t*D+i] = (o==i)/L in our Linear layout.
			t = made(Embedder, s.Name, s.Shape, func(f []float32) {
				for o := 0; o < D; o++ {
					for k := 0; k < L; k++ {
						f[o*L*D+k*D+o] = 1 / float32(L)
					}
				}
			})
		case s.Name == "expansion_layer.weight":
			t = made(TokenDecoder, s.Name, s.Shape, func(f []float32) {
				for k := 0; k < r; k++ {
					for o := 0; o < D; o++ {
						f[(k*D+o)*D+o] = 1
					}
				}
			})
		case strings.HasSuffix(s.Name, ".bias") && (strings.HasPrefix(s.Name, "projection_layer") || strings.HasPrefix(s.Name, "expansion_layer")):
			t = made(s.Component, s.Name, s.Shape, zero)
		case s.Component == BlockDecoder && s.Name == "final_layer_norm.weight":
			t = made(s.Component, s.Name, s.Shape, ones)
		case s.Component == BlockDecoder && s.Name == "final_layer_norm.bias":
			t = made(s.Component, s.Name, s.Shape, zero)
		case strings.HasPrefix(s.Name, "layers."):
			var i int
			var rest string
			fmt.Sscanf(s.Name, "layers.%d.", &i)
			rest = strings.SplitN(s.Name, ".", 3)[2]
			from := blk[i]
			if s.Component == TokenDecoder {
				from = tok[i]
			}
			t = layer(s.Component, i, from, rest)
		default: // token decoder embed_in, final LN, embed_out
			t = alias(s.Component, s.Name, src(s.Name))
		}
		out = append(out, t)
	}
	m := &Model{Format: "uptrain-" + o.Method, Path: v.Path, Config: cfg, Tensors: out, closers: []io.Closer{v}}
	m.Notes = append(v.Notes, fmt.Sprintf("uptraining init (%s): block decoder <- vanilla layers %v, token decoder <- layers %v, L_B=%d, r=%d",
		o.Method, blk, tok, L, r))
	return m, nil
}
