package btconvert_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/verify/bench"
)

// recorder is a UI that keeps every bar: its total, what was added and the items it named.
type recorder struct{ bars []*recBar }

type recBar struct {
	what, unit   string
	total, added int64
	items        []string
	done         bool
}

func (r *recorder) Note(string) {}
func (r *recorder) Progress(what string, total int64, unit string) btconvert.Bar {
	b := &recBar{what: what, total: total, unit: unit}
	r.bars = append(r.bars, b)
	return b
}
func (b *recBar) Add(n int64, item string) {
	b.added += n
	if item != "" && (len(b.items) == 0 || b.items[len(b.items)-1] != item) {
		b.items = append(b.items, item)
	}
}
func (b *recBar) Done() { b.done = true }

// The bench's bar starts before its first warm-up (which compiles) with the total bench.Run
// counts, reaches it, and names each stretch as it comes; loading the model is a phase of its own.
func TestBenchProgress(t *testing.T) {
	ui := &recorder{}
	_, err := btconvert.Bench(btconvert.BenchOptions{Models: []string{"fixtures/bt-tiny"}, Runtime: btconvert.Runtime{Backend: "go"},
		Options: bench.Options{Batches: []int{1, 2}, PromptLens: []int{8}, GenLens: []int{16}, Reps: 2, Warmup: 1}, UI: ui})
	if err != nil {
		t.Fatal(err)
	}
	var whats []string
	for _, b := range ui.bars {
		whats = append(whats, b.what)
		if !b.done {
			t.Errorf("%s: never done", b.what)
		}
	}
	if !slices.Equal(whats, []string{"load", "bench"}) {
		t.Fatalf("bars %v", whats)
	}
	if load := ui.bars[0]; load.unit != "" || !slices.Equal(load.items, []string{"fixtures/bt-tiny"}) {
		t.Errorf("load: unit %q, items %v", load.unit, load.items)
	}
	b := ui.bars[1]
	if want := int64((1 + 2) * (8 + 16) * (2 + 1)); b.total != want || b.added != want {
		t.Errorf("bench: total %d, added %d; want %d", b.total, b.added, want)
	}
	want := []string{"batch 1, warm-up", "batch 1, rep 1/2", "batch 1, rep 2/2", "batch 2, warm-up", "batch 2, rep 1/2", "batch 2, rep 2/2"}
	if !slices.Equal(b.items, want) {
		t.Errorf("items\n%s\nwant\n%s", strings.Join(b.items, "\n"), strings.Join(want, "\n"))
	}
}
