package fsio

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestReadFileRegularOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		fifo:        fifo + ": is not a regular file (only regular files are read)",
		"/dev/zero": "/dev/zero: is not a regular file (only regular files are read)",
		dir:         dir + ": is a folder (only regular files are read)",
	} {
		if _, err := ReadFile(p, 1<<20); err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 100), 0o644)
	if _, err := ReadFile(big, 10); err == nil || err.Error() != big+": is 100 bytes, more than the 10 this file may have" {
		t.Errorf("got %v", err)
	}
}

func TestOutputCommitRules(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	write := func(force bool, content string) error {
		o, err := NewDir(dest, force)
		if err != nil {
			return err
		}
		os.WriteFile(filepath.Join(o.Tmp, "f"), []byte(content), 0o644)
		return o.Commit()
	}
	if err := write(false, "1"); err != nil {
		t.Fatal(err)
	}
	if err := write(false, "2"); err == nil || err.Error() != dest+": already exists (use Force to replace it)" {
		t.Fatalf("got %v", err)
	}
	// The destination appearing between the check and the commit is not overwritten.
	o, err := NewDir(filepath.Join(parent, "race"), false)
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(parent, "race"), 0o755)
	if err := o.Commit(); err == nil || !strings.Contains(err.Error(), "appeared while this run was writing it") {
		t.Fatalf("got %v", err)
	}
	// Force swaps the new folder in and removes the old one.
	if err := write(true, "3"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "f")); string(b) != "3" {
		t.Fatalf("content %q", b)
	}
	// Force replaces a file with a file, not a file with a folder.
	file := filepath.Join(parent, "m.btz")
	if _, err := WriteOutput(file, []byte("a"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteOutput(file, []byte("b"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "b" {
		t.Fatalf("content %q", b)
	}
	if _, err := NewDir(file, true); err == nil || !strings.Contains(err.Error(), "exists and is not a folder") {
		t.Fatalf("got %v", err)
	}
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if strings.Contains(e.Name(), "btconvert-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// A failed output removes the parent folders it created, and temp names fit any legal name.
func TestAbortCleansUp(t *testing.T) {
	root := t.TempDir()
	dest := filepath.Join(root, "a", "b", "c", strings.Repeat("x", 250))
	o, err := NewDir(dest, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(filepath.Base(o.Tmp)) > 64 {
		t.Fatalf("temp name %q is long", filepath.Base(o.Tmp))
	}
	o.Abort()
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

func TestCheckNotInput(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "model")
	os.Mkdir(in, 0o755)
	link := filepath.Join(root, "link")
	os.Symlink(in, link)
	for _, dest := range []string{in, root, filepath.Join(in, "sub"), link} {
		if err := CheckNotInput(dest, in); err == nil {
			t.Errorf("%s accepted as an output for input %s", dest, in)
		}
	}
	if err := CheckNotInput(filepath.Join(root, "other"), in); err != nil {
		t.Errorf("a sibling refused: %v", err)
	}
}

// Temp outputs of a process that is gone are swept; a live process's are not.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	cmd.Run()
	dead := cmd.Process.Pid
	stale := filepath.Join(dir, ".btconvert-"+strconv.Itoa(dead)+"-0123abcd.tmp")
	mine := filepath.Join(dir, ".btconvert-"+strconv.Itoa(os.Getpid())+"-0123abcd.tmp")
	other := filepath.Join(dir, ".btconvert-1-0123abcd.tmp") // init: alive
	for _, p := range []string{stale, mine, other} {
		os.Mkdir(p, 0o755)
	}
	Sweep(dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale temp output kept")
	}
	for _, p := range []string{mine, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s swept: %v", p, err)
		}
	}
}
