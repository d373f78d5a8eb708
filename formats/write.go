package formats

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// WriteTensor is one tensor to write. Data is called when the writer reaches the tensor, so only one
// tensor's bytes need to exist at a time.
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  func() ([]byte, error)
	Done  func() // called once the tensor is written (may be nil)
}

// Bytes is the size of the tensor's data.
func (t *WriteTensor) Bytes() int64 {
	n := int64(t.DType.Size())
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Written describes a file once written.
type Written struct {
	Path   string
	Size   int64
	SHA256 string
}

// Progress is told how many tensor bytes were just written (may be nil).
type Progress func(tensor string, n int64)

// encodeHeader builds the JSON header (in the given tensor order, padded with spaces to a multiple
// of 8 bytes so the data buffer is aligned, as huggingface/safetensors does).
func encodeHeader(meta map[string]string, tensors []WriteTensor) ([]byte, error) {
	var buf []byte
	buf = append(buf, '{')
	first := true
	add := func(k string, v any) error {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(append(append(buf, kb...), ':'), vb...)
		return nil
	}
	if len(meta) > 0 {
		if err := add("__metadata__", meta); err != nil { // json.Marshal sorts map keys
			return nil, err
		}
	}
	var off int64
	for i := range tensors {
		t := &tensors[i]
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		n := t.Bytes()
		if err := add(t.Name, map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + n}}); err != nil {
			return nil, err
		}
		off += n
	}
	buf = append(buf, '}')
	for len(buf)%8 != 0 {
		buf = append(buf, ' ')
	}
	return buf, nil
}

// writeSafetensorsTo streams a safetensors image to w.
func writeSafetensorsTo(w io.Writer, meta map[string]string, tensors []WriteTensor, progress Progress) error {
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("tensor %q given twice", t.Name)
		}
		seen[t.Name] = true
	}
	hdr, err := encodeHeader(meta, tensors)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for i := range tensors {
		t := &tensors[i]
		data, err := t.Data()
		if err != nil {
			return err
		}
		if int64(len(data)) != t.Bytes() {
			return fmt.Errorf("tensor %q: %d bytes of data for %s%v (want %d)", t.Name, len(data), t.DType, t.Shape, t.Bytes())
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if t.Done != nil {
			t.Done()
		}
		if progress != nil {
			progress(t.Name, int64(len(data)))
		}
	}
	return nil
}

// hashingFile writes through a buffer to a file, hashing and counting as it goes.
type hashingFile struct {
	f   *os.File
	bw  *bufio.Writer
	h   hash.Hash
	n   int64
	tmp string
}

func createAtomic(path string) (*hashingFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &hashingFile{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: sha256.New(), tmp: f.Name()}, nil
}

func (h *hashingFile) Write(p []byte) (int, error) {
	h.h.Write(p)
	h.n += int64(len(p))
	return h.bw.Write(p)
}

// commit flushes, fsyncs and renames the temp file to path.
func (h *hashingFile) commit(path string) (Written, error) {
	err := h.bw.Flush()
	if err == nil {
		err = h.f.Sync()
	}
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(h.tmp, 0o644) // CreateTemp makes 0600
	}
	if err == nil {
		err = os.Rename(h.tmp, path)
	}
	if err != nil {
		os.Remove(h.tmp)
		return Written{}, err
	}
	return Written{Path: path, Size: h.n, SHA256: hex.EncodeToString(h.h.Sum(nil))}, nil
}

func (h *hashingFile) abort() {
	h.f.Close()
	os.Remove(h.tmp)
}

// WriteSafetensors writes tensors (in the order given) to path through a temp file in the same
// folder, fsynced and renamed at the end: a failure leaves nothing behind.
func WriteSafetensors(path string, meta map[string]string, tensors []WriteTensor, progress Progress) (Written, error) {
	hf, err := createAtomic(path)
	if err != nil {
		return Written{}, err
	}
	if err := writeSafetensorsTo(hf, meta, tensors, progress); err != nil {
		hf.abort()
		return Written{}, fmt.Errorf("writing %s: %w", path, err)
	}
	return hf.commit(path)
}

// WriteFileAtomic writes data to path through a fsynced temp file.
func WriteFileAtomic(path string, data []byte) (Written, error) {
	hf, err := createAtomic(path)
	if err != nil {
		return Written{}, err
	}
	if _, err := hf.Write(data); err != nil {
		hf.abort()
		return Written{}, err
	}
	return hf.commit(path)
}

// ShardIndex is the content of model.safetensors.index.json.
type ShardIndex struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// WriteSharded writes tensors as HF-style shards of at most maxBytes of tensor data each
// (model-00001-of-0000N.safetensors plus model.safetensors.index.json), or as one
// model.safetensors when maxBytes <= 0 or everything fits. A tensor larger than maxBytes gets a
// shard of its own.
func WriteSharded(dir string, maxBytes int64, meta map[string]string, tensors []WriteTensor, progress Progress) ([]Written, error) {
	var groups [][]WriteTensor
	var cur []WriteTensor
	var curBytes, total int64
	for _, t := range tensors {
		b := t.Bytes()
		total += b
		if maxBytes > 0 && len(cur) > 0 && curBytes+b > maxBytes {
			groups = append(groups, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, t)
		curBytes += b
	}
	groups = append(groups, cur)
	if len(groups) == 1 {
		w, err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), meta, tensors, progress)
		if err != nil {
			return nil, err
		}
		return []Written{w}, nil
	}
	var out []Written
	idx := ShardIndex{Metadata: map[string]any{"total_size": total}, WeightMap: map[string]string{}}
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		w, err := WriteSafetensors(filepath.Join(dir, name), meta, g, progress)
		if err != nil {
			for _, o := range out {
				os.Remove(o.Path)
			}
			return nil, err
		}
		out = append(out, w)
		for _, t := range g {
			idx.WeightMap[t.Name] = name
		}
	}
	js, _ := json.MarshalIndent(idx, "", "  ")
	w, err := WriteFileAtomic(filepath.Join(dir, "model.safetensors.index.json"), append(js, '\n'))
	if err != nil {
		return nil, err
	}
	return append(out, w), nil
}
