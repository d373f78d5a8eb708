package graph

import (
	"fmt"
	"slices"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
)

// ComponentTimes is the time one generated block spends in each part of a Block Transformer, measured
// by running each part alone as its own graph at batch B against a block cache of S positions.
type ComponentTimes struct {
	Embedder, BlockDecoder, TokenDecoder time.Duration
}

// TimeComponents measures the embedder (one block), one block-decoder step and the L token-decoder
// steps of one block, each the median of reps runs after one warm-up.
func (e *Engine) TimeComponents(B, S, reps int) (*ComponentTimes, error) {
	cfg := e.Config
	if !cfg.IsBlock() {
		return nil, fmt.Errorf("component times are for block models")
	}
	L, layers := cfg.BlockLength, cfg.BlockDecoder.Layers
	D := cfg.BlockDecoder.Hidden
	embed, err := e.exec("split-embed", func(b *builder, in []*Node) []*Node {
		return []*Node{b.embedBlocks(InsertAxes(in[0], 1))}
	})
	if err != nil {
		return nil, err
	}
	step, err := e.exec(fmt.Sprintf("split-block/S=%d", S), func(b *builder, in []*Node) []*Node {
		// (caches..., x, pos, keyBias): a block decoder step on given block vectors (with caches
		// shared with the host, Engine.shareCaches, it returns the new keys and values alone, as in
		// generation).
		caches, x, pos, keyBias := readCaches(in, layers), in[2*layers], in[2*layers+1], in[2*layers+2]
		h := b.decoder(arch.BlockDecoder, cfg.BlockDecoder, x, Reshape(pos, 1), S, b.fixedCache(caches, pos, keyBias))
		out := []*Node{h}
		for _, c := range caches {
			out = append(out, c.k, c.v)
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	tok, err := e.exec("split-token", func(b *builder, in []*Node) []*Node {
		toks, logits, st := b.generateBlock(in[0], genState{rng: in[1]}, sampler{})
		return []*Node{toks, logits, st.rng}
	})
	if err != nil {
		return nil, err
	}
	ids := tensors.FromFlatDataAndDimensions(make([]int32, B*L), B, L)
	x := tensors.FromShape(shapes.Make(e.DType, B, 1, D))
	ctx := tensors.FromShape(shapes.Make(e.DType, B, D))
	rng, _ := RNGStateFromSeed(0)
	stepArgs := []any{}
	bd := cfg.BlockDecoder
	for i := 0; i < layers; i++ {
		stepArgs = append(stepArgs, tensors.FromShape(shapes.Make(e.DType, B, bd.KVHeadCount(), S, bd.HeadDim)),
			tensors.FromShape(shapes.Make(e.DType, B, bd.KVHeadCount(), bd.HeadDim, S)))
	}
	stepArgs = append(stepArgs, x, int32(S/2), tensors.FromShape(shapes.Make(dtypes.Float32, B, S)))
	timeIt := func(x *Exec, args ...any) (time.Duration, error) {
		var ds []time.Duration
		for r := 0; r <= reps; r++ {
			start := time.Now()
			out, err := e.run(x, args...)
			if err != nil {
				return 0, err
			}
			// Reading the (small) first output back waits for the device to finish.
			if err := out[0].ConstFlatData(func(any) {}); err != nil {
				return 0, err
			}
			freeAll(out)
			if r > 0 {
				ds = append(ds, time.Since(start))
			}
		}
		return median(ds), nil
	}
	var ct ComponentTimes
	if ct.Embedder, err = timeIt(embed, ids); err != nil {
		return nil, err
	}
	if ct.BlockDecoder, err = timeIt(step, stepArgs...); err != nil {
		return nil, err
	}
	if ct.TokenDecoder, err = timeIt(tok, ctx, rng); err != nil {
		return nil, err
	}
	return &ct, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
