package btconvert

import (
	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/internal/sysmem"
)

// checkWindows refuses scoring windows of window tokens, batch at a time, whose estimated memory
// (the same estimate as a bench batch: activations, attention scores, logits) exceeds what is
// available, before anything is allocated. windowOpt and batchOpt name the options.
func checkWindows(l *loaded, window, batch int, windowOpt, batchOpt string) error {
	need := l.eng.Estimate(batch, window)
	if avail := memoryFor(); avail > 0 && need > avail {
		return errs.Option(windowOpt, window, "with {%s} %d needs about %s of memory, more than the %s available: use a smaller {%s} or {%s}",
			batchOpt, batch, humanize.IBytes(uint64(need)), humanize.IBytes(uint64(avail)), windowOpt, batchOpt)
	}
	return nil
}

// memoryFor is the memory this process may use: the system's available memory.
func memoryFor() int64 { return sysmem.Available() }

// checkFitsMemory refuses to load a model whose weights would not fit in memory.
func checkFitsMemory(m *formats.Model) error {
	var n int64
	for _, t := range m.Tensors {
		n += t.Bytes()
	}
	if avail := memoryFor(); avail > 0 && n > avail {
		return errs.File(m.Path, "its weights need %s in memory, more than the %s available", humanize.IBytes(uint64(n)), humanize.IBytes(uint64(avail)))
	}
	return nil
}

// fitsMemory refuses a generation at batch B up to length tokens whose estimated memory is more
// than the system has available (before allocating anything).
func fitsMemory(l *loaded, B, length int) error {
	est := l.eng.Estimate(B, length)
	if avail := memoryFor(); avail > 0 && est > avail {
		return errs.Option("MaxNewTokens", nil, "batch %d up to %d tokens needs about %s of memory, more than the %s available",
			B, length, humanize.IBytes(uint64(est)), humanize.IBytes(uint64(avail)))
	}
	return nil
}
