// Package randinit makes models with the official random initialisation, for benchmarks and
// tests: any architecture, reproducible for a seed, generated one tensor at a time.
package randinit

import (
	"fmt"
	"math/rand/v2"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// Std is the standard deviation of the official (HF GPT-NeoX) initialisation of Linear and
// Embedding weights; biases start at 0 and LayerNorms at (1, 0).
const Std = 0.02

// Format is Model.Format of a random model.
const Format = "random-init"

// Model is a model of config c with the official random initialisation, generated lazily and
// reproducibly: tensor i draws from a PCG seeded with (seed, i).
func Model(c *arch.Config, seed uint64, dtype safetensors.DType) *formats.Model {
	var ts []*formats.Tensor
	for i, s := range arch.Tensors(c) {
		role, idx := s.Role, uint64(i)
		ts = append(ts, formats.Generated(s.Component, s.Name, dtype, s.Shape, "(random init)", func(f []float32) {
			switch role {
			case arch.RoleNormWeight:
				for j := range f {
					f[j] = 1
				}
			case arch.RoleNormBias, arch.RoleBias:
			default:
				r := rand.New(rand.NewPCG(seed, idx))
				for j := range f {
					f[j] = float32(r.NormFloat64() * Std)
				}
			}
		}))
	}
	return &formats.Model{Format: Format, Config: c, Tensors: ts,
		Notes: []string{fmt.Sprintf("random initialisation (normal std %.2f, seed %d)", Std, seed)}}
}
