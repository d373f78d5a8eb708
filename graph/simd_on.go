//go:build goexperiment.simd

package graph

// SIMDBuiltIn reports a build with GOEXPERIMENT=simd: the go backend has its SIMD matmul kernels.
const SIMDBuiltIn = true
