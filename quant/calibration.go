package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Calibration is what running the base model over a calibration text measured, per
// "component/name" weight key: the mean square of each input column (the llama.cpp imatrix idea:
// the importance of that column's quantization error) and, for GPTQ, the whole second moment
// E[x x^T] of the inputs.
type Calibration struct {
	Importance map[string][]float32 // mean square of each input column
	Hessian    map[string][]float64 // E[x x^T], row-major [in, in] (GPTQ), or nil
	// File is where the statistics came from (a statistics file, or the text they were collected
	// on), named when they turn out unusable.
	File string
}

// CalibrationFile is the kind of file Save writes, so that --force replaces statistics only: a
// safetensors file of importance/ and hessian/ tensors with the calibration text's hash in its
// metadata (never a model's component file, which is safetensors too).
var CalibrationFile = fsio.FileKind("calibration statistics file", func(f *os.File) bool {
	sf, err := safetensors.Open(f.Name())
	if err != nil {
		return false
	}
	defer sf.Close()
	if _, ok := sf.Metadata["text_sha256"]; !ok || len(sf.Tensors) == 0 {
		return false
	}
	for _, t := range sf.Tensors {
		if kind, _, _ := strings.Cut(t.Name, "/"); kind != "importance" && kind != "hessian" {
			return false
		}
	}
	return true
})

// Save writes the statistics as a safetensors file (importance/KEY as F32, hessian/KEY as F64),
// to reuse them without running the model again (llama-imatrix's file, for this tool).
func (c *Calibration) Save(path string, meta map[string]string, force bool) error {
	f, err := c.Stage(path, meta, force)
	if err != nil {
		return err
	}
	_, err = f.Commit()
	return err
}

// Stage is Save up to the rename: the file is written beside path and returned uncommitted, for
// a caller that puts it in place with its other outputs (or aborts it with them).
func (c *Calibration) Stage(path string, meta map[string]string, force bool) (*fsio.File, error) {
	keys := make([]string, 0, len(c.Importance))
	for k := range c.Importance {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var wts []safetensors.WriteTensor
	for _, k := range keys {
		imp := c.Importance[k]
		wts = append(wts, safetensors.WriteTensor{Name: "importance/" + k, DType: safetensors.F32, Shape: []int{len(imp)},
			Data: func() ([]byte, error) { return safetensors.FromFloat32(safetensors.F32, imp) }})
		if h, ok := c.Hessian[k]; ok {
			wts = append(wts, safetensors.WriteTensor{Name: "hessian/" + k, DType: safetensors.F64, Shape: []int{len(imp), len(imp)},
				Data: func() ([]byte, error) {
					out := make([]byte, 8*len(h))
					for i, x := range h {
						binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(x))
					}
					return out, nil
				}})
		}
	}
	out, err := fsio.CreateOutput(path, force, CalibrationFile)
	if err != nil {
		return nil, err
	}
	if err := safetensors.WriteTo(out, meta, wts, nil); err != nil {
		out.Abort()
		return nil, err
	}
	return out, nil
}

// LoadCalibration reads statistics written by Save, with their metadata.
func LoadCalibration(path string) (*Calibration, map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// The provenance a quantized model records comes from here: without the text's hash the
	// statistics cannot say what they were measured on. (A hash is not checked against a text
	// the user no longer gives; a forged one is the user's own statement.)
	if h := f.Metadata["text_sha256"]; len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return nil, nil, errs.File(path, "has no text_sha256 in its metadata: not statistics saved by quantize --calib-out (collect them again with --calib FILE --calib-out %s)", filepath.Base(path))
	}
	c := &Calibration{Importance: map[string][]float32{}, File: path}
	for _, t := range f.Tensors {
		kind, key, ok := strings.Cut(t.Name, "/")
		switch {
		case ok && kind == "importance" && t.DType == safetensors.F32 && len(t.Shape) == 1:
			v, _, err := f.Float32(t.Name)
			if err != nil {
				return nil, nil, err
			}
			// Mean squares of activations: finite, not negative, and not all zero (a layer that saw
			// nothing would weigh every column as nothing).
			var sum float64
			for i, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) || x < 0 {
					return nil, nil, errs.Tensor(path, t.Name, "value %d is %g: importance is a mean square (finite, not negative)", i, x)
				}
				sum += float64(x)
			}
			if len(v) > 0 && sum == 0 {
				return nil, nil, errs.Tensor(path, t.Name, "is all zeros: no calibration data reached this layer")
			}
			c.Importance[key] = v
		case ok && kind == "hessian" && t.DType == safetensors.F64 && len(t.Shape) == 2 && t.Shape[0] == t.Shape[1]:
			raw, err := f.Raw(t.Name)
			if err != nil {
				return nil, nil, err
			}
			h := make([]float64, len(raw)/8)
			n := t.Shape[0]
			for i := range h {
				h[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
				if math.IsNaN(h[i]) || math.IsInf(h[i], 0) || (i/n == i%n && h[i] < 0) {
					return nil, nil, errs.Tensor(path, t.Name, "entry [%d, %d] is %g: a second moment is finite, with a diagonal not negative", i/n, i%n, h[i])
				}
			}
			if err := checkSecondMoment(h, n); err != nil {
				return nil, nil, errs.Tensor(path, t.Name, "%v", err)
			}
			if c.Hessian == nil {
				c.Hessian = map[string][]float64{}
			}
			c.Hessian[key] = h
		default:
			return nil, nil, errs.Tensor(path, t.Name, "not calibration statistics (want importance/KEY F32 [n] or hessian/KEY F64 [n, n])")
		}
	}
	for k, h := range c.Hessian {
		if n := len(c.Importance[k]); n*n != len(h) {
			return nil, nil, errs.Tensor(path, "hessian/"+k, "does not match importance/%s (%d columns)", k, n)
		}
	}
	return c, f.Metadata, nil
}

// checkSecondMoment refuses a matrix that cannot be E[x x^T] of any activations: all zeros (no
// calibration data reached the layer: GPTQ would then quantize blind), not symmetric, or with an
// entry past the Cauchy-Schwarz bound |h_ij| <= sqrt(h_ii h_jj) that every such matrix meets.
// These are O(n^2); a matrix that passes and is still indefinite is caught by GPTQ's Cholesky
// factorization, which names the file too (quantizeError).
func checkSecondMoment(h []float64, n int) error {
	zero := true
	for i := 0; i < n && zero; i++ {
		zero = h[i*n+i] == 0
	}
	if zero {
		return fmt.Errorf("is all zeros on its diagonal: no calibration data reached this layer")
	}
	// The tolerance is relative to the diagonal: the statistics are sums of float32 products,
	// whose rounding differs between [i, j] and [j, i] and can approach the bound for columns
	// that move together.
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			a, b := h[i*n+j], h[j*n+i]
			bound := math.Sqrt(h[i*n+i] * h[j*n+j])
			if math.Abs(a-b) > 1e-3*bound {
				return fmt.Errorf("entries [%d, %d] = %g and [%d, %d] = %g differ: a second moment is symmetric", i, j, a, j, i, b)
			}
			if math.Abs(a) > bound*(1+1e-3) {
				return fmt.Errorf("entry [%d, %d] = %g is past sqrt([%d, %d] x [%d, %d]) = %g: not the second moment of any activations", i, j, a, i, i, j, j, bound)
			}
		}
	}
	return nil
}

// CheckCollected refuses statistics collected on a text where a layer saw nothing, naming the
// text (c.File) and the layer.
func (c *Calibration) CheckCollected() error {
	for k, h := range c.Hessian {
		if err := checkSecondMoment(h, len(c.Importance[k])); err != nil {
			return errs.Tensor(c.File, "hessian/"+k, "%v", err)
		}
	}
	return nil
}

// Check refuses statistics that do not fit the model's Linear weights (other model, or missing).
func (c *Calibration) Check(path string, cfg *arch.Config, needHessian bool) error {
	for _, s := range arch.Tensors(cfg) {
		if s.Role != arch.RoleLinear {
			continue
		}
		imp, ok := c.Importance[s.Key()]
		if !ok {
			return errs.Tensor(path, "importance/"+s.Key(), "missing (statistics of another model?)")
		}
		if len(imp) != s.Shape[1] {
			return errs.Tensor(path, "importance/"+s.Key(), "has %d columns, the weight %v has %d (statistics of another model?)", len(imp), s.Shape, s.Shape[1])
		}
		if needHessian && c.Hessian[s.Key()] == nil {
			return errs.Tensor(path, "hessian/"+s.Key(), "missing: GPTQ needs the second moments (collect them with the gptq method)")
		}
	}
	return nil
}
