package graph

import (
	"fmt"
	"time"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// GenerateOptions controls Generate.
type GenerateOptions struct {
	MaxNewTokens int
	Sampling
	// KeepLogits returns the logits of every generated token (for the self-check).
	KeepLogits bool
	// OnTokens, if set, receives each row's new tokens as soon as they exist (a block at a time
	// for block models, a token at a time for vanilla).
	OnTokens func(rows [][]int32)
}

// Generation is the result of Generate.
type Generation struct {
	Tokens      [][]int32 // per row, MaxNewTokens generated tokens
	Logits      []float32 // [B, MaxNewTokens, V] when KeepLogits
	Prompt      [][]int32 // the prompts as run (block models: left-padded to whole blocks)
	PadTokens   int       // pad ids added on the left of every prompt
	PrefillTime time.Duration
	DecodeTime  time.Duration
	Steps       int // executed decode graphs after the prefill
}

// Generate continues every prompt (all of the same length) by MaxNewTokens tokens with KV caches.
//
// Block models: a prompt whose length is not a multiple of the block length is left-padded with
// the pad id, as the official code does; the pad tokens sit inside the first block, which is
// otherwise an ordinary block (never scored, never emitted). The block decoder keeps a cache of
// fixed length (prompt blocks + generated blocks) and takes one step per block; each step is one
// executed graph that embeds the last block, runs the block decoder step and the L token decoder
// steps (unrolled, local cache reset per block) and samples in the graph.
//
// Vanilla models: one graph per token against a fixed-length cache.
func (m *Model) Generate(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	B := len(prompts)
	if B == 0 || len(prompts[0]) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if o.MaxNewTokens < 1 {
		return nil, fmt.Errorf("generate: --max-new-tokens must be at least 1")
	}
	T := len(prompts[0])
	for _, p := range prompts {
		if len(p) != T {
			return nil, fmt.Errorf("generate: prompts of a batch must have the same length (%d and %d)", T, len(p))
		}
		if err := m.checkIDs(p); err != nil {
			return nil, err
		}
	}
	if m.Config.IsBlock() {
		return m.generateBlocks(prompts, o)
	}
	return m.generateTokens(prompts, o)
}

// seedState is the sampler's generator state for a seed.
func seedState(s Sampling) (*tensors.Tensor, error) { return RNGStateFromSeed(int64(s.Seed)) }

// collect appends a [B, k] int32 token tensor to rows, and [B, k, V] logits if wanted.
func collect(g *Generation, toks, logits *tensors.Tensor, keep bool, logitRows [][]float32) ([][]int32, error) {
	v, err := tensors.CopyFlatData[int32](toks)
	if err != nil {
		return nil, err
	}
	B := toks.Shape().Dim(0)
	k := len(v) / B
	fresh := make([][]int32, B)
	for b := 0; b < B; b++ {
		fresh[b] = v[b*k : (b+1)*k]
		g.Tokens[b] = append(g.Tokens[b], fresh[b]...)
	}
	if keep {
		lv, err := tensors.CopyFlatData[float32](logits)
		if err != nil {
			return nil, err
		}
		per := len(lv) / B
		for b := 0; b < B; b++ {
			logitRows[b] = append(logitRows[b], lv[b*per:(b+1)*per]...)
		}
	}
	return fresh, nil
}

func finishLogits(g *Generation, rows [][]float32, maxNew, V int) {
	for _, r := range rows {
		g.Logits = append(g.Logits, r[:maxNew*V]...)
	}
}

func (m *Model) generateBlocks(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	cfg := m.Config
	L := cfg.BlockLength
	B, T := len(prompts), len(prompts[0])
	g := &Generation{Tokens: make([][]int32, B), PadTokens: (L - T%L) % L}
	flat := make([]int32, 0, B*(T+g.PadTokens))
	for _, p := range prompts {
		row := make([]int32, g.PadTokens, T+g.PadTokens)
		for i := range row {
			row[i] = int32(cfg.PadTokenID)
		}
		row = append(row, p...)
		g.Prompt = append(g.Prompt, row)
		flat = append(flat, row...)
	}
	n := (T + g.PadTokens) / L
	nBlocks := (o.MaxNewTokens + L - 1) / L
	S := n + nBlocks // block decoder positions ever written (the last block is never fed back)
	s := sampler{o.Sampling}
	layers := cfg.BlockDecoder.Layers
	key := fmt.Sprintf("block/S=%d/%+v", S, o.Sampling)
	prefill, err := m.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		ids, rng := in[0], in[1]
		B, n := ids.Shape().Dim(0), ids.Shape().Dim(1) // from the inputs: this graph serves every batch and prompt
		var keep []kv
		h := b.decoder("block_decoder", cfg.BlockDecoder, b.embedBlocks(ids), iotaPos(b.g, 0, n), S, causal(&keep))
		ctx := Reshape(Slice(h, AxisRange(), AxisElem(n-1)), B, -1)
		toks, logits, rng := b.generateBlock(ctx, rng, s)
		return withCaches([]*Node{toks, logits, rng}, keep, S)
	})
	if err != nil {
		return nil, err
	}
	step, err := m.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		caches := cachesIn(in, layers)
		pos, last, rng := in[2*layers], in[2*layers+1], in[2*layers+2]
		B := last.Shape().Dim(0)
		x := b.embedBlocks(Reshape(last, B, 1, L))
		h := b.decoder("block_decoder", cfg.BlockDecoder, x, Reshape(pos, 1), S, fixedCache(caches, pos))
		toks, logits, rng := b.generateBlock(Reshape(h, B, -1), rng, s)
		return withCaches([]*Node{toks, logits, rng}, caches, S)
	})
	if err != nil {
		return nil, err
	}
	rng, err := seedState(o.Sampling)
	if err != nil {
		return nil, err
	}
	// Block decoder position of the block fed at step i (the prompt fills 0..n-1).
	if err := m.decode(g, o, prefill, step, nBlocks-1, func(i int) int32 { return int32(n + i) },
		tensors.FromFlatDataAndDimensions(flat, B, n, L), rng); err != nil {
		return nil, err
	}
	for b := range g.Tokens {
		g.Tokens[b] = g.Tokens[b][:o.MaxNewTokens]
	}
	return g, nil
}

func (m *Model) generateTokens(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	cfg := m.Config
	B, T := len(prompts), len(prompts[0])
	g := &Generation{Tokens: make([][]int32, B), Prompt: prompts}
	flat := make([]int32, 0, B*T)
	for _, p := range prompts {
		flat = append(flat, p...)
	}
	S := T + o.MaxNewTokens
	s := sampler{o.Sampling}
	layers := cfg.Decoder.Layers
	key := fmt.Sprintf("vanilla/S=%d/%+v", S, o.Sampling)
	prefill, err := m.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		ids, rng := in[0], in[1]
		B, T := ids.Shape().Dim(0), ids.Shape().Dim(1)
		var keep []kv
		h := b.vanillaHidden(ids, iotaPos(b.g, 0, T), S, causal(&keep))
		last := b.vanillaHead(Reshape(Slice(h, AxisRange(), AxisElem(T-1)), B, -1)) // head on the last position only
		tok, rng := s.sample(last, rng)
		return withCaches([]*Node{InsertAxes(tok, -1), InsertAxes(last, 1), rng}, keep, S)
	})
	if err != nil {
		return nil, err
	}
	step, err := m.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		caches := cachesIn(in, layers)
		pos, tok, rng := in[2*layers], in[2*layers+1], in[2*layers+2]
		B := tok.Shape().Dim(0)
		logits := b.vanillaForward(tok, Reshape(pos, 1), S, fixedCache(caches, pos))
		last := Reshape(logits, B, -1)
		next, rng := s.sample(last, rng)
		return withCaches([]*Node{InsertAxes(next, -1), InsertAxes(last, 1), rng}, caches, S)
	})
	if err != nil {
		return nil, err
	}
	rng, err := seedState(o.Sampling)
	if err != nil {
		return nil, err
	}
	if err := m.decode(g, o, prefill, step, o.MaxNewTokens-1, func(i int) int32 { return int32(T + i) },
		tensors.FromFlatDataAndDimensions(flat, B, T), rng); err != nil {
		return nil, err
	}
	return g, nil
}

// decode runs the prefill graph once and the step graph steps times. Both return (tokens, logits,
// rng, caches...); a step takes (caches..., position, the last tokens, rng), all fed back from the
// previous call's outputs without leaving the device.
func (m *Model) decode(g *Generation, o GenerateOptions, prefill, step *Exec, steps int, pos func(i int) int32, prefillArgs ...any) error {
	logitRows := make([][]float32, len(g.Tokens))
	emit := func(out []*tensors.Tensor) error {
		fresh, err := collect(g, out[0], out[1], o.KeepLogits, logitRows)
		if err == nil && o.OnTokens != nil {
			o.OnTokens(fresh)
		}
		return err
	}
	start := time.Now()
	out, err := m.run(prefill, prefillArgs...)
	if err != nil {
		return err
	}
	g.PrefillTime = time.Since(start)
	if err := emit(out); err != nil {
		return err
	}
	start = time.Now()
	for i := 0; i < steps; i++ {
		args := make([]any, 0, len(out))
		for _, c := range out[3:] {
			args = append(args, c)
		}
		args = append(args, pos(i), out[0], out[2])
		next, err := m.run(step, args...)
		freeAll(out)
		if err != nil {
			return err
		}
		out = next
		g.Steps++
		if err := emit(out); err != nil {
			return err
		}
	}
	freeAll(out)
	g.DecodeTime = time.Since(start)
	if o.KeepLogits {
		finishLogits(g, logitRows, o.MaxNewTokens, m.Config.VocabSize)
	}
	return nil
}

// cachesIn reads the leading 2*layers inputs of a step graph as its caches.
func cachesIn(in []*Node, layers int) []kv {
	caches := make([]kv, layers)
	for i := range caches {
		caches[i] = kv{in[2*i], in[2*i+1]}
	}
	return caches
}

// withCaches appends each layer's cache, padded to S positions, to a graph's outputs.
func withCaches(out []*Node, caches []kv, S int) []*Node {
	for _, c := range caches {
		out = append(out, padCache(c.k, S), padCache(c.v, S))
	}
	return out
}

// padCache extends a cache [n, B, H, hd] with zeros to [S, B, H, hd].
func padCache(c *Node, S int) *Node {
	n := c.Shape().Dim(0)
	if n == S {
		return c
	}
	dims := append([]int{S - n}, c.Shape().Dimensions[1:]...)
	return Concatenate([]*Node{c, Zeros(c.Graph(), shapes.Make(c.DType(), dims...))}, 0)
}

func freeAll(ts []*tensors.Tensor) {
	for _, t := range ts {
		t.FinalizeAll()
	}
}
