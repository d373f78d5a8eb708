// Package official is the official Block Transformer checkpoint layout (the layout the paper
// authors' code saves and loads): one model.safetensors (or HF shards) with the official
// tensor names and the Hydra config.yaml that names each decoder's base model.
package official

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Format is the name of this layout.
const Format = "official-block-transformer"

// Layout reads and writes official Block Transformer checkpoints.
type Layout struct{}

var _ formats.Layout = Layout{}

// Format implements formats.Layout.
func (Layout) Format() string { return Format }

// Describe implements formats.Layout.
func (Layout) Describe() string {
	return "an official Block Transformer checkpoint (model.safetensors or shards, with its config.yaml or an official config named)"
}

// Detect implements formats.Layout.
func (Layout) Detect(c *safetensors.Checkpoint) bool {
	// The expansion layer is every Block Transformer's, whatever its classes (and whether this
	// program has their families).
	return c.Has(embeddings) || c.Has(embedOut) || c.Has(expansion) || hasClassTable(c)
}

// Exports implements formats.Layout: Block Transformers.
func (Layout) Exports(cfg *arch.Config) bool { return cfg.IsBlock() && neoxStacks(cfg) }

// neoxStacks reports whether every decoder stack of cfg is GPT-NeoX (the official code has no
// other family).
func neoxStacks(cfg *arch.Config) bool {
	for _, d := range cfg.Stacks() {
		if !d.IsNeoX() {
			return false
		}
	}
	return true
}

// projectionIn reorders an official projection weight [D, De, K] into ours [D, K*De].
func projectionIn(raw []byte, elem, D, De, K int) []byte {
	return permute3(raw, elem, D, De, K, []int{0, 2, 1})
}

// projectionOut is the inverse of projectionIn.
func projectionOut(raw []byte, elem, D, De, K int) []byte {
	return permute3(raw, elem, D, K, De, []int{0, 2, 1})
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
	tab := Table(cfg)
	notes, err = formats.CheckNames(arch.Tensors(cfg), specName(cfg), c.Names, expect(c, tab))
	if err != nil {
		return nil, err
	}
	m.Notes = append(m.Notes, notes...)
	var tensors []*formats.Tensor
	for i, e := range tab {
		if e.Spec == nil || e.Tied {
			continue
		}
		s, src := *e.Spec, e.Name
		info := c.Info(src)
		t := formats.FromCheckpoint(c, src, s.Component, s.Name)
		switch e.ID {
		case outside(arch.Embedder, arch.PartProjection):
			D, De, K := e.Shape[0], e.Shape[1], e.Shape[2]
			if !slices.Equal(info.Shape, e.Shape) {
				return nil, formats.ShapeError(t.SrcFile, src, info.Shape, arch.TensorSpec{Shape: e.Shape,
					Dims: [][]string{s.Dims[0], {"embedder." + arch.KeyHidden}, s.Dims[1][:1]}}, prov)
			}
			elem := info.DType.Size()
			t = t.WithLoad(s.Component, s.Name, s.Shape, func() ([]byte, error) {
				raw, err := c.Raw(src)
				if err != nil {
					return nil, err
				}
				return projectionIn(raw, elem, D, De, K), nil
			})
		case outside(arch.TokenDecoder, arch.PartExpansion):
			if len(info.Shape) != 3 || info.Shape[2] != 1 {
				return nil, errs.Tensor(t.SrcFile, src, "shape %v, want [%d, %d, 1]", info.Shape, e.Shape[0], e.Shape[1])
			}
			t.Shape = info.Shape[:2]
		}
		if t, err = withTied(c, t, tab[i+1:]); err != nil {
			return nil, err
		}
		tensors = append(tensors, t)
	}
	if m.Tensors, err = formats.Match(c.Dir, arch.Tensors(cfg), prov, tensors); err != nil {
		return nil, err
	}
	m.OnClose(c)
	return m, nil
}

// withTied checks the tied names of t that follow it in the table (those present): the same
// dtype and shape now, the same bytes when t is read.
func withTied(c *safetensors.Checkpoint, t *formats.Tensor, next []Entry) (*formats.Tensor, error) {
	var tied []string
	for _, e := range next {
		if !e.Tied {
			break
		}
		info := c.Info(e.Name)
		if info == nil {
			continue
		}
		if info.DType != t.DType || !slices.Equal(info.Shape, t.Shape) {
			return nil, errs.Tensor(c.FileOf(e.Name), e.Name, "%s%v, but it is tied to %s, which is %s%v", info.DType, info.Shape, t.SrcName, t.DType, t.Shape)
		}
		tied = append(tied, e.Name)
	}
	if len(tied) == 0 {
		return t, nil
	}
	src := t.SrcName
	return t.WithLoad(t.Component, t.Name, t.Shape, func() ([]byte, error) {
		raw, err := c.Raw(src)
		if err != nil {
			return nil, err
		}
		for _, n := range tied {
			other, err := c.Raw(n)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(raw, other) {
				return nil, errs.Tensor(c.FileOf(n), n, "differs from %s, to which it is tied (the official model holds one tensor under both names)", src)
			}
		}
		return raw, nil
	}), nil
}

// Export implements formats.Layout: the official tensor names (the unused
// block_decoder.gpt_neox.embed_in.weight zero-filled, as the official code expects it; a T5 token
// table under its three names), the Conv1d shapes, and a config.yaml in the official Hydra schema.
func (Layout) Export(m *formats.Model, dir string, o formats.ExportOptions) error {
	cfg := m.Config
	tab := Table(cfg)
	var wts []safetensors.WriteTensor
	used := 0
	for i, e := range tab {
		if e.Tied {
			// Another name of a tensor written already: the same bytes again.
			t := m.Tensor(e.Spec.Component, e.Spec.Name)
			if t == nil {
				return fmt.Errorf("%s: no tensor %s to export", m.Name(), e.Spec.Key())
			}
			wts = append(wts, t.ToWrite(e.Name, e.Shape, o.DType, nil))
			continue
		}
		if e.Spec == nil {
			// Zero-filled, in the dtype of the tensor after it.
			dt := o.DType
			if dt == "" && i+1 < len(tab) && tab[i+1].Spec != nil {
				if next := m.Tensor(tab[i+1].Spec.Component, tab[i+1].Spec.Name); next != nil {
					dt = next.DType
				}
			}
			n := 1
			for _, d := range e.Shape {
				n *= d
			}
			wts = append(wts, safetensors.WriteTensor{Name: e.Name, DType: dt, Shape: e.Shape,
				Data: func() ([]byte, error) { return make([]byte, n*dt.Size()), nil }})
			continue
		}
		used++
		t := m.Tensor(e.Spec.Component, e.Spec.Name)
		if t == nil {
			return fmt.Errorf("%s: no tensor %s to export", m.Name(), e.Spec.Key())
		}
		switch e.ID {
		case outside(arch.Embedder, arch.PartProjection):
			elem, D, De, K := t.DType.Size(), e.Shape[0], e.Shape[1], e.Shape[2]
			wts = append(wts, t.ToWrite(e.Name, e.Shape, o.DType, func(raw []byte) []byte { return projectionOut(raw, elem, D, De, K) }))
		default:
			wts = append(wts, t.ToWrite(e.Name, e.Shape, o.DType, nil))
		}
	}
	if used != len(m.Tensors) {
		return fmt.Errorf("%s: %d tensors, its config has %d", m.Name(), len(m.Tensors), used)
	}
	y, err := yamlFor(o.Name, cfg)
	if err != nil {
		return err
	}
	return formats.WriteCheckpoint(dir, "config.yaml", y, wts, o)
}
