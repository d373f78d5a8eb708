package graph

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

// matmulShapes are the products that dominate the models: a square product, the vocabulary head of
// the paper models (N=50304, K=256) at several batch sizes, and the D = 256 layers (attention, FFN
// 1024 as in block_main_b4_5, FFN 4096 as in vanilla_31, at one row as in a decode step at batch 1
// and at sixteen).
var matmulShapes = []struct{ M, N, K int }{{1024, 1024, 1024}, {1, 50304, 256}, {4, 50304, 256}, {16, 50304, 256}, {64, 50304, 256}, {1, 768, 256}, {16, 768, 256}, {16, 256, 256}, {16, 1024, 256}, {16, 256, 1024}, {1, 4096, 256}, {1, 256, 4096}, {16, 4096, 256}, {16, 256, 4096}}

// BenchmarkMatmulRate measures the backend's matmul rate (GFLOP/s) on those shapes, x [M, K]
// times a weight stored [N, K] (PyTorch's Linear layout, "out_in") or [K, N] ("in_out", how
// LoadWeights puts float Linear weights on both backends), on the go backend or, with
// BTCONVERT_BENCH_XLA set, on XLA's CPU plugin:
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench MatmulRate -benchtime 5x
func BenchmarkMatmulRate(b *testing.B) {
	be := testfix.Backend(b)
	if os.Getenv("BTCONVERT_BENCH_XLA") != "" {
		be = testfix.XLA(b)
	}
	for _, s := range matmulShapes {
		for _, layout := range []struct {
			name      string
			contract  int
			wRows, wC int
		}{{"out_in", 1, s.N, s.K}, {"in_out", 0, s.K, s.N}} {
			b.Run(fmt.Sprintf("%s/M%d_N%d_K%d", layout.name, s.M, s.N, s.K), func(b *testing.B) {
				e := MustNewExec(be, func(x, w *Node) *Node {
					return DotGeneral(x, []int{1}, nil, w, []int{layout.contract}, nil)
				})
				x := tensors.FromFlatDataAndDimensions(randFloats(s.M*s.K, 1), s.M, s.K)
				w := tensors.FromFlatDataAndDimensions(randFloats(s.N*s.K, 2), layout.wRows, layout.wC)
				e.MustCall(x, w)[0].FinalizeAll() // compile
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					out := e.MustCall(x, w)
					out[0].FinalizeAll()
				}
				b.ReportMetric(2*float64(s.M*s.N*s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkTranspose measures how fast LoadWeights turns a float32 Linear weight [out, in] into
// [in, out] on the host (the vocabulary head of the paper models, a D = 1024 FFN, a D = 2048 FFN), in
// GB/s of weights:
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench Transpose -benchtime 10x
func BenchmarkTranspose(b *testing.B) {
	for _, s := range [][2]int{{50304, 256}, {1024, 4096}, {8192, 2048}} {
		v := randFloats(s[0]*s[1], 1)
		b.Run(fmt.Sprintf("%dx%d", s[0], s[1]), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				transpose(v, s[0], s[1])
			}
			b.ReportMetric(float64(4*len(v))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkDecode is the decode loop of a paper preset (random weights, f32, go backend) at batch
// 1 and 16 after a 128-token prompt. ms/step is one decode step (a token per row, or a block of
// them for a block model) with the prompt's cost taken off, tokens/s the rate it gives; ns/op
// includes the prompt. Profile it with -cpuprofile:
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench 'Decode/vanilla_31$/b1$' -benchtime 128x -cpuprofile cpu.prof
func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct {
		name, preset string
		heads, ffn   int // 0: the preset's
	}{
		{"vanilla_31", "vanilla_31", 0, 0},
		{"block_main_b4_5", "block_main_b4_5", 0, 0},
		{"vanilla_31_ffn1024", "vanilla_31", 8, 1024}, // the preset's shape in earlier releases
	} {
		for _, B := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/b%d", c.name, B), func(b *testing.B) {
				e := presetEngine(b, c.preset, c.heads, c.ffn)
				defer e.Close()
				cfg := e.Config
				const P = 128
				prompts := make([][]int32, B)
				for i := range prompts {
					prompts[i] = make([]int32, P)
					for j := range prompts[i] {
						prompts[i][j] = int32((i*131 + j*7) % cfg.VocabSize)
					}
				}
				step := 1
				if cfg.IsBlock() {
					step = cfg.BlockLength
				}
				// Warm up (compiles), then time b.N steps; the prompt's own cost is measured with
				// a zero-step generation and taken off.
				run := func(n int) time.Duration {
					t0 := time.Now()
					if _, err := e.Generate(prompts, GenerateOptions{MaxNewTokens: n}); err != nil {
						b.Fatal(err)
					}
					return time.Since(t0)
				}
				run(step)
				prefill := run(step)
				b.ResetTimer()
				total := run(step * (b.N + 1))
				b.StopTimer()
				perStep := (total - prefill) / time.Duration(b.N)
				b.ReportMetric(float64(perStep.Microseconds())/1000, "ms/step")
				b.ReportMetric(float64(B*step)/perStep.Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkPrefill is a paper preset's prefill on the go backend (random weights, f32): one
// 128-token prompt through the model and its first new token (or block), in prompt tokens/s.
// Profile it with -cpuprofile:
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench 'Prefill/vanilla_31' -benchtime 60x -cpuprofile cpu.prof
func BenchmarkPrefill(b *testing.B) {
	for _, preset := range []string{"vanilla_31", "block_main_b4_5"} {
		b.Run(preset, func(b *testing.B) {
			e := presetEngine(b, preset, 0, 0)
			defer e.Close()
			cfg := e.Config
			const P = 128
			prompt := make([]int32, P)
			for j := range prompt {
				prompt[j] = int32(j * 7 % cfg.VocabSize)
			}
			run := func() {
				if _, err := e.Generate([][]int32{prompt}, GenerateOptions{MaxNewTokens: 1}); err != nil {
					b.Fatal(err)
				}
			}
			run() // compiles
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(P*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// presetEngine loads a paper preset with random f32 weights on the go backend (heads and ffn: 0
// for the preset's own).
func presetEngine(b *testing.B, preset string, heads, ffn int) *Engine {
	sh, err := arch.FindPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	sh.Heads, sh.FFN = heads, ffn
	cfg, err := sh.Config()
	if err != nil {
		b.Fatal(err)
	}
	e, err := Load(randinit.Model(cfg, 1, safetensors.F32), testfix.Backend(b), dtypes.Float32)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCacheWrite is the cache write a decode step made on XLA's CPU plugin before the caches
// were shared with the host: one position written with DynamicUpdateSlice into a donated cache of
// vanilla_31's layer at batch 16 and 2048 positions ([16, 8, 2048, 32] float32, 33.5 MB), in
// ms/write (XLA writes the whole cache into a new buffer; docs/UPSTREAM_BUGS.md):
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench CacheWrite -benchtime 20x
func BenchmarkCacheWrite(b *testing.B) {
	be := testfix.XLA(b)
	const B, H, S, hd = 16, 8, 2048, 32
	write := MustNewExec(be, func(cache, x, pos *Node) *Node {
		z := ScalarZero(cache.Graph(), dtypes.Int32)
		return DynamicUpdateSlice(cache, x, []*Node{z, z, pos, z})
	})
	defer write.Finalize()
	cache := tensors.FromFlatDataAndDimensions(make([]float32, B*H*S*hd), B, H, S, hd)
	x := tensors.FromFlatDataAndDimensions(make([]float32, B*H*hd), B, H, 1, hd)
	step := func(i int) {
		d, err := DonateTensorBuffer(cache, be, 0)
		if err != nil {
			b.Fatal(err)
		}
		out := write.MustExec(d, x, int32(i%S))
		if _, err := out[0].Shape(), out[0].CheckValid(); err != nil {
			b.Fatal(err)
		}
		cache = out[0]
	}
	step(0) // compiles
	b.ResetTimer()
	for i := range b.N {
		step(i)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/write")
	cache.FinalizeAll()
}

// BenchmarkQuantizedProduct measures a Linear's product x [M, K] times a [N, K] weight stored f32,
// int8 (on go also through GoMLX's fused int8 product: fusedInt8Products), int4 g32, q8_0, q4_0,
// q4_k and q6_k, each as LoadWeights puts it on the backend and qlinear multiplies
// it (dequant.go), in weights read per second, on the shapes that
// dominate decoding (the vocabulary head, the FFN of vanilla_31) at one row and 16:
//
//	GOEXPERIMENT=simd go test ./graph -run XXX -bench QuantizedProduct -benchtime 50x
//	GOEXPERIMENT=simd BTCONVERT_BENCH_XLA=1 go test ./graph -run XXX -bench QuantizedProduct -benchtime 200x
func BenchmarkQuantizedProduct(b *testing.B) {
	be, kind := testfix.Backend(b), goBackend
	if os.Getenv("BTCONVERT_BENCH_XLA") != "" {
		be, kind = testfix.XLA(b), xlaBackend
	}
	for _, s := range []struct{ M, N, K int }{{1, 50304, 256}, {16, 50304, 256}, {1, 4096, 256}, {1, 256, 4096}, {16, 4096, 256}} {
		w := randFloats(s.N*s.K, 2)
		x := tensors.FromFlatDataAndDimensions(randFloats(s.M*s.K, 1), s.M, s.K)
		for _, typ := range []string{"f32", "int8", "int8-fused", "int4", "q8_0", "q4_0", "q4_k", "q6_k"} {
			if typ == "int8-fused" && kind != goBackend {
				continue
			}
			fusedInt8Products = typ == "int8-fused"
			typ := strings.TrimSuffix(typ, "-fused")
			var q *scheme.Quantization
			keys := []string{"t/w.weight"}
			var args []any
			inOut := map[string]bool{"t/w.weight": true} // float Linear weights go up [in, out] (LoadWeights)
			switch typ {
			case "f32":
				args = append(args, upload(w, []int{s.N, s.K}, true))
			default:
				sc, _ := scheme.Of(scheme.Type(typ))
				r := sc.Record(s.N, s.K, 0, true, safetensors.F32)
				if sc.Grouped {
					r = sc.Record(s.N, s.K, 32, true, safetensors.F32)
				}
				q = &r
				st, err := quant.Encode(w, q, nil, quant.Options{})
				if err != nil {
					b.Fatal(err)
				}
				keys, args = partTensors(q, st)
				for i := range keys {
					keys[i] = strings.Replace(keys[i], "t/w", "t/w.weight", 1)
				}
				if kind == goBackend && typ == "int8" { // LoadWeights' layout there
					codes := make([]int8, len(st.Codes))
					for i, c := range st.Codes {
						codes[i] = int8(c)
					}
					args[0], inOut[keys[0]] = upload(codes, []int{s.N, s.K}, true), true
				}
			}
			cfg := &arch.Config{Quantization: map[string]scheme.Quantization{}}
			if q != nil {
				cfg.Quantization["t/w.weight"] = *q
			}
			label := typ
			if fusedInt8Products {
				label += "-fused"
			}
			b.Run(fmt.Sprintf("%s/M%d_N%d_K%d", label, s.M, s.N, s.K), func(b *testing.B) {
				e := MustNewExec(be, func(in []*Node) *Node {
					bld := newBuilder(in[0].Graph(), &Weights{Keys: keys, InOut: inOut}, cfg, dtypes.Float32, in[:len(keys)], kind)
					return bld.linear(in[len(keys)], "t", "w", false)
				})
				all := append(args, x)
				e.MustCall(all...)[0].FinalizeAll() // compile
				b.ResetTimer()
				for range b.N {
					e.MustCall(all...)[0].FinalizeAll()
				}
				b.ReportMetric(float64(s.N*s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gweights/s")
			})
		}
	}
}
