package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/internal/testfix"
)

// rtnDigest is the SHA-256 of every round-to-nearest code and scale of a fixture's quantizable
// weights under o (int8 when o.GroupSize is 0).
func rtnDigest(t *testing.T, name string, o Options) string {
	m := testfix.Open(t, testfix.Path(name))
	h := sha256.New()
	for _, s := range arch.Tensors(m.Config) {
		if !Quantizable(s) {
			continue
		}
		w, err := m.Tensor(s.Component, s.Name).Float32()
		if err != nil {
			t.Fatal(err)
		}
		rows, cols := s.Shape[0], s.Shape[1]
		if o.GroupSize == 0 {
			q := QuantizeInt8(w, rows, cols, o)
			binary.Write(h, binary.LittleEndian, q.Codes)
			binary.Write(h, binary.LittleEndian, q.Scales)
			continue
		}
		q := QuantizeInt4(w, rows, cols, o)
		binary.Write(h, binary.LittleEndian, q.Packed)
		binary.Write(h, binary.LittleEndian, q.Scales)
		binary.Write(h, binary.LittleEndian, q.Mins)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

// Round-to-nearest output is pinned bit for bit: speeding up the fitter must not move it.
func TestRoundToNearestPinned(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "dcb4b9ecffdcf019"},
		{Options{F16Scales: true}, "33c1584152e7c6e4"},
		{Options{GroupSize: 64}, "23206f713262e9ac"},
		{Options{GroupSize: 64, Symmetric: true}, "6939ecf2e7eb4297"},
		{Options{GroupSize: 32, F16Scales: true}, "0312ee783bb3dabd"},
	} {
		if got := rtnDigest(t, "pythia-tiny", c.o); got != c.want {
			t.Errorf("%+v: digest %s, want %s", c.o, got, c.want)
		}
	}
}
