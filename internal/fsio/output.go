package fsio

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/digest"
)

// Temp names are short (they fit NAME_MAX whatever the destination's name) and carry the writing
// process's id (for whoever looks at one); whether one is abandoned is told by its lock (Sweep).
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
// signal handler before exiting). The writers are still running: a folder is first renamed to a
// fresh temp name, so that a file they create after that fails instead of landing in a folder
// RemoveAll has already emptied (which would leave the folder behind).
func Cleanup() {
	live.Lock()
	defer live.Unlock()
	for p := range live.paths {
		m := tempName.FindStringSubmatch(filepath.Base(p))
		if m != nil {
			aside := filepath.Join(filepath.Dir(p), TempName(strings.HasPrefix(m[0], "."), m[2]))
			if os.Rename(p, aside) == nil {
				os.RemoveAll(aside)
			}
		}
		os.RemoveAll(p)
	}
	live.paths = nil
}

// Sweep removes temp outputs in dir that their writer left behind (killed, or out of memory). A
// writer holds an exclusive flock on its temp output for as long as it writes it (lock), so an
// entry whose lock can be taken has no writer: that holds across processes, PID namespaces and
// containers on one kernel, where process ids do not. Entries younger than a minute are left
// alone (a writer may be between creating and locking one). It returns what it removed.
func Sweep(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		if !tempName.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if st, err := os.Lstat(p); err != nil || time.Since(st.ModTime()) < sweepAge {
			continue
		}
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && os.RemoveAll(p) == nil {
			removed = append(removed, p)
		}
		f.Close()
	}
	return removed
}

// sweepAge is how old a temp output must be before Sweep looks at its lock.
var sweepAge = time.Minute

// lock takes the exclusive flock that marks a temp output as being written (see Sweep); the
// returned file keeps it until closed.
func lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
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
	output *Output // set for a top-level output (existence rules)
}

// Create starts writing path, a file inside a folder this run owns (a temp output folder): it is
// renamed over whatever is there at Commit.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempName(true, "tmp"))
	if err != nil {
		return nil, writeError(path, err)
	}
	track(f.Name())
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: digest.New(), tmp: f.Name(), dest: path}, nil
}

// CreateOutput starts writing a top-level output file of the given kind: refused if it exists
// unless force (and then only a file of that kind), and at Commit never put over a file that
// appeared meanwhile unless force.
func CreateOutput(dest string, force bool, kind Kind) (*File, error) {
	o, err := newOutput(dest, force, kind)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(o.Tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		o.Abort()
		return nil, writeError(dest, err)
	}
	if o.lock, err = lock(o.Tmp); err != nil {
		f.Close()
		o.Abort()
		return nil, writeError(dest, err)
	}
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: digest.New(), tmp: o.Tmp, dest: dest, output: o}, nil
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

// WriteOutput writes data as a top-level output file of the given kind (see CreateOutput).
func WriteOutput(dest string, data []byte, force bool, kind Kind) (Written, error) {
	w, err := CreateOutput(dest, force, kind)
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
	kind      Kind
	lock      *os.File // holds Tmp's flock while it is written
}

// NewDir starts writing the folder dest: Tmp is an empty folder beside it.
func NewDir(dest string, force bool) (*Output, error) {
	o, err := newOutput(dest, force, Folder)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(o.Tmp, 0o755); err != nil {
		o.Abort()
		return nil, writeError(dest, err)
	}
	if o.lock, err = lock(o.Tmp); err != nil {
		o.Abort()
		return nil, writeError(dest, err)
	}
	return o, nil
}

// NewTempDir makes a folder under the system's temp folder ($TMPDIR) for work that is removed
// afterwards (it is never renamed into place). $TMPDIR must exist: btconvert does not create it.
func NewTempDir(suffix string) (*Output, error) {
	base := os.TempDir()
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		return nil, &errs.InputError{File: base, Msg: "the temp folder ($TMPDIR) does not exist or is not a folder"}
	}
	o := &Output{Dest: filepath.Join(base, TempName(false, suffix)), kind: Folder}
	o.Tmp = o.Dest
	track(o.Tmp)
	if err := os.Mkdir(o.Tmp, 0o700); err != nil {
		untrack(o.Tmp)
		return nil, writeError(o.Tmp, err)
	}
	var err error
	if o.lock, err = lock(o.Tmp); err != nil {
		o.Abort()
		return nil, writeError(o.Tmp, err)
	}
	return o, nil
}

// Kind is what an output is, so that --force replaces only something of the same kind that
// btconvert wrote: a folder with btconvert's receipt listing everything in it, or a file its
// writer recognises as its own (match reads as much of it as it needs). A first byte is not
// enough: a model's config.json starts like any JSON report.
type Kind struct {
	name  string
	dir   bool
	match func(f *os.File) bool
}

// FileKind is a kind of output file, told by match.
func FileKind(name string, match func(f *os.File) bool) Kind {
	return Kind{name: name, match: match}
}

// JSONKind is a JSON object that btconvert writes, told by keys only that writer gives it (all
// of them present at the top level).
func JSONKind(name string, keys ...string) Kind {
	return FileKind(name, func(f *os.File) bool {
		var obj map[string]json.RawMessage
		if json.NewDecoder(io.LimitReader(f, jsonKindLimit)).Decode(&obj) != nil {
			return false
		}
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				return false
			}
		}
		return true
	})
}

// jsonKindLimit bounds what JSONKind reads: far past any report btconvert writes.
const jsonKindLimit = 256 << 20

// Folder is the kind of a folder output.
var Folder = Kind{name: "folder", dir: true}

// Receipt is the file btconvert writes into every folder it outputs, listing what it wrote
// there: --force replaces a folder only when it holds nothing else.
const Receipt = ".btconvert-output"

// receipt is the Receipt's content.
type receipt struct {
	Tool  string   `json:"tool"`
	Files []string `json:"files"` // paths relative to the folder, sorted
}

// CheckDest refuses a destination whose folder does not exist (as cp does: a mistyped path is
// not made into folders), an existing destination unless force, and with force anything
// btconvert did not write as this kind of output (a folder holding other files, a file of another
// kind), and the current folder or one that holds it.
func CheckDest(dest string, force bool, kind Kind) error {
	st, err := os.Lstat(dest)
	if err != nil {
		return checkParent(dest)
	}
	// Both sides resolved: the shell's folder reached through a symlink is still the same folder.
	if cwd, err := os.Getwd(); err == nil {
		c, cerr := realPath(cwd)
		if d, err := realPath(dest); err == nil && cerr == nil && within(c, d) {
			return &errs.InputError{File: dest, Msg: "is the current folder or holds it; not replaced (choose another output)"}
		}
	}
	if !force {
		return &errs.InputError{File: dest, Msg: "already exists (use {Force} to replace it)"}
	}
	if kind.dir {
		if !st.IsDir() {
			return &errs.InputError{File: dest, Msg: "exists and is not a folder ({Force} replaces a folder with a folder only)"}
		}
		return checkReceipt(dest)
	}
	if !st.Mode().IsRegular() {
		return &errs.InputError{File: dest, Msg: "exists and is not a regular file ({Force} replaces a file with a file only)"}
	}
	f, err := os.Open(dest)
	if err != nil {
		return writeError(dest, err)
	}
	ok := kind.match(f)
	f.Close()
	if !ok {
		return &errs.InputError{File: dest, Msg: fmt.Sprintf("exists and is not a %s; not replaced ({Force} replaces only what btconvert wrote)", kind.name)}
	}
	return nil
}

// checkReceipt refuses a folder btconvert did not write, or that holds anything its receipt does
// not list.
func checkReceipt(dir string) error {
	b, err := ReadFile(filepath.Join(dir, Receipt), 1<<20)
	var r receipt
	if err != nil || json.Unmarshal(b, &r) != nil || r.Tool != "btconvert" {
		return &errs.InputError{File: dir, Msg: "was not written by btconvert (it has no " + Receipt + " receipt); not replaced ({Force} replaces only what btconvert wrote)"}
	}
	listed := map[string]bool{Receipt: true}
	for _, f := range r.Files {
		listed[f] = true
	}
	var extra string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || extra != "" {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return nil
		}
		if !listed[rel] {
			extra = rel
			return filepath.SkipAll
		}
		return nil
	})
	if extra != "" {
		return &errs.InputError{File: dir, Msg: fmt.Sprintf("holds %s, which btconvert did not write there; not replaced (move it away or choose another output)", extra)}
	}
	return nil
}

// writeReceipt lists the files in dir in its receipt.
func writeReceipt(dir string) error {
	r := receipt{Tool: "btconvert", Files: []string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			r.Files = append(r.Files, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(r.Files)
	b, _ := json.MarshalIndent(r, "", "  ")
	return os.WriteFile(filepath.Join(dir, Receipt), append(b, '\n'), 0o644)
}

// AddToReceipt lists a file written later into a folder btconvert wrote (verify --record's
// report), so that --force may still replace the folder. A folder without a receipt is left so.
func AddToReceipt(dir, name string) error {
	b, err := ReadFile(filepath.Join(dir, Receipt), 1<<20)
	if err != nil {
		return nil
	}
	var r receipt
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	if !slices.Contains(r.Files, name) {
		r.Files = append(r.Files, name)
		sort.Strings(r.Files)
	}
	js, _ := json.MarshalIndent(r, "", "  ")
	_, err = WriteFile(filepath.Join(dir, Receipt), append(js, '\n'))
	return err
}

func newOutput(dest string, force bool, kind Kind) (*Output, error) {
	dest = filepath.Clean(dest)
	if err := CheckDest(dest, force, kind); err != nil {
		return nil, err
	}
	parent := filepath.Dir(dest)
	o := &Output{Dest: dest, force: force, kind: kind}
	Sweep(parent)
	o.Tmp = filepath.Join(parent, TempName(true, "tmp"))
	track(o.Tmp)
	return o, nil
}

// checkParent refuses a destination whose folder is missing or is not a folder.
func checkParent(dest string) error {
	parent := filepath.Dir(filepath.Clean(dest))
	st, err := os.Stat(parent)
	switch {
	case err == nil && st.IsDir():
		return nil
	case err == nil:
		return &errs.InputError{File: dest, Msg: fmt.Sprintf("cannot be written: %s is not a folder", parent)}
	case errors.Is(err, fs.ErrNotExist):
		return &errs.InputError{File: dest, Msg: fmt.Sprintf("cannot be written: the folder %s does not exist (create it first)", parent)}
	}
	return writeError(dest, err)
}

// Commit puts Tmp in the destination's place (a folder gets its receipt first).
func (o *Output) Commit() error {
	if o.kind.dir {
		if err := writeReceipt(o.Tmp); err != nil {
			o.Abort()
			return writeError(o.Dest, err)
		}
		if err := os.Chmod(o.Tmp, 0o755); err != nil { // MkdirTemp-like permissions otherwise
			o.Abort()
			return writeError(o.Dest, err)
		}
	}
	err := renameNoReplace(o.Tmp, o.Dest)
	if errors.Is(err, os.ErrExist) && o.force {
		if err = CheckDest(o.Dest, true, o.kind); err != nil {
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
	o.unlock()
	untrack(o.Tmp)
	return nil
}

func (o *Output) unlock() {
	if o.lock != nil {
		o.lock.Close()
		o.lock = nil
	}
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

// Abort removes Tmp.
func (o *Output) Abort() {
	if o.Tmp != "" {
		os.RemoveAll(o.Tmp)
		untrack(o.Tmp)
	}
	o.unlock()
}

// CheckNotInput refuses an output that is, contains, or is inside one of the command's inputs
// (symlinks resolved): replacing it would destroy the input. Inputs that do not exist (a config
// given by name) cannot be destroyed and are passed over.
func CheckNotInput(dest string, inputs ...string) error {
	for _, in := range inputs {
		if in == "" {
			continue
		}
		if _, err := os.Lstat(in); err != nil {
			continue
		}
		if Overlap(dest, in) {
			return &errs.InputError{File: dest, Msg: fmt.Sprintf("is, holds or lies inside the input %s; refusing to replace it (choose another output)", in)}
		}
	}
	return nil
}

// Overlap reports whether a and b are the same path or one lies inside the other, symlinks of
// their existing parts resolved.
func Overlap(a, b string) bool {
	ra, err := realPath(a)
	if err != nil {
		return false
	}
	rb, err := realPath(b)
	if err != nil {
		return false
	}
	return within(ra, rb) || within(rb, ra)
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
