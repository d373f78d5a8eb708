package quant

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallel runs fn for every index 0..n-1 (rows are independent) on all cores.
func parallel(n int, fn func(i int)) {
	parallelWith(n, func() any { return nil }, func(i int, _ any) { fn(i) })
}

// parallelWith is parallel with per-worker scratch space made by newScratch.
func parallelWith(n int, newScratch func() any, fn func(i int, scratch any)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := newScratch()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i, scratch)
			}
		}()
	}
	wg.Wait()
}
