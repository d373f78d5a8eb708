package formats

import (
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/btconvert/btconvert/internal/digest"
)

// fingerprint collects a digest of each tensor's bytes as they are read, so that a command that
// reads a whole model learns its identity without a second pass over the weights (xxhash runs at
// memory speed; the weights are not secret, and an identity check protects against mistakes,
// not forgers).
type fingerprint struct {
	mu   sync.Mutex
	want map[string]string // key -> "dtype shape"
	sums map[string]uint64
	bad  bool // a tensor read twice gave different bytes
}

// TrackFingerprint has every tensor of m hash its bytes as they are read (see Fingerprint).
// Models derived from m afterwards share the tracking.
func (m *Model) TrackFingerprint() {
	fp := &fingerprint{want: map[string]string{}, sums: map[string]uint64{}}
	for i, t := range m.Tensors {
		key, load := t.Key(), t.load
		fp.want[key] = fmt.Sprintf("%s %v", t.DType, t.Shape)
		c := *t
		c.load = func() ([]byte, error) {
			b, err := load()
			if err == nil {
				fp.add(key, xxhash.Sum64(b))
			}
			return b, err
		}
		m.Tensors[i] = &c
	}
	m.byKey = nil
	m.fp = fp
}

func (f *fingerprint) add(key string, sum uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.sums[key]; ok && old != sum {
		f.bad = true
	}
	f.sums[key] = sum
}

// Fingerprint identifies the model by its weights: the SHA-256 of one line per tensor in key
// order (key, dtype, shape and the xxhash64 of its bytes), the same whatever file, layout or
// bundle holds them. It is "" unless TrackFingerprint was called and every tensor has been read
// since, always with the same bytes.
func (m *Model) Fingerprint() string {
	f := m.fp
	if f == nil {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad || len(f.sums) != len(f.want) {
		return ""
	}
	keys := make([]string, 0, len(f.want))
	for k := range f.want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := digest.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s %s %016x\n", k, f.want[k], f.sums[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
