// Package digest is SHA-256 as btconvert hashes every file it reads and writes, fed in slices
// that each start with the AVX upper register state clean.
//
// With GOEXPERIMENT=simd, Go 1.26 code (the runtime's own included) can leave the upper halves
// of the AVX registers dirty; the SHA-NI instructions of crypto/sha256 are legacy-SSE encoded,
// and on such a state they run 10-50x slower (a 200 MiB hash took 0.15 s or 8 s depending on
// what ran before it). Clearing the state before each slice keeps hashing at its full rate.
package digest

import (
	"crypto/sha256"
	"hash"
)

// slice is how much is hashed after one clearing: small enough that a state dirtied in the
// middle (a preemption, another goroutine's vector code on this thread) costs little.
const slice = 256 << 10

// New is a SHA-256 hash.
func New() hash.Hash { return &digest{sha256.New()} }

// Sum256 is the SHA-256 of b.
func Sum256(b []byte) [sha256.Size]byte {
	h := New()
	h.Write(b)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

type digest struct{ hash.Hash }

func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), slice)
		clearUpper()
		d.Hash.Write(p[:k])
		p = p[k:]
	}
	return n, nil
}
