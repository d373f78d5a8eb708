package graph

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/formats/arch"
)

// dequantize rebuilds a quantized weight [rows, cols] in the compute dtype, inside the graph, from
// its packed parts (docs/FORMAT.md): codes times scales (plus mins) in float32, then the compute
// dtype. int4 bytes are split into their nibbles with bit operations.
func (b *builder) dequantize(key string, q *arch.Quantization) *Node {
	codes := b.params[key+arch.QWeightSuffix]
	scales := ConvertDType(b.params[key+arch.ScalesSuffix], dtypes.Float32)
	var w *Node
	if q.Type == arch.Int8 {
		w = Mul(ConvertDType(codes, dtypes.Float32), InsertAxes(scales, -1)) // per output row
	} else {
		// Byte = lo | hi<<4, low nibble first along the row.
		lo := BitwiseAnd(codes, Const(b.g, uint8(0x0f)))
		hi := BitwiseShiftRightLogicalScalar(codes, uint8(4))
		vals := ConvertDType(Reshape(Stack([]*Node{lo, hi}, -1), q.Rows, q.PaddedCols), dtypes.Float32) // [rows, padded]
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
