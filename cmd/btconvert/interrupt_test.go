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

// Interrupted after calibration, while the model is written, quantize leaves neither the model
// nor the statistics file (--calib-out): they are put in place together, at the end.
func TestInterruptedQuantizeLeavesNoStatistics(t *testing.T) {
	bin := testBinary(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "m")
	// A byte-level model large enough that writing its quantized copy takes a while.
	if out, err := exec.Command(bin, "init", "--hidden", "1024", "--heads", "8", "--ffn", "4096", "--block-layers", "2", "--token-layers", "2",
		"--vocab", "256", "-o", base, "-q").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text := filepath.Join(dir, "text.txt")
	os.WriteFile(text, bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 40), 0o644)
	q, stats := filepath.Join(dir, "q"), filepath.Join(dir, "c.calib")
	cmd := exec.Command(bin, "quantize", base, "-o", q, "--type", "int4", "--calib", text, "--calib-window", "64", "--calib-out", stats, "--backend", "go", "-q")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Two temp outputs: the statistics staged, and the model's folder being written.
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(dir, ".btconvert-*.tmp")); len(m) >= 2 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.ExitStatus() != 130 {
		t.Fatalf("exit %v: the run was not interrupted while writing", cmd.ProcessState)
	}
	for _, p := range []string{q, stats} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("an interrupted run left %s", p)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".btconvert-*")); len(left) != 0 {
		t.Errorf("temp outputs left: %v", left)
	}
}
