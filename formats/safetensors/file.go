package safetensors

import (
	"encoding/binary"
	"errors"
	"io"
	"os"

	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/fsio"
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
