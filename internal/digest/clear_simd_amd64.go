//go:build goexperiment.simd && amd64

package digest

import "simd/archsimd"

var avx = archsimd.X86.AVX()

// clearUpper clears the AVX registers' upper halves (VZEROUPPER), where the CPU has them.
func clearUpper() {
	if avx {
		archsimd.ClearAVXUpperBits()
	}
}
