package safetensors

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/internal/fsio"
)

// File is an open safetensors file. Tensors are read one at a time into fresh buffers (pread, no
// mapping): memory holds only the tensors in use, and a file truncated or changed while it is read
// gives an error naming it, not a fault.
type File struct {
	Path string
	Header
	byName map[string]int
	f      *os.File
	size   int64
	check  *streamCheck // nil: no expected hash
}

// streamCheck hashes a file as its tensors are read, in file order, and compares the sum with the
// expected one when the last byte has gone through: a file whose tensors are all read is checked
// without a second pass over it.
type streamCheck struct {
	sync.Mutex
	want, against string // the expected sha256 (hex), and what gives it (for the message)
	h             hash.Hash
	next          int64 // bytes [0, next) are hashed
	err           error // the mismatch, once known
	done          bool
}

// Expect makes every later read check the file against its expected sha256 (hex) as a whole: the
// read that completes the file (or Finish) fails if the bytes differ. against names where the
// hash comes from, for the message ("manifest.json").
func (s *File) Expect(sha256Hex, against string) error {
	c := &streamCheck{want: sha256Hex, against: against, h: digest.New()}
	head := make([]byte, 8+s.HeaderN)
	if _, err := s.f.ReadAt(head, 0); err != nil {
		return errs.File(s.Path, "cannot read: %v", fsio.Unwrap(err))
	}
	c.h.Write(head)
	c.next = int64(len(head))
	s.check = c
	return nil
}

// feed hashes the bytes [off, off+len(b)) just read, reading any gap before them first. Bytes
// before what is already hashed (a tensor read twice) are not hashed again.
func (s *File) feed(off int64, b []byte) error {
	c := s.check
	c.Lock()
	defer c.Unlock()
	if c.done {
		return c.err
	}
	if off > c.next {
		gap := make([]byte, off-c.next)
		if _, err := s.f.ReadAt(gap, c.next); err != nil {
			return errs.File(s.Path, "cannot read: %v", fsio.Unwrap(err))
		}
		c.h.Write(gap)
		c.next = off
	}
	if off == c.next {
		c.h.Write(b)
		c.next += int64(len(b))
	}
	if c.next == s.size {
		c.done = true
		if hex.EncodeToString(c.h.Sum(nil)) != c.want {
			c.err = errs.File(s.Path, "does not match its sha256 in %s (changed after it was written)", c.against)
		}
	}
	return c.err
}

// Finish completes the check of a file whose tensors were not all read (it reads the rest);
// nil for a file without an expected hash.
func (s *File) Finish() error {
	if s.check == nil {
		return nil
	}
	s.check.Lock()
	done, next := s.check.done, s.check.next
	s.check.Unlock()
	if done {
		return s.check.err
	}
	rest := make([]byte, s.size-next)
	if _, err := s.f.ReadAt(rest, next); err != nil {
		return errs.File(s.Path, "cannot read: %v", fsio.Unwrap(err))
	}
	return s.feed(next, rest)
}

// Open validates path and keeps it open for reads.
func Open(path string) (*File, error) {
	f, st, err := fsio.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	size := st.Size()
	// The first bytes: the header length, or enough to recognise a git-LFS pointer.
	buf := make([]byte, min(size, 128))
	if _, err := io.ReadFull(f, buf); err != nil {
		f.Close()
		return nil, errs.File(path, "cannot read: %v", fsio.Unwrap(err))
	}
	if size >= 8 {
		if n := int64(binary.LittleEndian.Uint64(buf)); n <= maxHeaderLen && n <= size-8 && 8+n > int64(len(buf)) {
			more := make([]byte, 8+n-int64(len(buf)))
			if _, err := io.ReadFull(f, more); err != nil {
				f.Close()
				return nil, errs.File(path, "cannot read the header: %v", fsio.Unwrap(err))
			}
			buf = append(buf, more...)
		}
	}
	h, err := ParseHeader(path, buf, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	sf := &File{Path: path, Header: *h, f: f, size: size, byName: map[string]int{}}
	for i, t := range sf.Tensors {
		sf.byName[t.Name] = i
	}
	return sf, nil
}

// Close closes the file.
func (s *File) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Info returns the tensor's description, or nil.
func (s *File) Info(name string) *TensorInfo {
	i, ok := s.byName[name]
	if !ok {
		return nil
	}
	return &s.Tensors[i]
}

// Raw reads the tensor's bytes as stored into a new buffer.
func (s *File) Raw(name string) ([]byte, error) {
	t := s.Info(name)
	if t == nil {
		return nil, errs.Tensor(s.Path, name, "not in this file")
	}
	if s.f == nil {
		return nil, errs.Tensor(s.Path, name, "file already closed")
	}
	out := make([]byte, t.End-t.Begin)
	n, err := s.f.ReadAt(out, 8+s.HeaderN+t.Begin)
	if n == len(out) {
		if s.check != nil {
			if err := s.feed(8+s.HeaderN+t.Begin, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if errors.Is(err, io.EOF) || err == nil {
		return nil, errs.Tensor(s.Path, name, "truncated: the file ends %d bytes into the tensor's %d (it changed after it was opened?)", n, len(out))
	}
	return nil, errs.Tensor(s.Path, name, "cannot read: %v", fsio.Unwrap(err))
}

// Float32 reads a float tensor converted to float32.
func (s *File) Float32(name string) ([]float32, []int, error) {
	raw, err := s.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	t := s.Info(name)
	v, err := ToFloat32(t.DType, raw)
	if err != nil {
		return nil, nil, errs.Tensor(s.Path, name, "%v", err)
	}
	return v, t.Shape, nil
}

// Int64 reads an integer tensor as int64.
func (s *File) Int64(name string) ([]int64, []int, error) {
	raw, err := s.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	t := s.Info(name)
	v, err := ToInt64(t.DType, raw)
	if err != nil {
		return nil, nil, errs.Tensor(s.Path, name, "%v", err)
	}
	return v, t.Shape, nil
}
