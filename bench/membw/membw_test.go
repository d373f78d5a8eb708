//go:build amd64 && goexperiment.simd

package membw

import (
	"fmt"
	"simd/archsimd"
	"sync"
	"testing"
)

func sum(a []float32) float32 {
	var s0, s1, s2, s3 archsimd.Float32x8
	for i := 0; i+32 <= len(a); i += 32 {
		s0 = s0.Add(archsimd.LoadFloat32x8Slice(a[i:]))
		s1 = s1.Add(archsimd.LoadFloat32x8Slice(a[i+8:]))
		s2 = s2.Add(archsimd.LoadFloat32x8Slice(a[i+16:]))
		s3 = s3.Add(archsimd.LoadFloat32x8Slice(a[i+24:]))
	}
	var l [8]float32
	s0.Add(s1).Add(s2.Add(s3)).StoreSlice(l[:])
	archsimd.ClearAVXUpperBits()
	return l[0]
}

func BenchmarkMemoryRead(b *testing.B) {
	if !archsimd.X86.AVX2() {
		b.Skip("needs AVX2")
	}
	a := make([]float32, 256<<20)
	for i := range a {
		a[i] = 1
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads%d", threads), func(b *testing.B) {
			for range b.N {
				var wg sync.WaitGroup
				n := len(a) / threads
				for k := range threads {
					wg.Add(1)
					go func() { defer wg.Done(); sum(a[k*n : (k+1)*n]) }()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(len(a)*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
