package fsio

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/btconvert/btconvert/formats/errs"
)

// Temp names are short (they fit NAME_MAX whatever the destination's name) and carry the writing
// process's id, so a later run can tell an abandoned one (its process is gone) from a live one.
var tempName = regexp.MustCompile(`^\.?btconvert-(\d+)-[0-9a-f]{8}\.(tmp|extract)$`)

// TempName returns a fresh temp name for this process with the given suffix ("tmp", "extract").
func TempName(hidden bool, suffix string) string {
	var b [4]byte
	rand.Read(b[:])
	name := fmt.Sprintf("btconvert-%d-%s.%s", os.Getpid(), hex.EncodeToString(b[:]), suffix)
	if hidden {
		return "." + name
	}
	return name
}

var live struct {
	sync.Mutex
	paths map[string]bool
}

// track registers a temp path for Cleanup; untrack forgets it.
func track(p string) {
	live.Lock()
	defer live.Unlock()
	if live.paths == nil {
		live.paths = map[string]bool{}
	}
	live.paths[p] = true
}

func untrack(p string) {
	live.Lock()
	defer live.Unlock()
	delete(live.paths, p)
}

// Cleanup removes every temp output of this process that is still being written (call it from a
// signal handler before exiting).
func Cleanup() {
	live.Lock()
	defer live.Unlock()
	for p := range live.paths {
		os.RemoveAll(p)
	}
	live.paths = nil
}

// Sweep removes temp outputs in dir that a process which no longer exists left behind (killed, or
// out of memory). It returns what it removed.
func Sweep(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		m := tempName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if os.RemoveAll(p) == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Written describes a file once written.
type Written struct {
	Path   string
	Size   int64
	SHA256 string
}

// File is a file being written under a temp name beside its destination, hashed and counted as it
// goes. Commit fsyncs it and renames it into place; Abort removes it.
type File struct {
	f      *os.File
	bw     *bufio.Writer
	h      hash.Hash
	n      int64
	tmp    string
	dest   string
	output *Output // set for a top-level output (existence rules, parents)
}

// Create starts writing path, a file inside a folder this run owns (a temp output folder): it is
// renamed over whatever is there at Commit.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempName(true, "tmp"))
	if err != nil {
		return nil, writeError(path, err)
	}
	track(f.Name())
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: sha256.New(), tmp: f.Name(), dest: path}, nil
}

// CreateOutput starts writing a top-level output file: refused if it exists unless force, and
// at Commit never put over a file that appeared meanwhile unless force.
func CreateOutput(dest string, force bool) (*File, error) {
	o, err := newOutput(dest, force, false)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(o.Tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		o.Abort()
		return nil, writeError(dest, err)
	}
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: sha256.New(), tmp: o.Tmp, dest: dest, output: o}, nil
}

func (w *File) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	n, err := w.bw.Write(p)
	if err != nil {
		return n, writeError(w.dest, err)
	}
	return n, nil
}

// Commit flushes, fsyncs and renames the file into place.
func (w *File) Commit() (Written, error) {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(w.tmp, 0o644) // CreateTemp makes 0600
	}
	if err != nil {
		w.Abort()
		return Written{}, writeError(w.dest, err)
	}
	if w.output != nil {
		if err := w.output.Commit(); err != nil {
			return Written{}, err
		}
	} else if err := os.Rename(w.tmp, w.dest); err != nil {
		w.Abort()
		return Written{}, writeError(w.dest, err)
	}
	untrack(w.tmp)
	return Written{Path: w.dest, Size: w.n, SHA256: hex.EncodeToString(w.h.Sum(nil))}, nil
}

// Abort drops the file.
func (w *File) Abort() {
	w.f.Close()
	if w.output != nil {
		w.output.Abort()
		return
	}
	os.Remove(w.tmp)
	untrack(w.tmp)
}

// WriteFile writes data to path (inside a folder this run owns) through a fsynced temp file.
func WriteFile(path string, data []byte) (Written, error) {
	w, err := Create(path)
	return writeAll(w, err, data)
}

// WriteOutput writes data as a top-level output file (see CreateOutput).
func WriteOutput(dest string, data []byte, force bool) (Written, error) {
	w, err := CreateOutput(dest, force)
	return writeAll(w, err, data)
}

// writeAll writes data through a new file (err is the error of creating it) and commits it.
func writeAll(w *File, err error, data []byte) (Written, error) {
	if err != nil {
		return Written{}, err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return Written{}, err
	}
	return w.Commit()
}

// Output is a destination (folder or file) being written as Tmp beside it. Commit puts Tmp in its
// place in one rename: without force it fails if the destination exists by then (no gap between
// the check and the rename); with force it swaps the two and removes the old one.
type Output struct {
	Dest, Tmp string
	force     bool
	dir       bool
	madeDir   string // the first parent folder this output created, removed again on Abort
}

// NewDir starts writing the folder dest: Tmp is an empty folder beside it.
func NewDir(dest string, force bool) (*Output, error) {
	o, err := newOutput(dest, force, true)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(o.Tmp, 0o755); err != nil {
		o.Abort()
		return nil, writeError(dest, err)
	}
	return o, nil
}

// CheckDest refuses an existing destination unless force (and then only one of the same kind).
func CheckDest(dest string, force, dir bool) error {
	st, err := os.Lstat(dest)
	if err != nil {
		return nil
	}
	if !force {
		return &errs.InputError{File: dest, Msg: "already exists (use {Force} to replace it)"}
	}
	switch {
	case dir && !st.IsDir():
		return &errs.InputError{File: dest, Msg: "exists and is not a folder ({Force} replaces a folder with a folder only)"}
	case !dir && !st.Mode().IsRegular():
		return &errs.InputError{File: dest, Msg: "exists and is not a regular file ({Force} replaces a file with a file only)"}
	}
	return nil
}

func newOutput(dest string, force, dir bool) (*Output, error) {
	dest = filepath.Clean(dest)
	if err := CheckDest(dest, force, dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(dest)
	o := &Output{Dest: dest, force: force, dir: dir}
	if _, err := os.Stat(parent); err != nil {
		o.madeDir = firstMissing(parent)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			o.Abort()
			return nil, writeError(dest, err)
		}
	}
	Sweep(parent)
	o.Tmp = filepath.Join(parent, TempName(true, "tmp"))
	track(o.Tmp)
	return o, nil
}

// firstMissing is the outermost folder of p that does not exist yet.
func firstMissing(p string) string {
	missing := p
	for d := p; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			return missing
		}
		missing = d
		if filepath.Dir(d) == d {
			return missing
		}
	}
}

// Commit puts Tmp in the destination's place.
func (o *Output) Commit() error {
	if o.dir {
		if err := os.Chmod(o.Tmp, 0o755); err != nil { // MkdirTemp-like permissions otherwise
			o.Abort()
			return writeError(o.Dest, err)
		}
	}
	err := renameNoReplace(o.Tmp, o.Dest)
	if errors.Is(err, os.ErrExist) && o.force {
		if err = CheckDest(o.Dest, true, o.dir); err != nil {
			o.Abort()
			return err
		}
		// Swap: the destination is never missing; the old content ends up at Tmp.
		if err = unix.Renameat2(unix.AT_FDCWD, o.Tmp, unix.AT_FDCWD, o.Dest, unix.RENAME_EXCHANGE); err != nil && errors.Is(err, syscall.EINVAL) {
			old := o.Tmp + ".old"
			if err = os.Rename(o.Dest, old); err == nil {
				if err = os.Rename(o.Tmp, o.Dest); err != nil {
					os.Rename(old, o.Dest)
				} else {
					os.Rename(old, o.Tmp)
				}
			}
		}
		if err == nil {
			os.RemoveAll(o.Tmp)
		}
	} else if errors.Is(err, os.ErrExist) {
		o.Abort()
		return &errs.InputError{File: o.Dest, Msg: "appeared while this run was writing it (another run?); not replaced (use {Force} to replace it)"}
	}
	if err != nil {
		o.Abort()
		return writeError(o.Dest, err)
	}
	untrack(o.Tmp)
	return nil
}

// renameNoReplace renames, failing with os.ErrExist if newpath exists. File systems without
// RENAME_NOREPLACE get a check right before the rename.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EEXIST):
		return os.ErrExist
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOSYS):
		if _, serr := os.Lstat(newpath); serr == nil {
			return os.ErrExist
		}
		return os.Rename(oldpath, newpath)
	}
	return err
}

// Abort removes Tmp and any parent folder this output created.
func (o *Output) Abort() {
	if o.Tmp != "" {
		os.RemoveAll(o.Tmp)
		untrack(o.Tmp)
	}
	if o.madeDir != "" {
		removeEmptyUp(filepath.Dir(o.Dest), o.madeDir)
	}
}

// removeEmptyUp removes empty folders from dir up to and including top.
func removeEmptyUp(dir, top string) {
	for d := dir; ; d = filepath.Dir(d) {
		if os.Remove(d) != nil || d == top || filepath.Dir(d) == d {
			return
		}
	}
}

// CheckNotInput refuses an output that is, contains, or is inside one of the command's inputs
// (symlinks resolved): replacing it would destroy the input.
func CheckNotInput(dest string, inputs ...string) error {
	d, err := realPath(dest)
	if err != nil {
		return nil
	}
	for _, in := range inputs {
		if in == "" {
			continue
		}
		i, err := realPath(in)
		if err != nil {
			continue
		}
		if within(i, d) || within(d, i) {
			return &errs.InputError{File: dest, Msg: fmt.Sprintf("is, holds or lies inside the input %s; refusing to replace it (choose another output)", in)}
		}
	}
	return nil
}

// realPath resolves symlinks of the longest existing prefix of p.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		if filepath.Dir(cur) == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && (rel == "." || (rel != ".." && !filepath.IsAbs(rel) && !hasDotDot(rel)))
}

func hasDotDot(rel string) bool {
	return rel == ".." || len(rel) > 2 && rel[:3] == ".."+string(filepath.Separator)
}
