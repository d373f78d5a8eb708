package graph

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/formats"
)

// The vanilla GPT-NeoX model: embed_in -> the same decoder stack -> embed_out.

// vanillaForward runs tokens ids [B, T] at positions start.. through the stack with attend and
// returns logits [B, T, V] (float32).
func (b *builder) vanillaForward(ids, pos *Node, maxPos int, attend attendFn) *Node {
	d := b.cfg.Decoder
	x := b.embed(ids, formats.Decoder, "embed_in.weight")
	h := b.decoder(formats.Decoder, d, x, pos, maxPos, attend)
	return ConvertDType(b.linear(h, formats.Decoder, "embed_out", false), dtypes.Float32)
}

// scoreVanilla returns logits [B, T, V]: position t predicts token t+1.
func (b *builder) scoreVanilla(ids *Node) *Node {
	T := ids.Shape().Dim(1)
	return b.vanillaForward(ids, iotaPos(b.g, 0, T), T, causal(nil))
}
