// Package lookup is the lookup embedder of a Block Transformer, in one place: the official code's
// base embedder class (cls lookup), a token table whose rows for a block's L tokens are the
// block's vectors, concatenated (or, projection_layer, put through one Linear by the embedder).
// It has no network and no key of its own in our config.json: an embedder without an encoder is
// this one.
//
// The package registers itself (init): its YAML resolution and tensor table with arch, its graph
// with graph. Importing it for that side effect is all a program does to read, run, quantize and
// write Block Transformers with a lookup embedder.
package lookup

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // the op vocabulary reads best unqualified

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/graph"
)

func init() {
	arch.RegisterEncoderClass(arch.ClassLookup, &arch.EncoderClass{Projection: arch.Concat, Resolve: resolve, Table: table})
	graph.RegisterEncoder(arch.ClassLookup, vectors, work)
}

// resolve reads the embedder section of a YAML: the table's width (hidden_size) and vocabulary,
// stated, or (the width) the official default, the block decoder's width over the block length.
func resolve(e arch.EmbedderSpec, sec arch.Section, p *arch.BlockParts) error {
	if e.CLSTokens != 0 {
		return fmt.Errorf("embedder.n_cls_tokens is for the roberta_cls embedder, not %s", arch.ClassLookup)
	}
	hidden, vocab := e.Hidden, e.Vocab
	for _, st := range e.Settings { // the keys that shape the table; the others do not
		var dst *int
		switch st.Key {
		case arch.KeyHidden:
			dst = &hidden
		case arch.KeyVocab:
			dst = &vocab
		default:
			continue
		}
		if st.Value == nil {
			continue // null: unsaid
		}
		n, err := arch.SizeSetting(sec, st)
		if err != nil {
			return err
		}
		*dst = n
	}
	p.Embedder.Dim, p.EmbedderOrigin, p.EmbedderVocab = hidden, sec.Origin(), vocab
	if hidden == 0 {
		D := p.BlockDecoder.Int(arch.KeyHidden)
		p.Embedder.Dim = D / p.BlockLength
		p.EmbedderOrigin = arch.Origin{Kind: arch.OriginFillIn,
			From: fmt.Sprintf("the official default (block decoder hidden_size %d / block_length %d)", D, p.BlockLength)}
	}
	return nil
}

// table is the embedder's one tensor, the token table [V, dim]; a block is its L rows.
func table(c *arch.Config) arch.EmbedderTable {
	id := arch.ID{Component: arch.Embedder, Part: arch.PartEmbeddings, Layer: arch.NoLayer, Param: arch.Weight}
	return arch.EmbedderTable{Specs: []arch.TensorSpec{arch.NewSpec(id, []int{c.VocabSize, c.Embedder.Dim},
		[][]string{{arch.KeyVocab}, {arch.Embedder + "." + arch.KeyHidden}}, "")}, VectorsKey: "block_length"}
}

// vectors is each block's L token vectors from the table, side by side: ids [B, n, L] ->
// [B, n, L*dim].
func vectors(o *graph.Ops, _ *arch.Config, ids *Node) *Node {
	B, n, L := ids.Shape().Dim(0), ids.Shape().Dim(1), ids.Shape().Dim(2)
	e := o.Embed(ids, arch.Embedder, arch.Embedding+".weight") // [B, n, L, dim]
	return Reshape(e, B, n, L*e.Shape().Dim(-1))
}

// work is the embedder's working memory: nothing beyond the vectors it returns.
func work(*arch.Config, int64) int64 { return 0 }
