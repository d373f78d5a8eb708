package digest

import (
	"crypto/sha256"
	"testing"
)

// The sliced hash is SHA-256, at every length around the slice boundaries.
func TestSameAsSHA256(t *testing.T) {
	b := make([]byte, 3*slice+7)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	for _, n := range []int{0, 1, 63, 64, slice - 1, slice, slice + 1, 2 * slice, len(b)} {
		if Sum256(b[:n]) != sha256.Sum256(b[:n]) {
			t.Fatalf("%d bytes: the hash differs from SHA-256", n)
		}
		// Fed in uneven writes.
		h := New()
		for i := 0; i < n; i += 1000 {
			h.Write(b[i:min(n, i+1000)])
		}
		if want := sha256.Sum256(b[:n]); string(h.Sum(nil)) != string(want[:]) {
			t.Fatalf("%d bytes in writes of 1000: the hash differs from SHA-256", n)
		}
	}
}

// BenchmarkHash is filling a buffer with a loop long enough to be preempted (which, with
// GOEXPERIMENT=simd, leaves the AVX state dirty) and hashing it, as the writers hash what they
// have just converted; MB/s of the buffer, against crypto/sha256 alone.
func BenchmarkHash(b *testing.B) {
	buf := make([]byte, 64<<20)
	for _, c := range []struct {
		name string
		sum  func([]byte) [32]byte
	}{{"digest", Sum256}, {"crypto_sha256", sha256.Sum256}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				for i := range buf { // in the time: StopTimer's bookkeeping cleans the state
					buf[i] = byte(i)
				}
				c.sum(buf)
			}
		})
	}
}
