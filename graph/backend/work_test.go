package backend

import (
	"strings"
	"testing"
)

// XLA's CPU plugin only where its compile pays: a tiny model's check or a short generation stays
// on go; scoring a text with a 130 MB model, or a Go caller that says nothing of its work, goes to
// XLA; an explicit spec is never second-guessed.
func TestChooseForWeighsTheWork(t *testing.T) {
	for _, c := range []struct {
		name string
		w    Work
		pays bool
	}{
		{"nothing said", Work{}, true},
		{"tiny model, parity check", Work{WeightBytes: 3.4e6, Tokens: 512, Graphs: 2, Forwards: 1}, false},
		{"tiny model, scoring 8 KiB", Work{WeightBytes: 3.6e6, Tokens: 4096, Forwards: 1}, false},
		{"tiny model, scoring 35 KiB", Work{WeightBytes: 3.6e6, Tokens: 17500, Forwards: 1}, true},
		{"130 MB model, 64 tokens", Work{WeightBytes: 130e6, Tokens: 66, Graphs: 2}, false},
		{"130 MB model, scoring a 35k-token text", Work{WeightBytes: 130e6, Tokens: 35000, Forwards: 1}, true},
		{"1.9 GB model, 256 tokens", Work{WeightBytes: 1.9e9, Tokens: 256, Graphs: 2}, true},
	} {
		if got := c.w.xlaPays(); got != c.pays {
			t.Errorf("%s: XLA pays %t, want %t", c.name, got, c.pays)
		}
	}
	small := Work{WeightBytes: 3.4e6, Tokens: 66, Graphs: 2}
	if spec, why := ChooseFor("xla:cpu", small); spec != "xla:cpu" || why != "asked for" {
		t.Errorf("an explicit spec changed: %s [%s]", spec, why)
	}
	if auto, _ := Choose(Auto); auto == "xla:cpu" {
		spec, why := ChooseFor(Auto, small)
		want := "auto: too short a run for XLA's compile (about 3 s); --backend xla:cpu forces it"
		if spec != "go" || why != want {
			t.Errorf("a small run: %s [%s]\nwant go [%s]", spec, why, want)
		}
		if spec, _ := ChooseFor(Auto, Work{WeightBytes: 130e6, Tokens: 35000, Forwards: 1}); spec != "xla:cpu" {
			t.Errorf("a large run: %s", spec)
		}
	} else if spec, why := ChooseFor(Auto, small); spec != auto || strings.Contains(why, "too short") {
		t.Errorf("without the CPU plugin: %s [%s]", spec, why)
	}
}

// XLA's quick compile (optimization level 0) where the run on XLA would take less than its
// compile: a short generation of a small or a 130 MB model, a tiny model's short text; not a long
// scoring (level 0 runs a scoring forward 1.5x - 2x slower), not a bench, not a Go caller that
// says nothing of its work.
func TestQuickCompileWeighsTheWork(t *testing.T) {
	for _, c := range []struct {
		name  string
		w     Work
		quick bool
	}{
		{"nothing said", Work{}, false},
		{"tiny model, 64 tokens", Work{WeightBytes: 3.4e6, Tokens: 66, Graphs: 2}, true},
		{"130 MB model, 128 tokens", Work{WeightBytes: 130e6, Tokens: 130, Graphs: 2}, true},
		{"130 MB model, scoring 8 KiB", Work{WeightBytes: 130e6, Tokens: 8192, Forwards: 1}, false},
		{"tiny model, scoring 8 KiB", Work{WeightBytes: 3.6e6, Tokens: 4096, Forwards: 1}, true},
		{"tiny model, scoring 35 KiB", Work{WeightBytes: 3.6e6, Tokens: 17500, Forwards: 1}, false},
		{"tiny models, a bench", Work{WeightBytes: 3.4e6, Tokens: 512, Graphs: 2, Throughput: true}, false},
		{"1.9 GB model, 256 tokens", Work{WeightBytes: 1.9e9, Tokens: 256, Graphs: 2}, false},
	} {
		if got := c.w.quickCompile(); got != c.quick {
			t.Errorf("%s: quick compile %t, want %t", c.name, got, c.quick)
		}
	}
}
