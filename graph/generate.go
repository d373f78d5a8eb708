package graph

import (
	"fmt"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/errs"
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
func (e *Engine) Generate(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	B := len(prompts)
	if B == 0 || len(prompts[0]) == 0 {
		return nil, errs.Option("Prompt", nil, "empty prompt")
	}
	if o.MaxNewTokens < 1 {
		return nil, errs.Option("MaxNewTokens", o.MaxNewTokens, "must be at least 1")
	}
	if err := o.Sampling.Validate(); err != nil {
		return nil, err
	}
	T := len(prompts[0])
	for _, p := range prompts {
		if len(p) != T {
			return nil, errs.Option("Prompt", nil, "prompts of a batch must have the same length (%d and %d)", T, len(p))
		}
		if err := e.checkIDs(p); err != nil {
			return nil, err
		}
	}
	if e.Config.IsBlock() {
		return e.generateBlocks(prompts, o)
	}
	return e.generateTokens(prompts, o)
}

// The generation graphs' arguments and results after the weights (caches are each layer's keys
// then values, layout [S, B, H, hd]):
//
//	prefill(ids, rng)                -> (tokens, logits, rng, caches...)
//	step(caches..., pos, last, rng)  -> (tokens, logits, rng, caches...)
//
// A step's arguments are the previous call's results, fed back without leaving the device.

// stepIn names a step graph's arguments.
type stepIn struct {
	caches         []kv
	pos, last, rng *Node
}

func readStepIn(in []*Node, layers int) stepIn {
	return stepIn{caches: readCaches(in, layers), pos: in[2*layers], last: in[2*layers+1], rng: in[2*layers+2]}
}

// readCaches reads the leading 2*layers arguments as each layer's keys and values.
func readCaches(in []*Node, layers int) []kv {
	caches := make([]kv, layers)
	for i := range caches {
		caches[i] = kv{in[2*i], in[2*i+1]}
	}
	return caches
}

// stepOut names the results of both generation graphs.
type stepOut struct {
	tokens, logits, rng *Node
	caches              []kv
}

// nodes lists the results, each cache padded to S positions.
func (o stepOut) nodes(S int) []*Node {
	out := []*Node{o.tokens, o.logits, o.rng}
	for _, c := range o.caches {
		out = append(out, padCache(c.k, keySeqAxis, S), padCache(c.v, valueSeqAxis, S))
	}
	return out
}

// stepResult is the host side of stepOut.
type stepResult []*tensors.Tensor

func (r stepResult) tokens() *tensors.Tensor { return r[0] }
func (r stepResult) logits() *tensors.Tensor { return r[1] }

// next is the arguments of the step that follows, at position pos. The caches are donated: the
// step updates them in place, and they are invalid here afterwards.
func (r stepResult) next(pos int32, b compute.Backend) ([]any, error) {
	args := make([]any, 0, len(r))
	for _, c := range r[3:] {
		d, err := DonateTensorBuffer(c, b, 0)
		if err != nil {
			return nil, err
		}
		args = append(args, d)
	}
	return append(args, pos, r[0], r[2]), nil
}

func (r stepResult) free() {
	for _, t := range r {
		t.FinalizeAll()
	}
}

// samplingKey names the sampling settings that shape a graph; the seed is not one of them (it only
// initialises the generator state, a runtime input).
func samplingKey(s Sampling) string {
	return fmt.Sprintf("t=%g/k=%d/p=%g", s.Temperature, s.TopK, s.TopP)
}

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

func (e *Engine) generateBlocks(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	cfg := e.Config
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
	key := fmt.Sprintf("block/S=%d/%s", S, samplingKey(o.Sampling))
	prefill, err := e.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		ids, rng := in[0], in[1]
		B, n := ids.Shape().Dim(0), ids.Shape().Dim(1) // from the inputs: this graph serves every batch and prompt
		var keep []kv
		h := b.decoder(arch.BlockDecoder, cfg.BlockDecoder, b.embedBlocks(ids), iotaPos(b.g, 0, n), S, b.causal(&keep))
		ctx := Reshape(Slice(h, AxisRange(), AxisElem(n-1)), B, -1)
		toks, logits, rng := b.generateBlock(ctx, rng, s)
		return stepOut{toks, logits, rng, keep}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	step, err := e.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		st := readStepIn(in, layers)
		B := st.last.Shape().Dim(0)
		x := b.embedBlocks(Reshape(st.last, B, 1, L))
		h := b.decoder(arch.BlockDecoder, cfg.BlockDecoder, x, Reshape(st.pos, 1), S, b.fixedCache(st.caches, st.pos))
		toks, logits, rng := b.generateBlock(Reshape(h, B, -1), st.rng, s)
		return stepOut{toks, logits, rng, st.caches}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	// Block decoder position of the block fed at step i (the prompt fills 0..n-1).
	if err := e.decode(g, o, prefill, step, nBlocks-1, func(i int) int32 { return int32(n + i) },
		tensors.FromFlatDataAndDimensions(flat, B, n, L)); err != nil {
		return nil, err
	}
	for b := range g.Tokens {
		g.Tokens[b] = g.Tokens[b][:o.MaxNewTokens]
	}
	return g, nil
}

func (e *Engine) generateTokens(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	cfg := e.Config
	B, T := len(prompts), len(prompts[0])
	g := &Generation{Tokens: make([][]int32, B), Prompt: prompts}
	flat := make([]int32, 0, B*T)
	for _, p := range prompts {
		flat = append(flat, p...)
	}
	S := T + o.MaxNewTokens
	s := sampler{o.Sampling}
	layers := cfg.Decoder.Layers
	key := fmt.Sprintf("vanilla/S=%d/%s", S, samplingKey(o.Sampling))
	prefill, err := e.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		ids, rng := in[0], in[1]
		B, T := ids.Shape().Dim(0), ids.Shape().Dim(1)
		var keep []kv
		h := b.vanillaHidden(ids, iotaPos(b.g, 0, T), S, b.causal(&keep))
		last := b.vanillaHead(Reshape(Slice(h, AxisRange(), AxisElem(T-1)), B, -1)) // head on the last position only
		tok, rng := s.sample(last, rng)
		return stepOut{InsertAxes(tok, -1), InsertAxes(last, 1), rng, keep}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	step, err := e.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		st := readStepIn(in, layers)
		B := st.last.Shape().Dim(0)
		logits := b.vanillaForward(st.last, Reshape(st.pos, 1), S, b.fixedCache(st.caches, st.pos))
		last := Reshape(logits, B, -1)
		next, rng := s.sample(last, st.rng)
		return stepOut{InsertAxes(next, -1), InsertAxes(last, 1), rng, st.caches}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	if err := e.decode(g, o, prefill, step, o.MaxNewTokens-1, func(i int) int32 { return int32(T + i) },
		tensors.FromFlatDataAndDimensions(flat, B, T)); err != nil {
		return nil, err
	}
	return g, nil
}

// decode runs the prefill graph once on ids and the step graph steps times, each step fed the
// previous results.
func (e *Engine) decode(g *Generation, o GenerateOptions, prefill, step *Exec, steps int, pos func(i int) int32, ids *tensors.Tensor) error {
	rng, err := RNGStateFromSeed(int64(o.Seed))
	if err != nil {
		return err
	}
	logitRows := make([][]float32, len(g.Tokens))
	emit := func(out stepResult) error {
		fresh, err := collect(g, out.tokens(), out.logits(), o.KeepLogits, logitRows)
		if err == nil && o.OnTokens != nil {
			o.OnTokens(fresh)
		}
		return err
	}
	start := time.Now()
	res, err := e.run(prefill, ids, rng)
	if err != nil {
		return err
	}
	out := stepResult(res)
	g.PrefillTime = time.Since(start)
	if err := emit(out); err != nil {
		out.free()
		return err
	}
	start = time.Now()
	for i := 0; i < steps; i++ {
		args, err := out.next(pos(i), e.Backend)
		if err != nil {
			out.free()
			return err
		}
		res, err := e.run(step, args...)
		out.free()
		if err != nil {
			return err
		}
		out = res
		g.Steps++
		if err := emit(out); err != nil {
			out.free()
			return err
		}
	}
	out.free()
	g.DecodeTime = time.Since(start)
	if o.KeepLogits {
		V := e.Config.VocabSize
		for _, r := range logitRows {
			g.Logits = append(g.Logits, r[:o.MaxNewTokens*V]...)
		}
	}
	return nil
}

// padCache extends a cache with zeros to S positions along its sequence axis.
func padCache(c *Node, axis, S int) *Node {
	n := c.Shape().Dim(axis)
	if n == S {
		return c
	}
	dims := append([]int(nil), c.Shape().Dimensions...)
	dims[axis] = S - n
	return Concatenate([]*Node{c, Zeros(c.Graph(), shapes.Make(c.DType(), dims...))}, axis)
}

func freeAll(ts []*tensors.Tensor) {
	for _, t := range ts {
		t.FinalizeAll()
	}
}
