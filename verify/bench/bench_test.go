package bench

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/sysmem"
	"github.com/btconvert/btconvert/internal/testfix"
)

// currentRSS is the process's resident memory now.
func currentRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	sysmem.ResetPeakRSS()
	return sysmem.PeakRSS()
}

// The memory estimate bounds what a generation really takes (peak resident memory above what the
// process held before loading the model) at two sizes, without overstating it more than 4x, on
// the go backend and on XLA, there with an allowance for what its compiler takes, which the
// estimate leaves out (most of the peak at these sizes: 357 MB measured for the first compile in
// a process, less after).
func TestEstimateBoundsPeakRSS(t *testing.T) {
	if testfix.Race {
		t.Skip("the race detector's shadow memory inflates resident memory")
	}
	t.Run("go", func(t *testing.T) { estimateBoundsPeakRSS(t, testfix.Backend(t), 0) })
	t.Run("xla", func(t *testing.T) { estimateBoundsPeakRSS(t, testfix.XLA(t), 512<<20) })
}

func estimateBoundsPeakRSS(t *testing.T, be compute.Backend, compileAllowance int64) {
	for _, c := range []struct {
		name    string
		B, P, G int
	}{{"bt-tiny", 16, 128, 32}, {"bt-tiny", 64, 128, 32}, {"pythia-tiny", 16, 128, 32}, {"pythia-tiny", 64, 128, 32},
		{"bt-cls-cross-attn-tiny", 16, 128, 32}, {"bt-cls-cross-attn-tiny", 64, 128, 32}} {
		before := currentRSS()
		e, err := graph.Load(testfix.Open(t, testfix.Path(c.name)), be, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		prompts := make([][]int32, c.B)
		for i := range prompts {
			prompts[i] = make([]int32, c.P)
			for j := range prompts[i] {
				prompts[i][j] = int32(1 + (i*7+j*13)%250)
			}
		}
		if _, err := e.Generate(prompts, graph.GenerateOptions{MaxNewTokens: c.G}); err != nil {
			t.Fatal(err)
		}
		used := sysmem.PeakRSS() - before
		est := e.Estimate(c.B, c.P+c.G)
		e.Close()
		t.Logf("%s B=%d P=%d G=%d: estimate %d MB, measured %d MB", c.name, c.B, c.P, c.G, est>>20, used>>20)
		if est+compileAllowance < used || est > 4*used+32<<20 {
			t.Errorf("%s B=%d: estimate %d MB for a measured peak of %d MB", c.name, c.B, est>>20, used>>20)
		}
	}
}
