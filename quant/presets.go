package quant

import (
	"slices"
	"strconv"
	"strings"

	"github.com/btconvert/btconvert/errs"
)

// Preset is a quantization named the way llama.cpp and mlx-lm users know it, in terms of a
// btconvert scheme; Refuse, when set, says why btconvert has no such quantization.
type Preset struct {
	Name      string
	Type      Type
	GroupSize int
	Symmetric bool
	Refuse    string
}

// Presets are the names Settings.Type also takes.
// (llama.cpp's q8_0, q4_0 and q4_1 are schemes of their own: scheme.All.)
var Presets []Preset

func presetOf(t Type) (Preset, bool) {
	for _, p := range Presets {
		if strings.EqualFold(p.Name, string(t)) {
			return p, true
		}
	}
	return Preset{}, false
}

// apply sets s to the preset, refusing a group size that disagrees with it.
func (p Preset) apply(s Settings) (Settings, error) {
	if p.Refuse != "" {
		return s, errs.Option("Type", p.Name, "%s", p.Refuse)
	}
	if s.GroupSize != 0 && s.GroupSize != p.GroupSize {
		return s, errs.Option("GroupSize", s.GroupSize, "%s means groups of %d", p.Name, p.GroupSize)
	}
	if s.Symmetric && !p.Symmetric {
		return s, errs.Option("Symmetric", true, "%s is asymmetric (a scale and a minimum per group)", p.Name)
	}
	s.Type, s.GroupSize, s.Symmetric = p.Type, p.GroupSize, p.Symmetric
	return s, nil
}

// TypeForBits is the scheme with codes of this many bits (mlx-lm's --q-bits): btconvert's own
// schemes, which are mlx-lm's kind (llama.cpp's blocks go by their own names).
func TypeForBits(bits int) (Type, error) {
	for _, t := range Types() {
		if sc := t.Scheme(); sc != nil && sc.GGML == nil && sc.Bits == bits {
			return t, nil
		}
	}
	var b []string
	for _, t := range Types() {
		if sc := t.Scheme(); sc != nil && sc.GGML == nil && !slices.Contains(b, strconv.Itoa(sc.Bits)) {
			b = append(b, strconv.Itoa(sc.Bits))
		}
	}
	return "", errs.Option("Bits", bits, "want %s", strings.Join(b, " or "))
}
