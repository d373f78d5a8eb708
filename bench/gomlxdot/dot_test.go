// Package gomlxdot is a standalone benchmark of the GoMLX pure-Go backend's DotGeneral on the
// shapes that dominate Block Transformer decoding: the vocabulary head (N = 50304, K = 256) at a
// few batch sizes and a D x 4D layer. It imports nothing but GoMLX (and its backends' module,
// github.com/gomlx/compute), so the file can be copied into any module that requires
// github.com/gomlx/gomlx and run as it is (GOEXPERIMENT=simd gives the backend its SIMD kernels):
//
//	GOEXPERIMENT=simd go test ./bench/gomlxdot -bench . -benchtime 10x
//
// x [M, K] times w [N, K] contracted on K (a Linear layer with PyTorch's weight layout), f32.
package gomlxdot

import (
	"fmt"
	"testing"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

var shapes = []struct {
	name    string
	M, N, K int
}{
	{"head_M1", 1, 50304, 256},
	{"head_M16", 16, 50304, 256},
	{"head_M64", 64, 50304, 256},
	{"up_D_4D_M16", 16, 1024, 256},
	{"down_4D_D_M16", 16, 256, 1024},
	{"square_1024", 1024, 1024, 1024},
}

func BenchmarkDotGeneral(b *testing.B) {
	backend, err := compute.NewWithConfig("go")
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Finalize()
	for _, s := range shapes {
		b.Run(fmt.Sprintf("%s_%dx%dx%d", s.name, s.M, s.N, s.K), func(b *testing.B) {
			exec, err := graph.NewExec(backend, func(x, w *graph.Node) *graph.Node {
				return graph.DotGeneral(x, []int{1}, nil, w, []int{1}, nil)
			})
			if err != nil {
				b.Fatal(err)
			}
			x := tensors.FromFlatDataAndDimensions(make([]float32, s.M*s.K), s.M, s.K)
			w := tensors.FromFlatDataAndDimensions(make([]float32, s.N*s.K), s.N, s.K)
			out, err := exec.Call(x, w) // compile and warm the buffer pools
			if err != nil {
				b.Fatal(err)
			}
			out[0].FinalizeAll()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := exec.Call(x, w)
				if err != nil {
					b.Fatal(err)
				}
				out[0].FinalizeAll()
			}
			b.ReportMetric(2*float64(s.M)*float64(s.N)*float64(s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
