// Package outputs is what a command reads and writes around a model: the checks made before any
// output is written (inputs never overwritten, memory and disk enough), the tokenizer files and
// recorded report carried with a model, and the names a model is shown by.
package outputs

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/sysmem"
)

// TensorWritten reports each written tensor on bar and, after a large one, hands its memory back
// to the system at once: the peak then follows the largest tensor, not the collector's growth
// target over two of them.
func TensorWritten(bar interface{ Add(n int64, item string) }) func(tensor string, n int64) {
	return func(tensor string, n int64) {
		bar.Add(n, tensor)
		if n >= 16<<20 {
			debug.FreeOSMemory()
		}
	}
}

// CheckWrite refuses, before anything is written, an output whose largest tensor would not fit in
// memory while it is made (its bytes, their float32 values and the converted copy) or whose total
// would not fit on the destination's disk.
func CheckWrite(m *formats.Model, dest string, to safetensors.DType) error {
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
	if avail := sysmem.Available(); avail > 0 && largest > avail {
		return &errs.InputError{Tensor: name, Msg: fmt.Sprintf("needs about %s in memory to be written, more than the %s available",
			humanize.IBytes(uint64(largest)), humanize.IBytes(uint64(avail)))}
	}
	if free := FreeSpace(filepath.Dir(filepath.Clean(dest))); free > 0 && total > free {
		return errs.File(dest, "needs %s on disk but only %s is free there", humanize.IBytes(uint64(total)), humanize.IBytes(uint64(free)))
	}
	return nil
}

// FreeSpace is the free space of the file system holding dir (or its nearest existing parent);
// 0 if unknown.
func FreeSpace(dir string) int64 {
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

// Output is one file or folder a command writes, and the kind of thing --force may replace there.
type Output struct {
	Path string
	Kind fsio.Kind
}

// CheckFiles is the one rule for what a command writes, checked before any work starts: no output
// is, holds or lies inside any input of the command (whatever option names it, symlinks
// resolved) or another of its outputs, even with force; an existing output is replaced only with
// force, and only when btconvert wrote it as that kind. Callers list every input, models through
// ModelInputs (which adds the files read beside a checkpoint).
func CheckFiles(force bool, inputs []string, outputs ...Output) error {
	for i, o := range outputs {
		if o.Path == "" {
			continue
		}
		if err := fsio.CheckNotInput(o.Path, inputs...); err != nil {
			return err
		}
		for _, other := range outputs[i+1:] {
			if other.Path != "" && fsio.Overlap(o.Path, other.Path) {
				return errs.File(o.Path, "is, holds or lies inside the output %s of the same command (choose two separate outputs)", other.Path)
			}
		}
		if err := fsio.CheckDest(o.Path, force, o.Kind); err != nil {
			return err
		}
	}
	return nil
}

// ModelInputs is what reading the model at path reads: the path itself, and for a checkpoint
// given as a file, every file beside it (its config, index, shards and tokenizer are read too).
func ModelInputs(path string) []string {
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

// TokenizerInputs is what reading the tokenizer at path reads: a vocab.json brings the merges.txt
// beside it.
func TokenizerInputs(path string) []string {
	if path == "" {
		return nil
	}
	return []string{path, filepath.Join(filepath.Dir(path), tokenizer.Merges)}
}

// Inputs joins lists of inputs.
func Inputs(lists ...[]string) []string { return slices.Concat(lists...) }

// TokenizerFiles are the tokenizer files to carry into a model folder: the given one, else the
// source's own. A vocabulary of more than 256 tokens without any gets a warning (generation and
// perplexity would need one).
func TokenizerFiles(m *formats.Model, given string, note func(string)) (map[string][]byte, error) {
	if given != "" {
		return tokenizer.FilesFor(given, m.Config.VocabSize)
	}
	files, err := tokenizer.Files(m.File)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		// Carried only if it loads and fits the model: a broken one is refused here, not at the
		// first generate.
		where := m.Path
		if st, err := os.Stat(where); err == nil && !st.IsDir() {
			where = filepath.Dir(where) // a checkpoint given as its file: the tokenizer sits beside it
		}
		if _, err := tokenizer.For(func(name string) ([]byte, error) { return files[name], nil }, where, m.Config.VocabSize); err != nil {
			return nil, err
		}
	}
	if len(files) == 0 && m.Config.VocabSize > 256 {
		note(fmt.Sprintf("warning: %s has a vocabulary of %d tokens but no %s (or %s + %s) beside it; generate and perplexity will need one (give it with {Tokenizer})",
			m.Name(), m.Config.VocabSize, tokenizer.Name, tokenizer.Vocab, tokenizer.Merges))
	}
	return files, nil
}

// RecordedReport is the verification report recorded in a model folder (or bundle), or nil.
func RecordedReport(m *formats.Model) (*modeldir.Recorded, []byte, error) {
	if m.Format != modeldir.Format && m.Bundle == "" {
		return nil, nil, nil
	}
	return modeldir.ReadReport(m.Path)
}

// ModelName is the name a model is shown by: its folder or file name.
func ModelName(p string) string {
	return cmp.Or(filepath.Base(filepath.Clean(p)), p)
}

// ReadText reads a text file (regular files only, within a bound).
func ReadText(path string) (string, error) {
	b, err := fsio.ReadFile(path, fsio.TextLimit)
	return string(b), err
}
