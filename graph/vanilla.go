package graph

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/arch"
)

// A vanilla model: embed_in -> its decoder stack (GPT-NeoX or a registered family) -> embed_out.

// vanillaHidden runs tokens ids [B, T] at positions pos through the stack with attend: [B, T, D].
func (b *builder) vanillaHidden(ids, pos *Node, maxPos int, attend attendFn) *Node {
	x := b.embed(ids, arch.Decoder, arch.EmbedIn+".weight")
	return b.decoder(arch.Decoder, b.cfg.Decoder, x, pos, maxPos, attend)
}

// vanillaHead is the output projection, in float32.
func (b *builder) vanillaHead(h *Node) *Node {
	return ConvertDType(b.linear(h, arch.Decoder, b.cfg.Decoder.HeadName(), false), dtypes.Float32)
}

// vanillaForward is vanillaHidden followed by the head: logits [B, T, V].
func (b *builder) vanillaForward(ids, pos *Node, maxPos int, attend attendFn) *Node {
	return b.vanillaHead(b.vanillaHidden(ids, pos, maxPos, attend))
}

// scoreVanilla returns logits [B, T, V]: position t predicts token t+1.
func (b *builder) scoreVanilla(ids *Node) *Node {
	T := ids.Shape().Dim(1)
	return b.vanillaForward(ids, iotaPos(b.g, 0, T), T, b.causal(nil, nil))
}
