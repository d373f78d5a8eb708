//go:build amd64 && goexperiment.simd

package backend

import "simd/archsimd"

// cpuHasAVX asks the same package the go backend's kernels ask.
func cpuHasAVX() (avx512, avx2 bool) { return archsimd.X86.AVX512(), archsimd.X86.AVX2() }
