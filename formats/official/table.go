package official

import (
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/neox"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Name is the official name of our tensor id: the embedder's under "embedder.", the token
// decoder's expansion layer and output head under "token_decoder.", everything else in its
// decoder's GPT-NeoX model ("block_decoder.gpt_neox.").
func Name(id arch.ID) string {
	switch {
	case id.Component == arch.Embedder:
		return "embedder." + id.Name()
	case id.Part == arch.PartExpansion || id.Part == arch.PartEmbedOut:
		return id.Component + "." + id.Name()
	}
	return stackPrefix(id.Component) + id.Name()
}

// stackPrefix is where a decoder's GPT-NeoX model is in an official checkpoint.
func stackPrefix(comp string) string { return comp + ".gpt_neox." }

func specName(s arch.TensorSpec) string { return Name(s.ID()) }

// outside is the identity of a weight outside the layers.
func outside(comp string, p arch.Part) arch.ID {
	return arch.ID{Component: comp, Part: p, Layer: arch.NoLayer, Param: arch.Weight}
}

// unusedEmbedIn is the block decoder's token embeddings: the official block decoder is a whole
// GPT-NeoX model, so every official checkpoint has them, but its input is the embedder's vectors.
var unusedEmbedIn = outside(arch.BlockDecoder, arch.PartEmbedIn)

// Official names read before there is a config (to detect the layout and read the shapes).
var (
	embeddings = Name(outside(arch.Embedder, arch.PartEmbeddings))
	projection = Name(outside(arch.Embedder, arch.PartProjection))
	expansion  = Name(outside(arch.TokenDecoder, arch.PartExpansion))
	embedOut   = Name(outside(arch.TokenDecoder, arch.PartEmbedOut))
)

// Entry is one tensor of the official checkpoint of a model: its identity, its official name and
// shape, and the spec of ours it holds (nil for a tensor the model never reads).
type Entry struct {
	ID    arch.ID
	Name  string
	Shape []int
	Spec  *arch.TensorSpec
}

// Table is the official checkpoint of a model of config cfg, in our order, the unused embed_in
// first in the block decoder (where the official model has it).
//
// The official projection layer is a Conv1d weight [D, De, L] (kernel and stride L over the
// block's token vectors); ours is the equivalent Linear [D, L*De] over their concatenation:
// ours[o, t*De+i] = official[o, i, t]. The expansion layer is a kernel-1 Conv1d [r*Dt, D, 1]; ours
// drops the unit axis (same bytes).
func Table(cfg *arch.Config) []Entry {
	specs := arch.Tensors(cfg)
	var out []Entry
	for i := range specs {
		s := &specs[i]
		if s.Component == arch.BlockDecoder && (i == 0 || specs[i-1].Component != arch.BlockDecoder) {
			out = append(out, Entry{ID: unusedEmbedIn, Name: Name(unusedEmbedIn), Shape: []int{cfg.VocabSize, cfg.BlockDecoder.Hidden}})
		}
		shape := s.Shape
		switch s.ID() {
		case outside(arch.Embedder, arch.PartProjection):
			shape = []int{cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.BlockLength}
		case outside(arch.TokenDecoder, arch.PartExpansion):
			shape = []int{s.Shape[0], s.Shape[1], 1}
		}
		out = append(out, Entry{ID: s.ID(), Name: Name(s.ID()), Shape: shape, Spec: s})
	}
	return out
}

// expect is what an official checkpoint of the table tab may hold beyond its model's tensors
// (the unused entries of the table, old HF buffers), and the messages of the check.
func expect(c *safetensors.Checkpoint, tab []Entry) formats.Expect {
	unused := map[string]bool{}
	for _, e := range tab {
		if e.Spec == nil {
			unused[e.Name] = true
		}
	}
	return formats.Expect{File: c.Dir, FileOf: c.FileOf,
		Missing:    "missing from the checkpoint (the architecture needs it)",
		Unexpected: "not part of a Block Transformer with this architecture (check {Config})",
		Extra: func(name string) (string, bool) {
			switch {
			case unused[name]:
				return "dropped " + name + " (present in official checkpoints, never used by the model)", true
			case neox.Buffer(name):
				return "ignored buffer " + name, true
			}
			return "", false
		}}
}
