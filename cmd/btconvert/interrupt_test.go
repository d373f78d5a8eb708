package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

var built struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// TestMain removes the binary the signal tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// testBinary builds btconvert once for the tests that signal a real process.
func testBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	built.Do(func() {
		dir, err := os.MkdirTemp("", "btconvert-test-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "btconvert")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.path
}

// Ctrl-C during a bench keeps the rows it finished: in --json-file, as the summary on stdout and
// as the plot, and the last line says what was kept.
func TestInterruptedBenchKeepsItsRows(t *testing.T) {
	bin := testBinary(t)
	dir := t.TempDir()
	js, plot := filepath.Join(dir, "b.json"), filepath.Join(dir, "b.png")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1,2,4,8,16,32,64", "-p", "8", "-n", "16",
		"--reps", "3", "--backend", "go", "--json-file", js, "--plot", plot)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := os.Stat(js); err == nil && st.Size() > 0 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.ExitStatus() != 130 {
		t.Fatalf("exit %v: %s", cmd.ProcessState, stderr.String())
	}
	var saved struct{ Bench []json.RawMessage }
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &saved); err != nil || len(saved.Bench) == 0 {
		t.Fatalf("--json-file: %v %s", err, b)
	}
	last := regexp.MustCompile(`(?m)^btconvert: interrupted \(interrupt\); kept (the finished row|the \d+ finished rows) in ` + regexp.QuoteMeta(js) +
		` and ` + regexp.QuoteMeta(plot) + `; partial output removed\n$`)
	if !last.MatchString(stderr.String()) {
		t.Errorf("last line: %q", stderr.String())
	}
	if !bytes.Contains(stdout.Bytes(), []byte("DECODE STEP MS")) {
		t.Errorf("no summary of the finished rows: %s", stdout.String())
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal("no plot of the finished rows")
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatal(err)
	}
}
