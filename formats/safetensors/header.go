// Package safetensors reads and writes the safetensors format (huggingface/safetensors): header
// validation as strict as the reference implementation's, reads of one tensor at a time from a
// regular file, a streaming writer that never leaves a partial file, HF shards with their index, and
// the dtype codecs.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"unicode/utf8"

	"github.com/btconvert/btconvert/errs"
)

// maxHeaderLen is the limit huggingface/safetensors puts on the JSON header.
const maxHeaderLen = 100_000_000

// TensorInfo describes one tensor of a safetensors file. Begin and End are byte offsets into the
// data buffer (after the header).
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t *TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	Tensors  []TensorInfo // in data-offset order
	Metadata map[string]string
	DataLen  int64 // bytes of the data buffer
	HeaderN  int64 // length of the JSON header
}

// ParseHeader validates a whole safetensors file image the way huggingface/safetensors does, given
// at least its first 8+N bytes (buf) and the total file size. It returns an InputError naming file
// (and the tensor) on the first problem found. It never panics on any input (see the fuzz test).
func ParseHeader(file string, buf []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 || len(buf) < 8 {
		if bytes.HasPrefix(buf, []byte("version https://git-lfs")) {
			return nil, lfsError(file)
		}
		return nil, errs.File(file, "not a safetensors file: %d bytes, shorter than the 8-byte header length", fileSize)
	}
	if bytes.HasPrefix(buf, []byte("version https://git-lfs")) {
		return nil, lfsError(file)
	}
	n := binary.LittleEndian.Uint64(buf[:8])
	if n > maxHeaderLen {
		return nil, errs.File(file, "header length %d is over the limit of %d bytes (not a safetensors file?)", n, maxHeaderLen)
	}
	if int64(n) > fileSize-8 {
		return nil, errs.File(file, "truncated: header length %d runs past the end of the file (%d bytes)", n, fileSize)
	}
	if int64(len(buf)) < 8+int64(n) {
		return nil, errs.File(file, "truncated: could not read the %d-byte header", n)
	}
	hb := buf[8 : 8+n]
	if !utf8.Valid(hb) {
		return nil, errs.File(file, "header is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(hb, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errs.File(file, "header is not a JSON object")
	}
	entries, meta, err := decodeHeaderObject(file, hb)
	if err != nil {
		return nil, err
	}
	h := &Header{Metadata: meta, DataLen: fileSize - 8 - int64(n), HeaderN: int64(n)}
	for _, e := range entries {
		ti, err := e.info(file)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, ti)
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var pos int64
	for i := range h.Tensors {
		t := &h.Tensors[i]
		if t.Begin != pos {
			if t.Begin < pos {
				return nil, errs.Tensor(file, t.Name, "data offsets [%d, %d) overlap the previous tensor (ends at %d)", t.Begin, t.End, pos)
			}
			return nil, errs.Tensor(file, t.Name, "data offsets [%d, %d) leave a gap after the previous tensor (ends at %d)", t.Begin, t.End, pos)
		}
		if t.End < t.Begin {
			return nil, errs.Tensor(file, t.Name, "data offsets [%d, %d) end before they begin", t.Begin, t.End)
		}
		nel, ok := uint64(1), true
		for _, d := range t.Shape {
			hi, lo := bits.Mul64(nel, uint64(d))
			if hi != 0 {
				ok = false
				break
			}
			nel = lo
		}
		hi, nbytes := bits.Mul64(nel, uint64(t.DType.Size()))
		if !ok || hi != 0 || nbytes > math.MaxInt64 {
			return nil, errs.Tensor(file, t.Name, "shape %v overflows the size of a tensor", t.Shape)
		}
		if int64(nbytes) != t.End-t.Begin {
			return nil, errs.Tensor(file, t.Name, "shape %v of %s needs %d bytes but data offsets [%d, %d) hold %d", t.Shape, t.DType, nbytes, t.Begin, t.End, t.End-t.Begin)
		}
		pos = t.End
	}
	if pos < h.DataLen {
		return nil, errs.File(file, "%d trailing bytes after the last tensor (data buffer is %d bytes, tensors end at %d)", h.DataLen-pos, h.DataLen, pos)
	}
	if pos > h.DataLen {
		return nil, errs.File(file, "truncated: tensors need %d data bytes but the file holds %d (file is %d bytes)", pos, h.DataLen, fileSize)
	}
	return h, nil
}

func lfsError(file string) error {
	return errs.File(file, "this is a git-LFS pointer, not the weights: fetch the real file (git lfs pull) and try again")
}

type rawEntry struct {
	name string
	raw  json.RawMessage
}

// decodeHeaderObject walks the top-level JSON object token by token so duplicate names are caught
// (a map would silently keep the last one).
func decodeHeaderObject(file string, hb []byte) ([]rawEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, errs.File(file, "header is not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errs.File(file, "header is not a JSON object")
	}
	var entries []rawEntry
	var meta map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, errs.File(file, "header is not valid JSON: %v", err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, errs.File(file, "header is not valid JSON: %v", err)
		}
		if seen[name] {
			return nil, nil, errs.Tensor(file, name, "appears twice in the header")
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, errs.File(file, "__metadata__ must be an object of strings: %v", err)
			}
			continue
		}
		entries = append(entries, rawEntry{name, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, errs.File(file, "header is not valid JSON: %v", err)
	}
	// Only padding may follow the object.
	rest, _ := io.ReadAll(dec.Buffered())
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, nil, errs.File(file, "header is not valid JSON: unexpected data after the object")
	}
	return entries, meta, nil
}

func (e rawEntry) info(file string) (TensorInfo, error) {
	var v struct {
		DType   *string  `json:"dtype"`
		Shape   *[]int64 `json:"shape"`
		Offsets *[]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(e.raw, &v); err != nil {
		return TensorInfo{}, errs.Tensor(file, e.name, "bad header entry: %v", err)
	}
	if v.DType == nil || v.Shape == nil || v.Offsets == nil {
		return TensorInfo{}, errs.Tensor(file, e.name, "header entry needs dtype, shape and data_offsets")
	}
	dt := DType(*v.DType)
	if dt.Size() == 0 {
		if unsupportedDTypes[*v.DType] {
			return TensorInfo{}, errs.Tensor(file, e.name, "unsupported dtype %s", *v.DType)
		}
		return TensorInfo{}, errs.Tensor(file, e.name, "unknown dtype %q", *v.DType)
	}
	if len(*v.Offsets) != 2 {
		return TensorInfo{}, errs.Tensor(file, e.name, "data_offsets must be [begin, end]")
	}
	shape := make([]int, len(*v.Shape))
	for i, d := range *v.Shape {
		if d < 0 || d > math.MaxInt32*int64(1<<16) {
			return TensorInfo{}, errs.Tensor(file, e.name, "bad dimension %d in shape %v", d, *v.Shape)
		}
		shape[i] = int(d)
	}
	b, en := (*v.Offsets)[0], (*v.Offsets)[1]
	if b < 0 || en < 0 {
		return TensorInfo{}, errs.Tensor(file, e.name, "negative data offsets [%d, %d]", b, en)
	}
	return TensorInfo{Name: e.name, DType: dt, Shape: shape, Begin: b, End: en}, nil
}

func (t TensorInfo) String() string { return fmt.Sprintf("%s %s%v", t.Name, t.DType, t.Shape) }
