package graph

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Weights are a model's stored tensors, uploaded to the backend once and passed by reference to
// every executed graph. Quantized tensors stay packed (int8 / uint8 nibbles + scales) on the device.
type Weights struct {
	Keys    []string // "component/name" in parameter order
	Tensors []*tensors.Tensor
	Bytes   int64 // device-side bytes of all weights
	// InOut holds the keys of the Linear weights uploaded as [in, out] instead of PyTorch's
	// [out, in] (see LoadWeights).
	InOut map[string]bool
}

// LoadWeights uploads every tensor of m to backend. F16 is converted to F32 on the host, once,
// rather than in every graph run (a graph converts its weights to the compute dtype on each run);
// F32 and BF16 stay as stored; F16 quantization scales become F32.
//
// The float Linear weights (and a tied token table, which is also the head) go up transposed,
// [in, out], on both backends; on the go backend the int8 Linear codes too. Both backends multiply
// x [M, K] by a [K, N] operand faster than by a [N, K] one (BenchmarkMatmulRate,
// docs/BENCHMARKS.md; GoMLX v0.28.8, compute v0.1.6): the go backend's kernels 1.2x - 10x on these
// models' products (the D = 256 projections most), XLA's CPU plugin up to 1.8x (the vocabulary
// head 1.1x - 1.4x, none of them slower beyond the noise). On XLA the int8 codes stay [out, in],
// the layout of its integer product (qlinear).
func LoadWeights(m *formats.Model, backend compute.Backend) (*Weights, error) {
	w := &Weights{InOut: map[string]bool{}}
	inOut := map[string]bool{}
	onGo := kindOf(backend) == goBackend
	stacks := m.Config.Stacks()
	for _, s := range arch.Tensors(m.Config) {
		if s.Role == arch.RoleEmbedding && s.Part == arch.PartEmbedIn && stacks[s.Component] != nil && stacks[s.Component].Tied() &&
			m.Config.QuantOf(s.Component, s.Name) == nil {
			// A tied table is also the head, the largest product of a step: it goes up as [D, V]
			// too, and its lookups gather columns (embed).
			inOut[s.Key()] = true
			continue
		}
		if s.Role != arch.RoleLinear || len(s.Shape) != 2 {
			continue
		}
		switch q := m.Config.QuantOf(s.Component, s.Name); {
		case q == nil:
			inOut[s.Key()] = true
		case onGo && q.Scheme().Bits == 8 && !q.Scheme().Grouped: // int8 codes, read by qlinear as floats
			inOut[s.Key()+scheme.QWeightSuffix] = true
		}
	}
	ts := append([]*formats.Tensor(nil), m.Tensors...)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Key() < ts[j].Key() })
	for _, t := range ts {
		raw, err := t.Raw()
		if err != nil {
			return nil, err
		}
		var dt *tensors.Tensor
		switch t.DType {
		case safetensors.F32, safetensors.F16, safetensors.F64:
			f, err := safetensors.ToFloat32(t.DType, raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.Key(), err)
			}
			dt = upload(f, t.Shape, inOut[t.Key()])
		case safetensors.BF16:
			b := make([]bfloat16.BFloat16, len(raw)/2)
			for i := range b {
				b[i] = bfloat16.FromBits(binary.LittleEndian.Uint16(raw[2*i:]))
			}
			dt = upload(b, t.Shape, inOut[t.Key()])
		case safetensors.I8:
			b := make([]int8, len(raw))
			for i := range b {
				b[i] = int8(raw[i])
			}
			dt = upload(b, t.Shape, inOut[t.Key()])
		case safetensors.U8:
			dt = tensors.FromFlatDataAndDimensions(append([]uint8(nil), raw...), t.Shape...)
		default:
			return nil, &errs.InputError{File: t.SrcFile, Tensor: t.SrcName, Msg: fmt.Sprintf("dtype %s cannot be loaded as a weight", t.DType)}
		}
		if err := dt.MaterializeOnDevice(backend, true, 0); err != nil {
			return nil, fmt.Errorf("uploading %s: %w", t.Key(), err)
		}
		w.Keys = append(w.Keys, t.Key())
		if inOut[t.Key()] {
			w.InOut[t.Key()] = true
		}
		w.Tensors = append(w.Tensors, dt)
		w.Bytes += dt.ByteSize()
	}
	return w, nil
}

// upload is a host tensor of values with shape; a 2-D one transposed when inOut.
func upload[T float32 | bfloat16.BFloat16 | int8](v []T, shape []int, inOut bool) *tensors.Tensor {
	if !inOut {
		return tensors.FromFlatDataAndDimensions(v, shape...)
	}
	rows, cols := shape[0], shape[1]
	return tensors.FromFlatDataAndDimensions(transpose(v, rows, cols), cols, rows)
}

// transpose returns v [rows, cols] as [cols, rows], in tiles whose reads and writes stay in the
// cache (element by element, the writes of a wide row each land on another cache line), and a
// large one in bands of rows over the cores: 1.1 - 3.2 GB/s on these models' weights against the
// plain loop's 0.6 - 1.8 (BenchmarkTranspose).
func transpose[T any](v []T, rows, cols int) []T {
	const tile = 32
	t := make([]T, len(v))
	ctile := tile
	if cols <= 512 { // a narrow row's outputs all stay in the cache: no need to tile the columns
		ctile = cols
	}
	band := func(r0, r1 int) {
		for rt := r0; rt < r1; rt += tile {
			for ct := 0; ct < cols; ct += ctile {
				for r := rt; r < min(rt+tile, r1); r++ {
					row := v[r*cols : (r+1)*cols]
					for c := ct; c < min(ct+ctile, cols); c++ {
						t[c*rows+r] = row[c]
					}
				}
			}
		}
	}
	workers := 1
	if len(v) >= 1<<20 {
		workers = min(runtime.GOMAXPROCS(0), (rows+tile-1)/tile)
	}
	per := ((rows+workers-1)/workers + tile - 1) / tile * tile
	var wg sync.WaitGroup
	for r0 := 0; r0 < rows; r0 += per {
		wg.Go(func() { band(r0, min(r0+per, rows)) })
	}
	wg.Wait()
	return t
}

// Free releases the device buffers.
func (w *Weights) Free() {
	for _, t := range w.Tensors {
		t.FinalizeAll()
	}
	w.Tensors = nil
}

// args returns the weights as leading Exec arguments followed by extra.
func (w *Weights) args(extra ...any) []any {
	out := make([]any, 0, len(w.Tensors)+len(extra))
	for _, t := range w.Tensors {
		out = append(out, t)
	}
	return append(out, extra...)
}
