package t5

import "testing"

// T5's relative position buckets: exact below half, logarithmic to the maximum distance, the last
// one past it.
func TestBuckets(t *testing.T) {
	for _, c := range []struct{ n, buckets, maxDistance, want int }{
		{0, 32, 128, 0}, {15, 32, 128, 15}, {16, 32, 128, 16}, {23, 32, 128, 18}, {32, 32, 128, 21}, {64, 32, 128, 26},
		{127, 32, 128, 31}, {128, 32, 128, 31}, {5000, 32, 128, 31}, {4, 6, 5, 4}, {5, 6, 5, 5}, {7, 6, 5, 5},
	} {
		if got := bucket(c.n, c.buckets, c.maxDistance); got != c.want {
			t.Errorf("bucket of %d (%d buckets, max distance %d): %d, want %d", c.n, c.buckets, c.maxDistance, got, c.want)
		}
	}
}
