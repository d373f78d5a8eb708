package graph

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/formats/arch"
)

// dequantize rebuilds a quantized weight [rows, cols] in the compute dtype, inside the graph, from
// its packed parts (docs/FORMAT.md). The integer codes become float32 first: the pure-Go backend's
// integer dot products are broken, and there are no shift ops, so nibbles are split arithmetically.
func (b *builder) dequantize(key string, q *arch.Quantization) *Node {
	codes := ConvertDType(b.params[key+arch.QWeightSuffix], dtypes.Float32)
	scales := ConvertDType(b.params[key+arch.ScalesSuffix], dtypes.Float32)
	var w *Node
	if q.Type == arch.Int8 {
		w = Mul(codes, InsertAxes(scales, -1)) // per output row
	} else {
		// Byte = lo + 16*hi, low nibble first along the row.
		hi := Floor(DivScalar(codes, 16))
		lo := Sub(codes, MulScalar(hi, 16))
		vals := Reshape(Stack([]*Node{lo, hi}, -1), q.Rows, q.PaddedCols) // [rows, padded]
		if q.Symmetric {
			vals = AddScalar(vals, -8)
		}
		g := q.Groups()
		grouped := Reshape(vals, q.Rows, g, q.GroupSize)
		grouped = Mul(grouped, InsertAxes(scales, -1))
		if !q.Symmetric {
			grouped = Add(grouped, InsertAxes(ConvertDType(b.params[key+arch.MinsSuffix], dtypes.Float32), -1))
		}
		w = Reshape(grouped, q.Rows, q.PaddedCols)
		if q.PaddedCols != q.Cols {
			w = Slice(w, AxisRange(), AxisRange(0, q.Cols))
		}
	}
	return ConvertDType(w, b.dt)
}
