package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/btconvert/btconvert/internal/fsio"
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

// WriteTo streams a safetensors image to w.
func WriteTo(w io.Writer, meta map[string]string, tensors []WriteTensor, progress Progress) error {
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

// Write writes tensors (in the order given) to path, a file in a folder this run owns, through a
// temp file renamed at the end: a failure leaves nothing behind.
func Write(path string, meta map[string]string, tensors []WriteTensor, progress Progress) (fsio.Written, error) {
	hf, err := fsio.Create(path)
	if err != nil {
		return fsio.Written{}, err
	}
	if err := WriteTo(hf, meta, tensors, progress); err != nil {
		hf.Abort()
		return fsio.Written{}, err
	}
	return hf.Commit()
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
func WriteSharded(dir string, maxBytes int64, meta map[string]string, tensors []WriteTensor, progress Progress) ([]fsio.Written, error) {
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
		w, err := Write(filepath.Join(dir, "model.safetensors"), meta, tensors, progress)
		if err != nil {
			return nil, err
		}
		return []fsio.Written{w}, nil
	}
	var out []fsio.Written
	idx := ShardIndex{Metadata: map[string]any{"total_size": total}, WeightMap: map[string]string{}}
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		w, err := Write(filepath.Join(dir, name), meta, g, progress)
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
	w, err := fsio.WriteFile(filepath.Join(dir, IndexName), append(js, '\n'))
	if err != nil {
		return nil, err
	}
	return append(out, w), nil
}
