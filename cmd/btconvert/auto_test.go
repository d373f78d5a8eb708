package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/testfix"
)

// With XLA's CPU plugin installed, auto keeps a short run of a tiny model on go (XLA's compile
// would take longer than the whole run) and says why on its backend line; asked for, XLA runs.
func TestAutoWeighsTheWork(t *testing.T) {
	if auto, _ := backend.Choose(backend.Auto); auto != "xla:cpu" {
		t.Skip("XLA's CPU plugin is not installed")
	}
	t.Setenv("BTCONVERT_BACKEND", "")
	code, _, stderr := btc(t, "generate", filepath.Join(fx, "bt-tiny"), "-p", "Hello", "-n", "8")
	if code != 0 || !strings.HasPrefix(stderr, "backend: go (") || !strings.Contains(stderr, " [auto: too short a run for XLA's compile (about 3 s); --backend xla:cpu forces it]\n") {
		t.Fatalf("%d %q", code, stderr)
	}
	code, _, stderr = btc(t, "generate", filepath.Join(fx, "bt-tiny"), "-p", "Hello", "-n", "8", "--backend", "xla:cpu")
	if code != 0 || !strings.HasPrefix(stderr, "backend: xla:cpu") {
		t.Fatalf("asked for: %d %q", code, stderr)
	}
	// Scoring the 35 KiB text: one forward graph (under a second's compile) saves about a second
	// of go's two, and runs at XLA's full optimization (level 0 would score 1.5x - 2x slower).
	code, _, stderr = btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--eval-text", testfix.GPL3, "--json")
	if code != 0 || !strings.HasPrefix(stderr, "backend: xla:cpu [auto: XLA's CPU plugin is installed]\n") {
		t.Fatalf("scoring: %d %q", code, stderr)
	}
}

// GoMLX prints the go backend's parallelism option to the process's stdout: --json output stays
// JSON (a real process: the in-process runs write to their own buffer).
func TestGoParallelismKeepsStdoutClean(t *testing.T) {
	out, err := exec.Command(testBinary(t), "generate", filepath.Join(fx, "bt-tiny"), "-p", "Hello", "-n", "4", "--backend", "go:parallelism=2", "--json", "-q").Output()
	var r struct{ Backend string }
	if err != nil || json.Unmarshal(out, &r) != nil || r.Backend != "go:parallelism=2" {
		t.Fatalf("%v: %q", err, out)
	}
}

// Asked to run a short generation on XLA's CPU plugin, the command line has XLA compile at
// optimization level 0 (about half the compile) and says so; XLA_FLAGS that choose a level win,
// and a bench, however short, keeps XLA's full optimization (it measures the pace).
func TestQuickCompileForShortRuns(t *testing.T) {
	if _, ok := backend.FindPlugins(backend.PluginDirs())["cpu"]; !ok {
		t.Skip("XLA's CPU plugin is not installed")
	}
	bin := testBinary(t)
	generate := []string{"generate", filepath.Join(fx, "bt-tiny"), "-p", "Hello", "-n", "4", "--backend", "xla:cpu", "--json"}
	for _, c := range []struct {
		flags string
		args  []string
		want  string
	}{
		{"", generate, "backend: xla:cpu (optimization level 0) [asked for; a short run: XLA compiles at optimization level 0, in about half the time (XLA_FLAGS=--xla_backend_optimization_level=3, its default, for its full optimization)]"},
		{"--xla_backend_optimization_level=3", generate, "backend: xla:cpu [asked for]"},
		{"", []string{"verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1", "-p", "4", "-n", "8", "--reps", "1", "--backend", "xla:cpu"}, "backend: xla:cpu [asked for]"},
	} {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(cmd.Environ(), "XLA_FLAGS="+c.flags)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if first, _, _ := strings.Cut(stderr.String(), "\n"); err != nil || first != c.want {
			t.Errorf("XLA_FLAGS=%q %s: %v\n got %q\nwant %q", c.flags, c.args[0], err, first, c.want)
		}
		var r struct{ Rows []struct{ Text string } }
		if c.args[0] == "generate" && (json.Unmarshal(out, &r) != nil || len(r.Rows) != 1 || r.Rows[0].Text == "") {
			t.Errorf("XLA_FLAGS=%q: no generated row: %s", c.flags, out)
		}
	}
}
