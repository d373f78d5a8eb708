package official

import (
	"os/exec"
	"testing"
)

func TestScriptParses(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	for _, script := range []string{"bench.py", "../../fixtures/tools/make_llama_fixtures.py"} {
		if out, err := exec.Command(py, "-m", "py_compile", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
}
