package official

import (
	"fmt"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Name is the official name of our tensor id in a model of config cfg: an embedder's or token
// decoder's of a registered class (classes.go) as that class's modules name it; the lookup
// embedder's under "embedder.", the token decoder's expansion layer and output head under
// "token_decoder.", everything else in its decoder's GPT-NeoX model ("block_decoder.gpt_neox.").
func Name(cfg *arch.Config, id arch.ID) string {
	if k := classOf(cfg, id); k != nil {
		return id.Component + "." + familyName(k.Modules, k.Layer, id)
	}
	return neoxName(id)
}

// neoxName is the official name of a tensor of the lookup embedder or a GPT-NeoX decoder.
func neoxName(id arch.ID) string {
	switch {
	case id.Component == arch.Embedder:
		return "embedder." + id.Name()
	case id.Part == arch.PartExpansion || id.Part == arch.PartEmbedOut:
		return id.Component + "." + id.Name()
	}
	return stackPrefix(id.Component) + id.Name()
}

// familyName is the name of id in a family's table, a layer's part under layer (a format with the
// layer index).
func familyName(modules map[arch.Part]string, layer string, id arch.ID) string {
	name := modules[id.Part] + "." + id.Param.String()
	if id.Layer >= 0 {
		name = fmt.Sprintf(layer, id.Layer) + name
	}
	return name
}

// stackPrefix is where a decoder's GPT-NeoX model is in an official checkpoint.
func stackPrefix(comp string) string { return comp + ".gpt_neox." }

// specName is the official name of each spec of a model of config cfg.
func specName(cfg *arch.Config) func(arch.TensorSpec) string {
	return func(s arch.TensorSpec) string { return Name(cfg, s.ID()) }
}

// outside is the identity of a weight outside the layers.
func outside(comp string, p arch.Part) arch.ID {
	return arch.ID{Component: comp, Part: p, Layer: arch.NoLayer, Param: arch.Weight}
}

// unusedEmbedIn is the block decoder's token embeddings: the official block decoder is a whole
// GPT-NeoX model, so every official checkpoint has them, but its input is the embedder's vectors.
var unusedEmbedIn = outside(arch.BlockDecoder, arch.PartEmbedIn)

// Official names read before there is a config (to detect the layout and read the shapes).
var (
	embeddings = neoxName(outside(arch.Embedder, arch.PartEmbeddings))
	projection = neoxName(outside(arch.Embedder, arch.PartProjection))
	expansion  = neoxName(outside(arch.TokenDecoder, arch.PartExpansion))
	embedOut   = neoxName(outside(arch.TokenDecoder, arch.PartEmbedOut))
)

// Entry is one tensor of the official checkpoint of a model: its identity, its official name and
// shape, and the spec of ours it holds (nil for a tensor the model never reads). A tied entry is
// another name of the tensor of its spec (a T5 token decoder's table): it may be absent, and where
// present it must equal the tensor.
type Entry struct {
	ID    arch.ID
	Name  string
	Shape []int
	Spec  *arch.TensorSpec
	Tied  bool
}

// Table is the official checkpoint of a model of config cfg, in our order, the unused embed_in
// first in the block decoder (where the official model has it), the tied names of a T5 token
// table after it.
//
// The official projection layer is a Conv1d weight [D, De, K] (kernel and stride K over the
// block's K vectors); ours is the equivalent Linear [D, K*De] over their concatenation:
// ours[o, t*De+i] = official[o, i, t]. The expansion layer is a kernel-1 Conv1d [r*Dt, D, 1]; ours
// drops the unit axis (same bytes).
func Table(cfg *arch.Config) []Entry {
	specs := arch.Tensors(cfg)
	var out []Entry
	for i := range specs {
		s := &specs[i]
		if s.Component == arch.BlockDecoder && (i == 0 || specs[i-1].Component != arch.BlockDecoder) {
			out = append(out, Entry{ID: unusedEmbedIn, Name: Name(cfg, unusedEmbedIn), Shape: []int{cfg.VocabSize, cfg.BlockDecoder.Hidden}})
		}
		shape := s.Shape
		switch s.ID() {
		case outside(arch.Embedder, arch.PartProjection):
			shape = []int{cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.Embedder.Vectors(cfg.BlockLength)}
		case outside(arch.TokenDecoder, arch.PartExpansion):
			shape = []int{s.Shape[0], s.Shape[1], 1}
		}
		out = append(out, Entry{ID: s.ID(), Name: Name(cfg, s.ID()), Shape: shape, Spec: s})
		if k := classOf(cfg, s.ID()); k != nil && s.ID() == k.Table {
			for _, n := range k.TableCopies {
				out = append(out, Entry{ID: s.ID(), Name: n, Shape: shape, Spec: s, Tied: true})
			}
		}
	}
	return out
}

// expect is what an official checkpoint of the table tab may hold beyond its model's tensors
// (the unused entries of the table, tied names, old HF buffers), and the messages of the check.
func expect(c *safetensors.Checkpoint, tab []Entry) formats.Expect {
	unused, tied := map[string]bool{}, map[string]string{}
	primary := ""
	for _, e := range tab {
		switch {
		case e.Spec == nil:
			unused[e.Name] = true
		case e.Tied:
			tied[e.Name] = primary
		default:
			primary = e.Name
		}
	}
	return formats.Expect{File: c.Dir, FileOf: c.FileOf,
		Missing:    "missing from the checkpoint (the architecture needs it)",
		Unexpected: "not part of a Block Transformer with this architecture (check {Config})",
		Extra: func(name string) (string, bool) {
			switch {
			case unused[name]:
				return "dropped " + name + " (present in official checkpoints, never used by the model)", true
			case tied[name] != "":
				return name + " is the same tensor as " + tied[name] + " (tied; checked equal when read, kept once)", true
			case Buffer(name) || classBuffer(name):
				return "ignored buffer " + name, true
			}
			return "", false
		}}
}
