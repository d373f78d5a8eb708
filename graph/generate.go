package graph

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
)

// GenerateOptions controls Generate.
type GenerateOptions struct {
	MaxNewTokens int
	Sampling
	// StopAtEOS ends a row at the model's end-of-sequence id (arch.Config.EOSTokenID, or one of
	// its StopTokenIDs); that id is not part of the row's tokens.
	StopAtEOS bool
	// Stop, if set, is shown a row's generated tokens whenever new ones arrive and returns how many
	// of them to keep if the row ends there (a stop string was generated), else -1.
	Stop func(row int, tokens []int32) int
	// KeepLogits returns the logits of every generated token (for the self-check); no row may stop
	// early then.
	KeepLogits bool
	// OnTokens, if set, receives each row's new tokens as soon as they exist (a block at a time
	// for block models, a token at a time for vanilla); nothing past where a row stopped.
	OnTokens func(rows [][]int32)
	// OfficialPositions generates as the official code's generate does rather than as its forward
	// (and training) computes: with prefix decoding, each block's r expanded vectors all take
	// rotary position 0 and its k-th token position k, where the forward gives them 0..r-1 and
	// r-1+k (transformers derives generate's position ids from a one-token attention mask while
	// the prefix is prepended). The same for every other decoding, and for r = 1.
	OfficialPositions bool
}

// Finish says why a row ended.
type Finish string

const (
	FinishLength Finish = "length" // MaxNewTokens were generated
	FinishEOS    Finish = "eos"    // the end-of-sequence id
	FinishStop   Finish = "stop"   // GenerateOptions.Stop ended it
)

// Generation is the result of Generate.
type Generation struct {
	Tokens [][]int32 // per row, the generated tokens: MaxNewTokens unless the row stopped
	Finish []Finish  // per row
	Logits []float32 // [B, MaxNewTokens, V] when KeepLogits
	// Prompt is the prompts as run: left-padded with the pad id to the longest (block models: to
	// whole blocks); Pad is how many pad ids each row got.
	Prompt      [][]int32
	Pad         []int
	PrefillTime time.Duration
	DecodeTime  time.Duration
	// CompileTime is the time spent compiling the prefill and step graphs (0 once compiled):
	// never part of PrefillTime or DecodeTime.
	CompileTime time.Duration
	Steps       int // executed decode graphs after the prefill
}

// Generate continues every prompt by up to MaxNewTokens tokens with KV caches.
//
// Prompts of different lengths are left-padded with the pad id to the longest, and block models'
// prompts further to whole blocks, as the official code does. Pad positions are masked out of
// attention (pad blocks for block models: a block partly padded is an ordinary block, as in the
// official code), so a row generates what it would alone; positions stay absolute, and rotary
// attention depends only on their differences.
//
// Block models keep a block decoder cache of fixed length (prompt blocks + generated blocks) and
// take one step per block; each step is one executed graph that embeds the last block, runs the
// block decoder step and the L token decoder steps (unrolled, local cache reset per block) and
// samples in the graph. Vanilla models: one graph per token against a fixed-length cache.
// Generation ends early when every row has stopped.
func (e *Engine) Generate(prompts [][]int32, o GenerateOptions) (*Generation, error) {
	if len(prompts) == 0 {
		return nil, errs.Option("Prompt", nil, "no prompt")
	}
	if o.MaxNewTokens < 1 {
		return nil, errs.Option("MaxNewTokens", o.MaxNewTokens, "must be at least 1")
	}
	if err := o.Sampling.Validate(); err != nil {
		return nil, err
	}
	if o.KeepLogits && (o.StopAtEOS || o.Stop != nil) {
		return nil, errs.Option("KeepLogits", true, "keeps every row's MaxNewTokens logits: rows cannot stop early then")
	}
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, errs.Option("Prompt", nil, "prompt %d is empty", i)
		}
		if err := e.checkIDs(p); err != nil {
			return nil, err
		}
	}
	run := e.generateTokens
	if e.Config.IsBlock() {
		run = e.generateBlocks
	}
	return run(padLeft(prompts, e.Config), o)
}

// padded is a batch of prompts left-padded to one length.
type padded struct {
	ids  []int32 // [B, T] row-major
	rows [][]int32
	pad  []int
	T    int
}

// padLeft pads every prompt on the left with the pad id to the longest one, rounded up to whole
// blocks for a block model.
func padLeft(prompts [][]int32, cfg *arch.Config) padded {
	T := 0
	for _, p := range prompts {
		T = max(T, len(p))
	}
	if cfg.IsBlock() {
		L := cfg.BlockLength
		T = (T + L - 1) / L * L
	}
	out := padded{T: T}
	for _, p := range prompts {
		row := make([]int32, T)
		n := T - len(p)
		for i := range n {
			row[i] = int32(cfg.PadTokenID)
		}
		copy(row[n:], p)
		out.rows = append(out.rows, row)
		out.pad = append(out.pad, n)
		out.ids = append(out.ids, row...)
	}
	return out
}

// keyBias is the additive attention mask over the S positions of a cache, [B, S]: -1e9 where a
// row's position is all padding (unit tokens per position: 1 for a vanilla model, the block
// length for a block model), else 0.
func (p padded) keyBias(S, unit int) *tensors.Tensor {
	B := len(p.rows)
	v := make([]float32, B*S)
	for b, n := range p.pad {
		for s := 0; s < n/unit; s++ {
			v[b*S+s] = maskedOut
		}
	}
	return tensors.FromFlatDataAndDimensions(v, B, S)
}

// seen is the repetition penalty's initial state, [B, V]: 1 for every id of a row's prompt
// (padding excluded).
func (p padded) seen(V int) *tensors.Tensor {
	B := len(p.rows)
	v := make([]float32, B*V)
	for b, row := range p.rows {
		for _, id := range row[p.pad[b]:] {
			v[b*V+int(id)] = 1
		}
	}
	return tensors.FromFlatDataAndDimensions(v, B, V)
}

// The generation graphs' arguments and results after the weights (caches are each layer's keys
// then values, in the layouts of cache.go; state is the sampler's, genState):
//
//	prefill(ids, keyBias, state...)                -> (tokens, logits, state..., caches...)
//	step(caches..., pos, last, keyBias, state...)  -> (tokens, logits, state..., caches...)
//
// A step's arguments are the previous call's results, fed back without leaving the device.

// stepIn names a step graph's arguments.
type stepIn struct {
	caches             []kv
	pos, last, keyBias *Node
	state              genState
}

func readStepIn(in []*Node, layers int, s sampler) stepIn {
	n := 2 * layers
	return stepIn{caches: readCaches(in, layers), pos: in[n], last: in[n+1], keyBias: in[n+2], state: s.readState(in[n+3:])}
}

// readCaches reads the leading 2*layers arguments as each layer's keys and values.
func readCaches(in []*Node, layers int) []kv {
	caches := make([]kv, layers)
	for i := range caches {
		caches[i] = kv{k: in[2*i], v: in[2*i+1]}
	}
	return caches
}

// stepOut names the results of both generation graphs.
type stepOut struct {
	tokens, logits *Node
	state          genState
	caches         []kv
}

// nodes lists the results, each cache padded to S positions.
func (o stepOut) nodes(S int) []*Node {
	out := append([]*Node{o.tokens, o.logits}, o.state.nodes()...)
	return append(out, cacheNodes(o.caches, S)...)
}

// cacheNodes lists each layer's keys and values as results, padded to S positions.
func cacheNodes(caches []kv, S int) []*Node {
	var out []*Node
	for _, c := range caches {
		if c.fresh {
			out = append(out, c.k, c.v)
			continue
		}
		out = append(out, padCache(c.k, keySeqAxis, S), padCache(c.v, valueSeqAxis, S))
	}
	return out
}

// stepResult is the host side of stepOut: its tensors, of which nState are the sampler's state.
type stepResult struct {
	ts     []*tensors.Tensor
	nState int
}

func (r stepResult) tokens() *tensors.Tensor { return r.ts[0] }
func (r stepResult) logits() *tensors.Tensor { return r.ts[1] }

// nextShapes is the shapes of next's arguments.
func (r stepResult) nextShapes(keyBias *tensors.Tensor) []shapes.Shape {
	outs := make([]shapes.Shape, len(r.ts))
	for i, t := range r.ts {
		outs[i] = t.Shape()
	}
	return stepArgShapes(outs, r.nState, keyBias.Shape())
}

// stepArgShapes is the shapes of the arguments of the step after a graph whose results have the
// shapes outs (tokens, logits, nState of sampler state, then the caches), as next lays them out.
func stepArgShapes(outs []shapes.Shape, nState int, keyBias shapes.Shape) []shapes.Shape {
	out := append([]shapes.Shape(nil), outs[2+nState:]...)
	out = append(out, shapes.Make(dtypes.Int32), outs[0], keyBias)
	return append(out, outs[2:2+nState]...)
}

// stateTensors is the sampler's state arguments as tensors.
func stateTensors(state []any) []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(state))
	for i, s := range state {
		out[i] = s.(*tensors.Tensor)
	}
	return out
}

// next is the arguments of the step that follows, at position pos. The caches are the shared ones
// when there are (Engine.shareCaches); else r's, donated (the go backend updates them in place),
// and invalid here afterwards.
func (r stepResult) next(pos int32, keyBias *tensors.Tensor, b compute.Backend, shared []*tensors.Tensor) ([]any, error) {
	args := make([]any, 0, len(r.ts)+2)
	for _, c := range shared {
		args = append(args, c)
	}
	for _, c := range r.ts[2+r.nState:] {
		if shared != nil {
			break
		}
		d, err := DonateTensorBuffer(c, b, 0)
		if err != nil {
			return nil, err
		}
		args = append(args, d)
	}
	args = append(args, pos, r.tokens(), keyBias)
	for _, t := range r.ts[2 : 2+r.nState] {
		args = append(args, t)
	}
	return args, nil
}

func (r stepResult) free() { freeAll(r.ts) }

func (e *Engine) generateBlocks(p padded, o GenerateOptions) (*Generation, error) {
	cfg := e.Config
	L := cfg.BlockLength
	n := p.T / L
	nBlocks := (o.MaxNewTokens + L - 1) / L
	S := n + nBlocks // block decoder positions ever written (the last block is never fed back)
	s := sampler{o.Sampling}
	layers := cfg.BlockDecoder.Layers
	key := fmt.Sprintf("block/S=%d/%s/official=%t", S, s.key(), o.OfficialPositions)
	// With CompileLess the prefill and the step end at the block decoder's context and its caches
	// (they take no sampler state), and the token graph generates the block from the context.
	split := e.CompileLess
	var gg genGraphs
	var err error
	if split {
		key += "/ctx"
		if gg.token, err = e.exec(fmt.Sprintf("token/%s/official=%t", s.key(), o.OfficialPositions), func(b *builder, in []*Node) []*Node {
			b.officialPositions = o.OfficialPositions
			toks, logits, st := b.generateBlock(in[0], s.readState(in[1:]), s)
			return stepOut{toks, logits, st, nil}.nodes(S)
		}); err != nil {
			return nil, err
		}
	}
	// block is a graph's results from the block decoder's context ctx [B, D] on: the block it
	// generates (state: the sampler's state arguments) and the caches, or only ctx and the caches.
	block := func(b *builder, ctx *Node, state []*Node, caches []kv) []*Node {
		if split {
			return append([]*Node{ctx}, cacheNodes(caches, S)...)
		}
		toks, logits, st := b.generateBlock(ctx, s.readState(state), s)
		return stepOut{toks, logits, st, caches}.nodes(S)
	}
	if gg.prefill, err = e.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		b.officialPositions = o.OfficialPositions
		ids, keyBias := in[0], in[1]
		B, n := ids.Shape().Dim(0), ids.Shape().Dim(1) // from the inputs: this graph serves every batch and prompt
		var keep []kv
		h := b.decoder(arch.BlockDecoder, cfg.BlockDecoder, b.embedBlocks(ids), iotaPos(b.g, 0, n), S, b.causal(&keep, keyBias))
		return block(b, Reshape(Slice(h, AxisRange(), AxisElem(n-1)), B, -1), in[2:], keep)
	}); err != nil {
		return nil, err
	}
	if gg.step, err = e.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		b.officialPositions = o.OfficialPositions
		nc := 2 * layers
		caches, pos, last, keyBias := readCaches(in, layers), in[nc], in[nc+1], in[nc+2]
		B := last.Shape().Dim(0)
		x := b.embedBlocks(Reshape(last, B, 1, L))
		h := b.decoder(arch.BlockDecoder, cfg.BlockDecoder, x, Reshape(pos, 1), S, b.fixedCache(caches, pos, keyBias))
		return block(b, Reshape(h, B, -1), in[nc+3:], caches)
	}); err != nil {
		return nil, err
	}
	// Block decoder position of the block fed at step i (the prompt fills 0..n-1).
	return e.decode(p, o, s, gg, nBlocks-1, func(i int) int32 { return int32(n + i) },
		tensors.FromFlatDataAndDimensions(p.ids, len(p.rows), n, L), p.keyBias(S, L))
}

func (e *Engine) generateTokens(p padded, o GenerateOptions) (*Generation, error) {
	cfg := e.Config
	T := p.T
	S := T + o.MaxNewTokens
	s := sampler{o.Sampling}
	layers := cfg.Decoder.Layers
	key := fmt.Sprintf("vanilla/S=%d/%s", S, s.key())
	prefill, err := e.exec("prefill-"+key, func(b *builder, in []*Node) []*Node {
		ids, keyBias, st := in[0], in[1], s.readState(in[2:])
		B, T := ids.Shape().Dim(0), ids.Shape().Dim(1)
		var keep []kv
		h := b.vanillaHidden(ids, iotaPos(b.g, 0, T), S, b.causal(&keep, keyBias))
		last := b.vanillaHead(Reshape(Slice(h, AxisRange(), AxisElem(T-1)), B, -1)) // head on the last position only
		tok, st := s.sample(last, st)
		return stepOut{InsertAxes(tok, -1), InsertAxes(last, 1), st, keep}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	step, err := e.exec("step-"+key, func(b *builder, in []*Node) []*Node {
		st := readStepIn(in, layers, s)
		B := st.last.Shape().Dim(0)
		logits := b.vanillaForward(st.last, Reshape(st.pos, 1), S, b.fixedCache(st.caches, st.pos, st.keyBias))
		last := Reshape(logits, B, -1)
		next, state := s.sample(last, st.state)
		return stepOut{InsertAxes(next, -1), InsertAxes(last, 1), state, st.caches}.nodes(S)
	})
	if err != nil {
		return nil, err
	}
	return e.decode(p, o, s, genGraphs{prefill: prefill, step: step}, o.MaxNewTokens-1, func(i int) int32 { return int32(T + i) },
		tensors.FromFlatDataAndDimensions(p.ids, len(p.rows), T), p.keyBias(S, 1))
}

// genGraphs are a generation's graphs: the prefill and the step, and with CompileLess the token
// graph, which generates a block from the context they end at (nil: they generate it).
type genGraphs struct{ prefill, step, token *Exec }

// run runs x (the prefill or the step) on args, whose last nState are the sampler's state, and
// returns what a graph that generates the block returns: tokens, logits, state..., caches....
func (gg genGraphs) run(e *Engine, x *Exec, args []any, nState int) ([]*tensors.Tensor, error) {
	if gg.token == nil {
		return e.run(x, args...)
	}
	res, err := e.run(x, args[:len(args)-nState]...) // ctx, caches...
	if err != nil {
		return nil, err
	}
	out, err := e.run(gg.token, append([]any{res[0]}, args[len(args)-nState:]...)...)
	res[0].FinalizeAll()
	if err != nil {
		freeAll(res[1:])
		return nil, err
	}
	return append(out, res[1:]...), nil
}

// compile compiles the graphs for a generation of B rows from prefill arguments of the shapes
// args (the sampler's state last, nState of them) and reports the wall time it took; the step's
// graph when steps may run (withStep), overlapped with the prefill's (compileOverlapped: where
// every row stops in the first block it was compiled for nothing, which the overlap mostly hides),
// and the token graph alongside both. stepDone reports whether the step's graph was compiled
// here (if not, decode compiles it after the prefill has run).
func (gg genGraphs) compile(e *Engine, args []shapes.Shape, nState int, keyBias shapes.Shape, B int, withStep bool) (took time.Duration, stepDone bool, err error) {
	prefillArgs, state := args, args[len(args)-nState:]
	tokenDone := make(chan error, 1)
	tokenPanic := make(chan any, 1)
	if gg.token != nil {
		prefillArgs = args[:len(args)-nState]
		ctx := shapes.Make(e.DType, B, e.Config.BlockDecoder.Hidden)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					tokenPanic <- r
					tokenDone <- nil
				}
			}()
			_, err := e.compileShapes(gg.token, append([]shapes.Shape{ctx}, state...)...)
			tokenDone <- err
		}()
	} else {
		tokenDone <- nil
	}
	defer func() { // a panic while building the token graph reaches the caller, after the others
		if r := recover(); r != nil {
			<-tokenDone
			panic(r)
		}
		select {
		case r := <-tokenPanic:
			panic(r)
		default:
		}
	}()
	before, start := e.compiles.Load(), time.Now()
	if withStep {
		_, stepDone, err = e.compileOverlapped(gg.prefill, gg.prefill.Name(), prefillArgs, gg.step, func(outs []shapes.Shape) []shapes.Shape {
			if gg.token == nil {
				return stepArgShapes(outs, nState, keyBias)
			}
			// ctx, caches... -> caches..., pos, last block [B, L], keyBias
			return append(append([]shapes.Shape(nil), outs[1:]...), shapes.Make(dtypes.Int32), shapes.Make(dtypes.Int32, B, e.Config.BlockLength), keyBias)
		})
	} else {
		_, err = e.compileShapes(gg.prefill, prefillArgs...)
	}
	err = errors.Join(err, <-tokenDone)
	if e.compiles.Load() != before {
		took = time.Since(start)
	}
	return took, stepDone, err
}

// stepShapes is the shapes of the step graph's arguments after the results out.
func (gg genGraphs) stepShapes(out stepResult, keyBias *tensors.Tensor) []shapes.Shape {
	shs := out.nextShapes(keyBias)
	if gg.token != nil {
		shs = shs[:len(shs)-out.nState] // the step takes no sampler state
	}
	return shs
}

// decode runs the prefill graph once on ids and the step graph up to steps times, each step fed
// the previous results, until every row has stopped.
func (e *Engine) decode(p padded, o GenerateOptions, s sampler, gg genGraphs, steps int, pos func(i int) int32, ids, keyBias *tensors.Tensor) (*Generation, error) {
	defer ids.FinalizeAll()
	defer keyBias.FinalizeAll()
	rng, err := RNGStateFromSeed(int64(o.Seed))
	if err != nil {
		return nil, err
	}
	state := []any{rng}
	if s.penalized() {
		seen := p.seen(e.Config.VocabSize)
		defer seen.FinalizeAll()
		state = append(state, seen)
	}
	rows := newRows(p, o, e.Config)
	g := rows.g
	args := append([]any{ids, keyBias}, state...)
	argShapes := []shapes.Shape{ids.Shape(), keyBias.Shape()}
	for _, t := range stateTensors(state) {
		argShapes = append(argShapes, t.Shape())
	}
	c, stepCompiled, err := gg.compile(e, argShapes, len(state), keyBias.Shape(), len(p.rows), steps > 0)
	if err != nil {
		return nil, err
	}
	g.CompileTime += c
	start := time.Now()
	res, err := gg.run(e, gg.prefill, args, len(state))
	if err != nil {
		return nil, err
	}
	out := stepResult{res, len(state)}
	g.PrefillTime = time.Since(start)
	if err := rows.emit(out); err != nil {
		out.free()
		return nil, err
	}
	var decode time.Duration
	var shared []*tensors.Tensor // the caches the steps read, where the host writes them
	if e.shareCaches() && steps > 0 && rows.live > 0 {
		start := time.Now()
		if shared, err = shareCaches(e.Backend, out.ts[2+out.nState:]); err != nil {
			out.free()
			return nil, err
		}
		defer freeAll(shared)
		decode += time.Since(start) // the steps' time: they read these copies
	}
	for i := 0; i < steps && rows.live > 0; i++ {
		start := time.Now()
		if i == 0 && !stepCompiled { // the step's shapes are the prefill's outputs'
			if c, err = e.compileShapes(gg.step, gg.stepShapes(out, keyBias)...); err != nil {
				out.free()
				return nil, err
			}
			g.CompileTime += c
			decode -= c
		}
		args, err := out.next(pos(i), keyBias, e.Backend, shared)
		if err != nil {
			out.free()
			return nil, err
		}
		res, err := gg.run(e, gg.step, args, len(state))
		out.free()
		if err != nil {
			return nil, err
		}
		out = stepResult{res, len(state)}
		if shared != nil {
			if err := writeFresh(shared, out.ts[2+out.nState:], int(pos(i))); err != nil {
				out.free()
				return nil, err
			}
		}
		g.Steps++
		err = rows.emit(out)
		decode += time.Since(start)
		if err != nil {
			out.free()
			return nil, err
		}
	}
	out.free()
	g.DecodeTime = decode
	if o.KeepLogits {
		V := e.Config.VocabSize
		for _, r := range rows.logits {
			g.Logits = append(g.Logits, r[:o.MaxNewTokens*V]...)
		}
	}
	return g, nil
}

// rows follows each row of a generation: its tokens so far, and where it stops.
type rows struct {
	g      *Generation
	o      GenerateOptions
	eos    []int32     // the EOS and the model's further stop ids
	live   int         // rows still generating
	logits [][]float32 // per row, when KeepLogits
}

func newRows(p padded, o GenerateOptions, cfg *arch.Config) *rows {
	B := len(p.rows)
	g := &Generation{Tokens: make([][]int32, B), Finish: make([]Finish, B), Prompt: p.rows, Pad: p.pad}
	eos := []int32{int32(cfg.EOSTokenID)}
	for _, id := range cfg.StopTokenIDs {
		eos = append(eos, int32(id))
	}
	return &rows{g: g, o: o, eos: eos, live: B, logits: make([][]float32, B)}
}

// emit takes one result's tokens [B, k] (and logits [B, k, V] when kept): each live row gets them
// up to where it stops, and OnTokens is shown what each row got.
func (r *rows) emit(out stepResult) error {
	v, err := tensors.CopyFlatData[int32](out.tokens())
	if err != nil {
		return err
	}
	B := len(r.g.Tokens)
	k := len(v) / B
	fresh := make([][]int32, B)
	for b := range B {
		if r.g.Finish[b] != "" {
			continue
		}
		toks := v[b*k : (b+1)*k]
		toks = toks[:min(len(toks), r.o.MaxNewTokens-len(r.g.Tokens[b]))]
		var why Finish
		if i := slices.IndexFunc(toks, func(t int32) bool { return slices.Contains(r.eos, t) }); r.o.StopAtEOS && i >= 0 {
			toks, why = toks[:i], FinishEOS
		}
		before := len(r.g.Tokens[b])
		r.g.Tokens[b] = append(r.g.Tokens[b], toks...)
		if r.o.Stop != nil {
			if n := r.o.Stop(b, r.g.Tokens[b]); n >= 0 {
				n = min(n, len(r.g.Tokens[b]))
				r.g.Tokens[b] = r.g.Tokens[b][:n]
				toks, why = toks[:max(0, n-before)], FinishStop
			}
		}
		if why == "" && len(r.g.Tokens[b]) == r.o.MaxNewTokens {
			why = FinishLength
		}
		if why != "" {
			r.g.Finish[b] = why
			r.live--
		}
		fresh[b] = toks
	}
	if r.o.KeepLogits {
		lv, err := tensors.CopyFlatData[float32](out.logits())
		if err != nil {
			return err
		}
		per := len(lv) / B
		for b := range B {
			r.logits[b] = append(r.logits[b], lv[b*per:(b+1)*per]...)
		}
	}
	if r.o.OnTokens != nil {
		r.o.OnTokens(fresh)
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

// shareCaches copies each of caches (a prefill's, on the device) into a new buffer shared with the
// host, which the steps read and the host writes (Engine.shareCaches).
func shareCaches(b compute.Backend, caches []*tensors.Tensor) ([]*tensors.Tensor, error) {
	shared := make([]*tensors.Tensor, 0, len(caches))
	for _, c := range caches {
		t, err := tensors.FromShapeForBackend(b, 0, c.Shape())
		if err != nil {
			freeAll(shared)
			return nil, err
		}
		shared = append(shared, t)
		var inner error
		if err := c.ConstFlatData(func(src any) {
			inner = t.MutableFlatData(func(dst any) { reflect.Copy(reflect.ValueOf(dst), reflect.ValueOf(src)) })
		}); err != nil || inner != nil {
			freeAll(shared)
			return nil, errors.Join(err, inner)
		}
	}
	return shared, nil
}

// writeFresh writes a step's new keys and values (fresh: per layer keys [B, KVH, 1, hd] and values
// [B, KVH, hd, 1]) at position pos of the shared caches (keys [B, KVH, S, hd], values
// [B, KVH, hd, S]). No step reads them meanwhile: go-xla's Execute returns once the step has run
// (PJRT's ExecuteAndWait in go-xla v0.4.5); an asynchronous one would need a wait here first.
func writeFresh(shared, fresh []*tensors.Tensor, pos int) error {
	if len(fresh) != len(shared) {
		return fmt.Errorf("generate: %d new keys and values for %d caches", len(fresh), len(shared))
	}
	for i, f := range fresh {
		axis := keySeqAxis
		if i%2 == 1 {
			axis = valueSeqAxis
		}
		dims, fdims := shared[i].Shape().Dimensions, f.Shape().Dimensions
		want := slices.Clone(dims)
		want[axis] = 1
		if !slices.Equal(fdims, want) || f.DType() != shared[i].DType() || pos < 0 || pos >= dims[axis] {
			return fmt.Errorf("generate: new keys or values %s for a cache %s at position %d", f.Shape(), shared[i].Shape(), pos)
		}
		S, inner := dims[axis], 1
		for _, d := range dims[axis+1:] {
			inner *= d
		}
		var werr, derr error
		err := f.ConstFlatData(func(src any) {
			werr = shared[i].MutableFlatData(func(dst any) {
				switch dst := dst.(type) {
				case []float32:
					writeAt(dst, src.([]float32), S, inner, pos)
				case []bfloat16.BFloat16:
					writeAt(dst, src.([]bfloat16.BFloat16), S, inner, pos)
				case []float16.Float16:
					writeAt(dst, src.([]float16.Float16), S, inner, pos)
				case []float64:
					writeAt(dst, src.([]float64), S, inner, pos)
				default:
					derr = fmt.Errorf("generate: a cache of %T", dst)
				}
			})
		})
		if err = errors.Join(err, werr, derr); err != nil {
			return err
		}
	}
	return nil
}

// writeAt copies src [outer, 1, inner] to position pos of dst [outer, S, inner].
func writeAt[T any](dst, src []T, S, inner, pos int) {
	for o := range len(src) / inner {
		at := (o*S + pos) * inner
		copy(dst[at:at+inner], src[o*inner:(o+1)*inner])
	}
}

func freeAll(ts []*tensors.Tensor) {
	for _, t := range ts {
		t.FinalizeAll()
	}
}
