package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/graph/backend"
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
