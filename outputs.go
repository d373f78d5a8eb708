package btconvert

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
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

// output is one file or folder a command writes, and the kind of thing --force may replace there.
type output struct {
	path string
	kind fsio.Kind
}

// checkFiles is the one rule for what a command writes, checked before any work starts: no output
// is, holds or lies inside any input of the command (whatever option names it, symlinks
// resolved) or another of its outputs, even with force; an existing output is replaced only with
// force, and only when btconvert wrote it as that kind. Callers list every input, models through
// modelInputs (which adds the files read beside a checkpoint).
func checkFiles(force bool, inputs []string, outputs ...output) error {
	for i, o := range outputs {
		if o.path == "" {
			continue
		}
		if err := fsio.CheckNotInput(o.path, inputs...); err != nil {
			return err
		}
		for _, other := range outputs[i+1:] {
			if other.path != "" && fsio.Overlap(o.path, other.path) {
				return errs.File(o.path, "is, holds or lies inside the output %s of the same command (choose two separate outputs)", other.path)
			}
		}
		if err := fsio.CheckDest(o.path, force, o.kind); err != nil {
			return err
		}
	}
	return nil
}

// modelInputs is what reading the model at path reads: the path itself, and for a checkpoint
// given as a file, every file beside it (its config, index, shards and tokenizer are read too).
func modelInputs(path string) []string {
	out := []string{path}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() || source.KindOf(path) != source.Checkpoint {
		return out
	}
	dir := filepath.Dir(path)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents[:min(len(ents), 4096)] { // a checkpoint folder holds tens of files
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// tokenizerInputs is what reading the tokenizer at path reads: a vocab.json brings the merges.txt
// beside it.
func tokenizerInputs(path string) []string {
	if path == "" {
		return nil
	}
	return []string{path, filepath.Join(filepath.Dir(path), tokenizer.Merges)}
}

// inputs joins lists of inputs.
func inputs(lists ...[]string) []string { return slices.Concat(lists...) }
