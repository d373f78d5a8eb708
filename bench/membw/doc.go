// Package membw measures how fast this machine's cores read memory: the bound on decoding at small
// batch, where every generated token reads the weights it uses once (docs/BENCHMARKS.md,
// "Quantized products"):
//
//	GOEXPERIMENT=simd go test ./bench/membw -bench . -benchtime 5x
//
// A 1 GiB float32 array is summed with AVX2 loads (four independent sums, so the adds never wait
// on memory), split over 1 and 2 goroutines.
package membw
