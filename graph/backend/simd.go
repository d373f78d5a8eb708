package backend

import (
	"os"
	"runtime"

	"github.com/gomlx/compute/support/envutil"
)

// SIMD matrix products on the pure-Go backend. GoMLX's go backend has vectorised matmul kernels
// (AVX2, AVX512) written with Go's simd/archsimd package, which exists only when the binary is
// built with GOEXPERIMENT=simd (Go 1.26); the kernel is then chosen at start-up from the CPU, and
// GOMLX_SIMD_AVX512=false / GOMLX_SIMD_AVX2=false turn the variants off. Without the experiment
// every product runs on portable Go loops, several times slower.

// SlowBuildWarning is printed once on stderr when a binary built without GOEXPERIMENT=simd starts
// the go backend.
const SlowBuildWarning = "built without GOEXPERIMENT=simd: matrix products several times slower"

// Matmul kernels of the go backend (MatmulKernel).
const (
	KernelAVX512 = "avx512"
	KernelAVX2   = "avx2"
	KernelNoSIMD = "nosimd" // portable Go loops
)

// matmulKernel is decided once, from the environment the backend read when it registered its
// kernels (its package initialises before this one).
var matmulKernel, matmulKernelWhy = detectKernel()

// MatmulKernel names the kernel the go backend runs matrix products with in this process: KernelAVX512 or
// KernelAVX2 (SIMD built in, the CPU has it and the environment allows it) or KernelNoSIMD.
func MatmulKernel() string { return matmulKernel }

// SIMDStatus says in a few words whether SIMD is built in and what this CPU gets: "avx2",
// "avx512", "off (built without GOEXPERIMENT=simd)", "built in, CPU has no AVX2", ...
func SIMDStatus() string {
	if matmulKernel != KernelNoSIMD {
		return matmulKernel
	}
	return matmulKernelWhy
}

// detectKernel follows the go backend's own choice (compute/internal/gobackend/dot/matmul: the
// AVX512 variant outranks the AVX2 one; each registers when the CPU has it and its variable is
// not false; GOMLX_DOT_MATMUL=false registers none of them).
func detectKernel() (kernel, why string) {
	if !SIMDBuiltIn {
		return KernelNoSIMD, "off (built without GOEXPERIMENT=simd)"
	}
	if runtime.GOARCH != "amd64" {
		return KernelNoSIMD, "built in, no SIMD kernels on " + runtime.GOARCH
	}
	allowed := func(env string) bool {
		ok, err := envutil.ReadBool(env, true)
		return ok && err == nil
	}
	hasAVX512, hasAVX2 := cpuHasAVX()
	switch {
	case !allowed(dotMatmulEnv):
		return KernelNoSIMD, "built in, turned off by " + dotMatmulEnv + "=" + os.Getenv(dotMatmulEnv)
	case hasAVX512 && allowed(envutil.SIMD_AVX512_Env):
		return KernelAVX512, ""
	case hasAVX2 && allowed(envutil.SIMD_AVX2_Env):
		return KernelAVX2, ""
	case hasAVX2:
		return KernelNoSIMD, "built in, turned off by " + envutil.SIMD_AVX2_Env + "=" + os.Getenv(envutil.SIMD_AVX2_Env)
	}
	return KernelNoSIMD, "built in, CPU has no AVX2"
}

// dotMatmulEnv turns all of the go backend's matmul kernels off when false.
const dotMatmulEnv = "GOMLX_DOT_MATMUL"
