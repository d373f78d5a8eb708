// Package official is the official Block Transformer checkpoint layout
// (github.com/itsnamgyu/block-transformer): one model.safetensors (or HF shards) with the official
// tensor names and the Hydra config.yaml that names each decoder's base model.
package official

import (
	"cmp"
	"path/filepath"
	"strings"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/fsio"
	"github.com/btconvert/btconvert/formats/neox"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Format is the name of this layout.
const Format = "official-block-transformer"

// Names of the official tensors that differ from ours by more than a prefix.
const (
	embeddings = "embedder.embeddings.weight"
	projection = "embedder.projection_layer.weight"
	expansion  = "token_decoder.expansion_layer.weight"
	// unusedEmbedIn is in every official checkpoint but never used by the model.
	unusedEmbedIn = "block_decoder.gpt_neox.embed_in.weight"
)

// Layout reads and writes official Block Transformer checkpoints.
type Layout struct{}

var _ formats.Layout = Layout{}

// Format implements formats.Layout.
func (Layout) Format() string { return Format }

// Detect implements formats.Layout.
func (Layout) Detect(c *safetensors.Checkpoint) bool {
	return c.Has(embeddings) || c.Has("token_decoder.embed_out.weight")
}

// Exports implements formats.Layout: Block Transformers.
func (Layout) Exports(cfg *arch.Config) bool { return cfg.IsBlock() }

// Name maps one of our tensor keys to its name in an official checkpoint.
func Name(component, name string) string {
	switch {
	case component == arch.Embedder:
		return "embedder." + name
	case component == arch.TokenDecoder && (name == arch.EmbedOut+".weight" || strings.HasPrefix(name, arch.Expand+".")):
		return "token_decoder." + name
	}
	return component + ".gpt_neox." + name
}

// The official projection layer is a Conv1d weight [D, De, L] (kernel and stride L over the
// block's token vectors); ours is the equivalent Linear [D, L*De] over their concatenation:
// ours[o, t*De+i] = official[o, i, t]. The expansion layer is a kernel-1 Conv1d [r*Dt, D, 1]; ours
// drops the unit axis (same bytes).

// projectionIn reorders an official projection weight into ours.
func projectionIn(raw []byte, elem, D, De, L int) []byte {
	return permute3(raw, elem, D, De, L, []int{0, 2, 1})
}

// projectionOut is the inverse of projectionIn.
func projectionOut(raw []byte, elem, D, De, L int) []byte {
	return permute3(raw, elem, D, L, De, []int{0, 2, 1})
}

// permute3 transposes a row-major [a, b, c] array of elem-byte elements by perm (output axis k is
// input axis perm[k]).
func permute3(raw []byte, elem, a, b, c int, perm []int) []byte {
	dims := []int{a, b, c}
	strides := []int{b * c, c, 1}
	od := []int{dims[perm[0]], dims[perm[1]], dims[perm[2]]}
	os := []int{strides[perm[0]], strides[perm[1]], strides[perm[2]]}
	out := make([]byte, len(raw))
	o := 0
	for i := 0; i < od[0]; i++ {
		for j := 0; j < od[1]; j++ {
			for k := 0; k < od[2]; k++ {
				src := (i*os[0] + j*os[1] + k*os[2]) * elem
				copy(out[o:o+elem], raw[src:src+elem])
				o += elem
			}
		}
	}
	return out
}

// Open implements formats.Layout. o.Config may be "" (then config.yaml beside the weights if
// present, else the shapes with o.Heads), an official config's name, or a YAML file.
func (Layout) Open(c *safetensors.Checkpoint, o formats.OpenOptions) (*formats.Model, error) {
	m := &formats.Model{Format: Format, Path: c.Dir}
	configPath := o.Config
	if configPath == "" {
		if p := filepath.Join(c.Dir, "config.yaml"); fsio.Exists(p) {
			configPath = p
		}
	}
	var err error
	var notes []string
	prov := arch.Provenance{}
	oo := openOptions{Heads: o.Heads, Decoding: o.Decoding}
	switch {
	case configPath == "":
		m.Config, notes, err = configFromShapes(c, oo, prov)
	case arch.IsReleased(configPath) && !fsio.Exists(configPath):
		m.Config, notes, err = configFromName(configPath, c, oo, prov)
	default:
		m.Config, notes, err = configFromYAML(configPath, c, oo, prov)
	}
	if err != nil {
		return nil, err
	}
	m.Notes = append(m.Notes, notes...)
	cfg := m.Config
	var tensors []*formats.Tensor
	used := map[string]bool{}
	for _, s := range arch.Tensors(cfg) {
		src := Name(s.Component, s.Name)
		info := c.Info(src)
		if info == nil {
			return nil, errs.Tensor(c.Dir, src, "missing from the checkpoint (the architecture needs it)")
		}
		used[src] = true
		t := formats.FromCheckpoint(c, src, s.Component, s.Name)
		switch src {
		case projection:
			D, De, L := cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.BlockLength
			if len(info.Shape) != 3 || info.Shape[0] != D || info.Shape[1] != De || info.Shape[2] != L {
				return nil, formats.ShapeError(t.SrcFile, src, info.Shape, arch.TensorSpec{Shape: []int{D, De, L},
					Dims: [][]string{s.Dims[0], {"embedder." + arch.KeyHidden}, {"block_length"}}}, prov)
			}
			elem := info.DType.Size()
			t = t.WithLoad(s.Component, s.Name, []int{D, L * De}, func() ([]byte, error) {
				raw, err := c.Raw(src)
				if err != nil {
					return nil, err
				}
				return projectionIn(raw, elem, D, De, L), nil
			})
		case expansion:
			if len(info.Shape) != 3 || info.Shape[2] != 1 {
				return nil, errs.Tensor(t.SrcFile, src, "shape %v, want [%d, %d, 1]", info.Shape, s.Shape[0], s.Shape[1])
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
		case neox.Buffer(name):
			m.Notes = append(m.Notes, "ignored buffer "+name)
		default:
			return nil, &errs.InputError{File: c.FileOf(name), Tensor: name, Msg: "not part of a Block Transformer with this architecture (check {Config})"}
		}
	}
	if m.Tensors, err = formats.Match(c.Dir, arch.Tensors(cfg), prov, tensors, Name); err != nil {
		return nil, err
	}
	m.OnClose(c)
	return m, nil
}

// Export implements formats.Layout: the official tensor names (the unused
// block_decoder.gpt_neox.embed_in.weight zero-filled, as the official code expects it), the
// Conv1d shapes, and a config.yaml in the official Hydra schema.
func (Layout) Export(m *formats.Model, dir string, o formats.ExportOptions) error {
	cfg := m.Config
	D, De, L := cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.BlockLength
	var wts []safetensors.WriteTensor
	for _, t := range m.Tensors {
		name := Name(t.Component, t.Name)
		switch name {
		case Name(arch.BlockDecoder, "layers.0."+arch.InputNorm+".weight"):
			// The unused embed_in goes first in the block decoder, zero-filled.
			dt := cmp.Or(o.DType, t.DType)
			V := cfg.VocabSize
			wts = append(wts, safetensors.WriteTensor{Name: unusedEmbedIn, DType: dt, Shape: []int{V, D},
				Data: func() ([]byte, error) { return make([]byte, V*D*dt.Size()), nil }})
			wts = append(wts, t.ToWrite(name, t.Shape, o.DType, nil))
		case projection:
			elem := t.DType.Size()
			wts = append(wts, t.ToWrite(name, []int{D, De, L}, o.DType, func(raw []byte) []byte { return projectionOut(raw, elem, D, De, L) }))
		case expansion:
			wts = append(wts, t.ToWrite(name, []int{t.Shape[0], t.Shape[1], 1}, o.DType, nil))
		default:
			wts = append(wts, t.ToWrite(name, t.Shape, o.DType, nil))
		}
	}
	y, err := yamlFor(o.Name, cfg)
	if err != nil {
		return err
	}
	return formats.WriteCheckpoint(dir, "config.yaml", y, wts, o)
}
