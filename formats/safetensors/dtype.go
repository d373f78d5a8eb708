package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// DType is a safetensors dtype string.
type DType string

const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

var dtypeSizes = map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1}

// Known to the safetensors format but not to us: recognised so the error says "unsupported" rather
// than "unknown".
var unsupportedDTypes = map[string]bool{
	"F8_E4M3": true, "F8_E5M2": true, "F8_E8M0": true, "F4": true, "F6_E2M3": true, "F6_E3M2": true,
	"U16": true, "U32": true, "U64": true, "C64": true,
}

// Size is the byte size of one element.
func (d DType) Size() int { return dtypeSizes[d] }

// IsFloat reports whether d is a floating-point dtype.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// ParseDType maps a user spelling (f32, bf16, F16, ...) to a DType.
func ParseDType(s string) (DType, error) {
	switch s {
	case "f64", "F64", "float64":
		return F64, nil
	case "f32", "F32", "float32":
		return F32, nil
	case "f16", "F16", "float16":
		return F16, nil
	case "bf16", "BF16", "bfloat16":
		return BF16, nil
	}
	return "", fmt.Errorf("unknown dtype %q (want f32, bf16 or f16)", s)
}

// Lower is the user spelling of d (f32, bf16, ...).
func (d DType) Lower() string {
	switch d {
	case F64:
		return "f64"
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	return string(d)
}

// littleEndian: stored little-endian F32 data is already this machine's float32.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32View is ToFloat32 without the copy where one is not needed: F32 data, 4-byte aligned, on
// a little-endian machine is returned as the same memory (a weight then costs its size once, not
// twice). The result may share raw: read it, never write it.
func Float32View(d DType, raw []byte) ([]float32, error) {
	if d == F32 && littleEndian && len(raw) >= 4 && len(raw)%4 == 0 && uintptr(unsafe.Pointer(&raw[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4), nil
	}
	return ToFloat32(d, raw)
}

// ToFloat32 converts raw little-endian data of dtype d to float32. F16 and BF16 convert exactly;
// F64 and integers round to the nearest float32.
func ToFloat32(d DType, raw []byte) ([]float32, error) {
	n := len(raw) / max(d.Size(), 1)
	out := make([]float32, n)
	switch d {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
	case I64, I32, I16, I8, U8, BOOL:
		ints, err := ToInt64(d, raw)
		if err != nil {
			return nil, err
		}
		for i, v := range ints {
			out[i] = float32(v)
		}
	default:
		return nil, fmt.Errorf("cannot convert dtype %s to float", d)
	}
	return out, nil
}

// ToInt64 converts raw integer data to int64.
func ToInt64(d DType, raw []byte) ([]int64, error) {
	n := len(raw) / max(d.Size(), 1)
	out := make([]int64, n)
	switch d {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(raw[i]))
		}
	case U8, BOOL:
		for i := range out {
			out[i] = int64(raw[i])
		}
	default:
		return nil, fmt.Errorf("dtype %s is not an integer type", d)
	}
	return out, nil
}

// FromFloat32 encodes float32 values as raw little-endian data of float dtype d. BF16 rounds to
// nearest even (as PyTorch does); F16 rounds to nearest even through x448/float16.
func FromFloat32(d DType, v []float32) ([]byte, error) {
	out := make([]byte, len(v)*d.Size())
	switch d {
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(x)))
		}
	case F16:
		over := 0
		for i, x := range v {
			if x > maxF16 || x < -maxF16 {
				if !math.IsInf(float64(x), 0) {
					over++
				}
			}
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
		}
		if over > 0 {
			return nil, fmt.Errorf("%d values are beyond the f16 range (±65504) and would become infinite; keep f32 or use bf16", over)
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], BF16Bits(x))
		}
	default:
		return nil, fmt.Errorf("cannot encode floats as dtype %s", d)
	}
	return out, nil
}

// maxF16 is the largest finite float16 (values up to half an ulp above it still round to it).
const maxF16 = 65504 + 16

// BF16Bits rounds a float32 to bfloat16 (round to nearest even, NaN kept quiet).
func BF16Bits(x float32) uint16 {
	b := math.Float32bits(x)
	if x != x {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// ConvertRaw converts raw float data from one float dtype to another; same dtype returns raw as is.
func ConvertRaw(from, to DType, raw []byte) ([]byte, error) {
	if from == to {
		return raw, nil
	}
	f, err := Float32View(from, raw) // only read
	if err != nil {
		return nil, err
	}
	return FromFloat32(to, f)
}

// NonFinite is the index of the first NaN or infinity in raw float data of dtype d, and its
// value; -1 when every value is finite (or d is not a float dtype). It looks at the exponent
// bits only, so it runs at memory speed over a whole model.
func NonFinite(d DType, raw []byte) (int, float64) {
	i := -1
	switch d {
	case F64:
		for j := 0; j+8 <= len(raw); j += 8 {
			if binary.LittleEndian.Uint64(raw[j:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				i = j / 8
				break
			}
		}
	case F32:
		for j := 0; j+4 <= len(raw); j += 4 {
			if binary.LittleEndian.Uint32(raw[j:])&0x7f800000 == 0x7f800000 {
				i = j / 4
				break
			}
		}
	case F16, BF16:
		exp := uint16(0x7c00)
		if d == BF16 {
			exp = 0x7f80
		}
		for j := 0; j+2 <= len(raw); j += 2 {
			if binary.LittleEndian.Uint16(raw[j:])&exp == exp {
				i = j / 2
				break
			}
		}
	}
	if i < 0 {
		return -1, 0
	}
	if d == F64 {
		return i, math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	v, _ := ToFloat32(d, raw[i*d.Size():(i+1)*d.Size()])
	return i, float64(v[0])
}
