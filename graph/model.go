package graph

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/btconvert/btconvert/formats"
)

// Model is a model with its weights on a backend, ready to score and generate. Compiled graphs
// are kept and reused for the life of the Model.
type Model struct {
	Config  *formats.Config
	Backend backends.Backend
	DType   dtypes.DType
	Weights *Weights

	compiles  atomic.Int64
	calibKeys []string
	mu        sync.Mutex
	execs     map[string]*Exec
}

// ParseComputeDType maps --dtype to a GoMLX dtype.
func ParseComputeDType(s string) (dtypes.DType, error) {
	switch s {
	case "", "f32":
		return dtypes.Float32, nil
	case "bf16":
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("--dtype %q: want f32 or bf16", s)
}

// Load uploads m's weights to backend once; every graph of the returned Model reuses them.
func Load(m *formats.Model, backend backends.Backend, dt dtypes.DType) (*Model, error) {
	w, err := LoadWeights(m, backend)
	if err != nil {
		return nil, err
	}
	return &Model{Config: m.Config, Backend: backend, DType: dt, Weights: w, execs: map[string]*Exec{}}, nil
}

// Close frees the device weights and compiled graphs.
func (m *Model) Close() {
	for _, e := range m.execs {
		e.Finalize()
	}
	m.execs = nil
	m.Weights.Free()
}

// Compilations counts graphs built and compiled so far (each distinct graph once).
func (m *Model) Compilations() int64 { return m.compiles.Load() }

// exec returns the executor registered under key, creating it on first use. fn receives the
// builder and the non-weight inputs.
func (m *Model) exec(key string, fn func(b *builder, in []*Node) []*Node) (*Exec, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.execs[key]; ok {
		return e, nil
	}
	nW := len(m.Weights.Keys)
	e, err := NewExec(m.Backend, func(in []*Node) []*Node {
		m.compiles.Add(1)
		return fn(newBuilder(m.Weights, m.Config, m.DType, in, m.Backend.String() == "go"), in[nW:])
	})
	if err != nil {
		return nil, err
	}
	e.SetMaxCache(-1).WithName(key)
	m.execs[key] = e
	return e, nil
}

// run executes with the weights first, then args.
func (m *Model) run(e *Exec, args ...any) ([]*tensors.Tensor, error) {
	return e.Exec(m.Weights.args(args...)...)
}

// Score returns the logits for ids (row-major [B, T]) with the reference semantics: block models
// [B, T/L-1, L, V] (every token of blocks 1..n-1), vanilla [B, T, V] (position t predicts t+1).
func (m *Model) Score(ids []int32, B, T int) ([]float32, []int, error) {
	if len(ids) != B*T || B < 1 || T < 1 {
		return nil, nil, fmt.Errorf("score: %d ids for batch %d x length %d", len(ids), B, T)
	}
	if m.Config.IsBlock() {
		if L := m.Config.BlockLength; T%L != 0 || T < 2*L {
			return nil, nil, fmt.Errorf("score: length %d must be a multiple of the block length %d and at least two blocks", T, L)
		}
	}
	e, err := m.exec("score", func(b *builder, in []*Node) []*Node {
		if b.cfg.IsBlock() {
			return []*Node{b.scoreBlock(in[0])}
		}
		return []*Node{b.scoreVanilla(in[0])}
	})
	if err != nil {
		return nil, nil, err
	}
	out, err := m.run(e, tensors.FromFlatDataAndDimensions(ids, B, T))
	if err != nil {
		return nil, nil, err
	}
	defer out[0].FinalizeAll()
	v, err := tensors.CopyFlatData[float32](out[0])
	return v, out[0].Shape().Dimensions, err
}

// checkIDs rejects ids outside the vocabulary (Gather would clamp them silently).
func (m *Model) checkIDs(ids []int32) error {
	for _, id := range ids {
		if id < 0 || int(id) >= m.Config.VocabSize {
			return fmt.Errorf("token id %d is outside the vocabulary (0..%d)", id, m.Config.VocabSize-1)
		}
	}
	return nil
}

// EstimateMemory is a conservative estimate of the device bytes generation at batch B up to length
// tokens needs: the weights, the KV caches twice (a step reads the old and writes a new one), the
// attention scores of the prompt and the step's logits.
func (m *Model) EstimateMemory(B, length int) int64 {
	cfg := m.Config
	el := int64(m.DType.Size())
	cache := func(d *formats.DecoderConfig, S int) int64 {
		return int64(d.Layers) * 2 * int64(S) * int64(B) * int64(d.Hidden) * el
	}
	var kv, scores, logits int64
	if cfg.IsBlock() {
		S := length/cfg.BlockLength + 1
		kv = cache(cfg.BlockDecoder, S)
		scores = int64(B) * int64(cfg.BlockDecoder.Heads) * int64(S) * int64(S) * 4
		logits = int64(B) * int64(cfg.BlockLength) * int64(cfg.VocabSize) * 4 * 2
	} else {
		kv = cache(cfg.Decoder, length)
		scores = int64(B) * int64(cfg.Decoder.Heads) * int64(length) * int64(length) * 4
		logits = int64(B) * int64(cfg.VocabSize) * 4 * 2
	}
	return m.Weights.Bytes + 2*kv + scores + logits
}
