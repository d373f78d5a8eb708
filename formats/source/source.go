// Package source opens whatever a path holds: a btconvert bundle, a btconvert model folder, or a
// checkpoint in one of the layouts btconvert reads.
package source

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Layouts are the checkpoint layouts btconvert reads and writes, tried in this order: the official
// code's, then those the families register (each family's Hugging Face layout).
var Layouts = []formats.Layout{official.Layout{}}

// Register adds a family's layout (from the family package's init).
func Register(l formats.Layout) { Layouts = append(Layouts, l) }

// Kind says what a path holds.
type Kind int

// What a path can hold.
const (
	Checkpoint Kind = iota
	Folder          // a btconvert model folder
	Bundle          // a .btz bundle
)

// KindOf says what path holds (without opening it).
func KindOf(path string) Kind {
	if modeldir.IsBundle(path) {
		return Bundle
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() && modeldir.IsDir(path) {
		return Folder
	}
	return Checkpoint
}

// Open opens anything btconvert reads. o applies to checkpoints only. Every file of our folder
// or bundle that is read is checked against the manifest (see modeldir.Open).
func Open(path string, o formats.OpenOptions) (*formats.Model, error) {
	kind := KindOf(path)
	if kind != Checkpoint {
		what := map[Kind]string{Folder: "a btconvert model folder", Bundle: "a btconvert bundle"}[kind]
		switch {
		case o.Config != "":
			return nil, &errs.InputError{File: path, Msg: "is " + what + "; {Config} applies to checkpoints only"}
		case len(o.Heads) != 0:
			return nil, &errs.InputError{File: path, Msg: "is " + what + "; {Heads} applies to checkpoints only"}
		case o.Decoding != "":
			return nil, &errs.InputError{File: path, Msg: "is " + what + "; {Decoding} applies to checkpoints only"}
		}
		var m *formats.Model
		var err error
		if kind == Bundle {
			m, err = modeldir.OpenBundle(path)
		} else {
			m, err = modeldir.Open(path)
		}
		if err == nil {
			m.TrackFingerprint()
		}
		return m, err
	}
	c, err := safetensors.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	for _, l := range Layouts {
		if l.Detect(c) {
			m, err := l.Open(c, o)
			if err != nil {
				c.Close()
				return nil, err
			}
			if m.Path == "" {
				m.Path = path
			}
			if m.ReadFile == nil {
				m.ReadFile = besideCheckpoint(c.Dir)
			}
			m.TrackFingerprint()
			return m, nil
		}
	}
	ex := c.Names
	if len(ex) > 3 {
		ex = ex[:3]
	}
	defer c.Close()
	for _, f := range familyLayouts {
		registered := slices.ContainsFunc(Layouts, func(l formats.Layout) bool { return l.Format() == f.format })
		if !registered && !slices.ContainsFunc(f.tensors, func(n string) bool { return !c.Has(n) }) {
			return nil, errs.File(path, "holds a %s checkpoint (%s), but this program was built without the %s family (package %s)",
				f.title, strings.Join(f.tensors, ", "), f.title, f.pkg)
		}
	}
	return nil, errs.File(path, "not a checkpoint of a layout btconvert reads (%s; tensors begin %v)", layoutNames(), ex)
}

// familyLayouts are btconvert's families with an HF layout: its format, the tensors its Detect
// looks for, and the family. A program built without one is told which, rather than that it reads
// no such layout.
var familyLayouts = []struct {
	format     string
	tensors    []string
	title, pkg string
}{
	{"hf-gpt-neox", []string{"gpt_neox.embed_in.weight"}, "GPT-NeoX", "families/gptneox"},
	{"hf-llama", []string{"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"}, "Llama", "families/llama"},
}

// ExportLayout is the layout a model of config cfg is exported in: the official Block Transformer
// layout for a block model with GPT-NeoX decoders, the HF layout of its family for a vanilla one;
// nil for a model no layout holds (a Block Transformer with another family's decoders).
func ExportLayout(cfg *arch.Config) formats.Layout {
	for _, l := range Layouts {
		if l.Exports(cfg) {
			return l
		}
	}
	return nil
}

// Describe lists what each layout reads, for help texts: "a, b or c".
func Describe() string {
	var d []string
	for _, l := range Layouts {
		d = append(d, l.Describe())
	}
	if len(d) < 2 {
		return strings.Join(d, "")
	}
	return strings.Join(d[:len(d)-1], ", ") + " or " + d[len(d)-1]
}

// layoutNames lists the layouts in words.
func layoutNames() string {
	var out []string
	for _, l := range Layouts {
		out = append(out, l.Format())
	}
	return strings.Join(out, ", ")
}

// besideCheckpoint reads the files next to a checkpoint's weights (nil, nil when absent).
func besideCheckpoint(dir string) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err != nil {
			return nil, nil
		}
		return fsio.ReadFile(p, fsio.ConfigLimit)
	}
}
