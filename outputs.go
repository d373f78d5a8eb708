package btconvert

import (
	"fmt"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// tensorWritten reports each written tensor on bar and, after a large one, hands its memory back
// to the system at once: the peak then follows the largest tensor, not the collector's growth
// target over two of them.
func tensorWritten(bar Bar) func(tensor string, n int64) {
	return func(tensor string, n int64) {
		bar.Add(n, tensor)
		if n >= 16<<20 {
			debug.FreeOSMemory()
		}
	}
}

// checkWrite refuses, before anything is written, an output whose largest tensor would not fit in
// memory while it is made (its bytes, their float32 values and the converted copy) or whose total
// would not fit on the destination's disk.
func checkWrite(m *formats.Model, dest string, to safetensors.DType) error {
	var total, largest int64
	var name string
	for _, t := range m.Tensors {
		b := t.Bytes()
		if to != "" && t.DType.IsFloat() {
			b = t.NumElements() * int64(to.Size())
		}
		total += b
		if need := t.Bytes() + 4*t.NumElements() + b; need > largest {
			largest, name = need, t.Key()
		}
	}
	if avail := memoryFor(); avail > 0 && largest > avail {
		return &errs.InputError{Tensor: name, Msg: fmt.Sprintf("needs about %s in memory to be written, more than the %s available",
			humanize.IBytes(uint64(largest)), humanize.IBytes(uint64(avail)))}
	}
	if free := freeSpace(filepath.Dir(filepath.Clean(dest))); free > 0 && total > free {
		return errs.File(dest, "needs %s on disk but only %s is free there", humanize.IBytes(uint64(total)), humanize.IBytes(uint64(free)))
	}
	return nil
}

// freeSpace is the free space of the file system holding dir (or its nearest existing parent);
// 0 if unknown.
func freeSpace(dir string) int64 {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Statfs_t
		if syscall.Statfs(d, &st) == nil {
			return int64(st.Bavail) * int64(st.Bsize)
		}
		if filepath.Dir(d) == d {
			return 0
		}
	}
}

// checkDest refuses an output that exists (unless force) or that is, holds or lies in one of the
// inputs (even with force: replacing it would destroy the input).
func checkDest(dest string, force bool, kind fsio.Kind, inputs ...string) error {
	if err := fsio.CheckNotInput(dest, inputs...); err != nil {
		return err
	}
	return fsio.CheckDest(dest, force, kind)
}
