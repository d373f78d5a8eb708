//go:build !(amd64 && goexperiment.simd)

package backend

// cpuHasAVX: without GOEXPERIMENT=simd on amd64 the go backend has no SIMD kernels to pick.
func cpuHasAVX() (avx512, avx2 bool) { return false, false }
