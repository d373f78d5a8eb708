package graph

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/internal/testfix"
)

// matmulShapes are the products that dominate the models: a square product, the vocabulary head of
// the paper models (N=50304, K=256) at several batch sizes, and a D x 4D layer.
var matmulShapes = []struct{ M, N, K int }{{1024, 1024, 1024}, {1, 50304, 256}, {4, 50304, 256}, {16, 50304, 256}, {64, 50304, 256}, {16, 768, 256}, {16, 1024, 256}}

// BenchmarkMatmulRate measures the backend's matmul rate (GFLOP/s) on those shapes, x [M, K]
// times a [N, K] weight as linear() runs it.
//
//	go test ./graph -run XXX -bench MatmulRate -benchtime 5x
func BenchmarkMatmulRate(b *testing.B) {
	for _, s := range matmulShapes {
		b.Run(fmt.Sprintf("M%d_N%d_K%d", s.M, s.N, s.K), func(b *testing.B) {
			be := testfix.Backend(b)
			e := MustNewExec(be, func(x, w *Node) *Node {
				return newBuilder(x.Graph(), &Weights{}, &arch.Config{}, dtypes.Float32, nil, goBackend).matmulT(x, w)
			})
			x := tensors.FromFlatDataAndDimensions(make([]float32, s.M*s.K), s.M, s.K)
			w := tensors.FromFlatDataAndDimensions(make([]float32, s.N*s.K), s.N, s.K)
			e.MustExec(x, w) // compile
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := e.MustExec(x, w)
				out[0].FinalizeAll()
			}
			b.ReportMetric(2*float64(s.M*s.N*s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
