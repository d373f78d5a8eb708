package formats

import (
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Tensor is one tensor of a model in our layout. Its bytes are produced on demand, each time Raw
// is called (read from a file, or computed from other tensors), and not kept.
type Tensor struct {
	Component string
	Name      string // name inside the component, e.g. "layers.0.attention.dense.weight"
	DType     safetensors.DType
	Shape     []int
	SrcFile   string // where the bytes come from, for error messages
	SrcName   string // the tensor's name in SrcFile
	load      func() ([]byte, error)
}

// NewTensor makes a tensor whose bytes come from load.
func NewTensor(component, name string, dtype safetensors.DType, shape []int, srcFile, srcName string, load func() ([]byte, error)) *Tensor {
	return &Tensor{Component: component, Name: name, DType: dtype, Shape: shape, SrcFile: srcFile, SrcName: srcName, load: load}
}

// FromCheckpoint is the checkpoint's tensor src as our component/name (same bytes).
func FromCheckpoint(c *safetensors.Checkpoint, src, component, name string) *Tensor {
	info := c.Info(src)
	return NewTensor(component, name, info.DType, info.Shape, c.FileOf(src), src, func() ([]byte, error) { return c.Raw(src) })
}

// WithLoad is a copy of t under another name whose bytes come from load.
func (t *Tensor) WithLoad(component, name string, shape []int, load func() ([]byte, error)) *Tensor {
	c := *t
	c.Component, c.Name, c.Shape, c.load = component, name, shape, load
	return &c
}

// Renamed is t under another component and name (same bytes).
func (t *Tensor) Renamed(component, name string) *Tensor {
	c := *t
	c.Component, c.Name = component, name
	return &c
}

// Key is "component/name", unique in a model.
func (t *Tensor) Key() string { return t.Component + "/" + t.Name }

// Raw returns the bytes as stored, little-endian; float bytes are checked to be finite.
func (t *Tensor) Raw() ([]byte, error) {
	b, err := t.load()
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != t.Bytes() {
		return nil, errs.Tensor(t.SrcFile, t.SrcName, "%d bytes, want %d for %s%v", len(b), t.Bytes(), t.DType, t.Shape)
	}
	// Every reader and writer gets its bytes here, so one check covers import, generation and
	// quantization alike: a NaN or infinity would otherwise spread silently through the logits.
	if i, v := safetensors.NonFinite(t.DType, b); i >= 0 {
		return nil, errs.Tensor(t.SrcFile, t.SrcName, "value %v at index %d: weights must be finite numbers", v, i)
	}
	return b, nil
}

// Float32 returns the values converted to float32.
func (t *Tensor) Float32() ([]float32, error) { return t.floats(safetensors.ToFloat32) }

// Float32View is Float32 that may share the loaded bytes (no copy for F32): read it only.
func (t *Tensor) Float32View() ([]float32, error) { return t.floats(safetensors.Float32View) }

func (t *Tensor) floats(convert func(safetensors.DType, []byte) ([]float32, error)) ([]float32, error) {
	raw, err := t.Raw()
	if err != nil {
		return nil, err
	}
	v, err := convert(t.DType, raw)
	if err != nil {
		return nil, errs.Tensor(t.SrcFile, t.SrcName, "%v", err)
	}
	return v, nil
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Bytes is the stored size.
func (t *Tensor) Bytes() int64 { return t.NumElements() * int64(t.DType.Size()) }

// ToWrite is t as a tensor to write under name and shape (the same bytes, or converted to the
// float dtype to; "" keeps t's dtype), the bytes passed through transform first if it is not nil.
func (t *Tensor) ToWrite(name string, shape []int, to safetensors.DType, transform func([]byte) []byte) safetensors.WriteTensor {
	if to == "" {
		to = t.DType
	}
	return safetensors.WriteTensor{Name: name, DType: to, Shape: shape, Data: func() ([]byte, error) {
		raw, err := t.Raw()
		if err != nil {
			return nil, err
		}
		if transform != nil {
			raw = transform(raw)
		}
		out, err := safetensors.ConvertRaw(t.DType, to, raw)
		if err != nil {
			return nil, errs.Tensor(t.SrcFile, t.SrcName, "%v", err)
		}
		return out, nil
	}}
}

// Generated is a tensor whose values fill computes (initialisations): float32 values stored as dt.
// what names it in messages.
func Generated(component, name string, dt safetensors.DType, shape []int, what string, fill func([]float32)) *Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return NewTensor(component, name, dt, shape, what, component+"/"+name, func() ([]byte, error) {
		f := make([]float32, n)
		fill(f)
		return safetensors.FromFloat32(dt, f)
	})
}
