//go:build goexperiment.simd

package backend

// SIMDBuiltIn reports a build with GOEXPERIMENT=simd: the go backend has its SIMD matmul kernels.
const SIMDBuiltIn = true
