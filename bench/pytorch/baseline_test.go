// Package pytorch holds the PyTorch baseline script (baseline.py); its test checks the script
// against the fixtures' reference outputs where PyTorch is installed.
package pytorch

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/internal/testfix"
)

func python(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no python3")
	return ""
}

func TestScriptParses(t *testing.T) {
	if out, err := exec.Command(python(t), "-m", "py_compile", "baseline.py").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// The plain PyTorch models agree with the fixtures' references (the independent float64
// implementation): logits and greedy tokens.
func TestScriptMatchesReference(t *testing.T) {
	py := python(t)
	if err := exec.Command(py, "-c", "import torch, yaml").Run(); err != nil {
		t.Skip("PyTorch (python3-torch) or PyYAML is not installed")
	}
	for _, name := range testfix.Names {
		out, err := exec.Command(py, "baseline.py", "check", testfix.Path(name), "--reference", filepath.Join(testfix.Path(name), "reference.safetensors")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"greedy_match": true`) {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}
