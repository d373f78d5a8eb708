// Package gpu holds the prepared GPU run (run.sh); its test runs the script's CPU path on tiny
// models so that it cannot rot between runs on a GPU.
package gpu

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/btconvert/btconvert/internal/testfix"
)

// run.sh --tiny --backend xla:cpu goes through every step (parity of the fixtures, models, both
// benches, the summary) and writes one JSON and one markdown table.
func TestRunScriptOnCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the whole script")
	}
	testfix.XLA(t)
	bin := filepath.Join(t.TempDir(), "btconvert")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/btconvert")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "run.sh", "--tiny", "--backend", "xla:cpu", "--bin", bin, "--out", out, "--python", "python3")
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run.sh: %v\n%s", err, log)
	}
	var r struct {
		Parity map[string]struct{ Pass bool }
		Bench  []struct {
			Tool, Model string
			DecodeTokS  float64 `json:"decode_tok_s"`
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "gpu.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, f := range testfix.Names {
		if !r.Parity[f].Pass {
			t.Errorf("parity of %s: %s", f, b)
		}
	}
	n := 0
	for _, row := range r.Bench {
		if row.Tool == "btconvert" && row.DecodeTokS > 0 {
			n++
		}
	}
	if n != 6 { // two models x (two batches + the largest batch)
		t.Fatalf("%d btconvert rows: %s", n, b)
	}
	if _, err := os.Stat(filepath.Join(out, "gpu.md")); err != nil {
		t.Fatal(err)
	}
}
