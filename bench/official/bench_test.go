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
		// ast.parse checks the syntax without writing a __pycache__ into the tree.
		if out, err := exec.Command(py, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
}
