package graph

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive

	"github.com/btconvert/btconvert/formats/arch"
)

// dequantize rebuilds a quantized weight [rows, cols] in the compute dtype, inside the graph, from
// its packed parts (docs/FORMAT.md), as its scheme (arch.QuantScheme) lays them out: the codes
// unpacked to one float32 per weight, times each group's scale (plus its minimum), then the
// compute dtype. 4-bit codes are split from their bytes with bit operations.
func (b *builder) dequantize(key string, q *arch.Quantization) *Node {
	s := q.Scheme()
	codes := b.params[key+arch.QWeightSuffix]
	var vals *Node // [rows, stored cols] float32 codes
	switch s.Bits {
	case 8:
		vals = ConvertDType(codes, dtypes.Float32)
	case 4:
		// Byte = lo | hi<<4, low nibble first along the row; a code is stored minus the lowest
		// level (symmetric int4: plus 8).
		lo := BitwiseAnd(codes, Const(b.g, uint8(0x0f)))
		hi := BitwiseShiftRightLogicalScalar(codes, uint8(4))
		vals = ConvertDType(Reshape(Stack([]*Node{lo, hi}, -1), q.Rows, -1), dtypes.Float32)
		if least, _ := s.Levels(q.Symmetric); least != 0 {
			vals = AddScalar(vals, float64(least))
		}
	default:
		panic(fmt.Sprintf("%s: no in-graph unpacking of %d-bit codes", key, s.Bits))
	}
	g, gc := q.Groups(), q.GroupCols()
	per := func(n *Node) *Node { return Reshape(ConvertDType(n, dtypes.Float32), q.Rows, g, 1) }
	w := Mul(Reshape(vals, q.Rows, g, gc), per(b.params[key+arch.ScalesSuffix]))
	if !q.Symmetric {
		w = Add(w, per(b.params[key+arch.MinsSuffix]))
	}
	w = Reshape(w, q.Rows, g*gc)
	if g*gc != q.Cols {
		w = Slice(w, AxisRange(), AxisRange(0, q.Cols))
	}
	return ConvertDType(w, b.dt)
}
