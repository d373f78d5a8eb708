package fsio

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
	// Force replaces a file with a file of its kind, not a file with a folder, and not another
	// JSON object (a config.json) with a report.
	report := JSONKind("report", "a")
	file := filepath.Join(parent, "r.json")
	if _, err := WriteOutput(file, []byte(`{"a": 1}`), false, report); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteOutput(file, []byte(`{"a": 2}`), true, report); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != `{"a": 2}` {
		t.Fatalf("content %q", b)
	}
	config := filepath.Join(parent, "config.json")
	os.WriteFile(config, []byte(`{"hidden_size": 128}`), 0o644)
	if _, err := WriteOutput(config, []byte(`{"a": 3}`), true, report); err == nil || !strings.HasSuffix(err.Error(), "exists and is not a report; not replaced (Force replaces only what btconvert wrote)") {
		t.Fatalf("got %v", err)
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

// An output whose folder is missing is refused, naming the folder, and nothing is created (as
// cp refuses: a mistyped path is not made into folders); temp names fit any legal name.
func TestMissingParentRefused(t *testing.T) {
	root := t.TempDir()
	for _, dest := range []string{filepath.Join(root, "a", "b", "c"), filepath.Join(root, "a", "r.json")} {
		want := dest + ": cannot be written: the folder " + filepath.Dir(dest) + " does not exist (create it first)"
		if _, err := NewDir(dest, false); err == nil || err.Error() != want {
			t.Errorf("NewDir: got %v, want %s", err, want)
		}
		if _, err := WriteOutput(dest, []byte("{}"), true, JSONKind("report")); err == nil || err.Error() != want {
			t.Errorf("WriteOutput: got %v, want %s", err, want)
		}
	}
	file := filepath.Join(root, "f")
	os.WriteFile(file, nil, 0o644)
	if err := CheckDest(filepath.Join(file, "out"), false, Folder); err == nil || err.Error() != filepath.Join(file, "out")+": cannot be written: "+file+" is not a folder" {
		t.Errorf("a file as the folder: got %v", err)
	}
	o, err := NewDir(filepath.Join(root, strings.Repeat("x", 250)), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(filepath.Base(o.Tmp)) > 64 {
		t.Fatalf("temp name %q is long", filepath.Base(o.Tmp))
	}
	o.Abort()
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
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

// Temp outputs whose writer is gone are swept; one whose writer still holds its lock is not,
// whatever process ids say (a writer in another PID namespace has an unrelated id).
func TestSweep(t *testing.T) {
	defer func(a time.Duration) { sweepAge = a }(sweepAge)
	sweepAge = 0
	dir := t.TempDir()
	stale := filepath.Join(dir, ".btconvert-999999-0123abcd.tmp")
	// A live writer with our own pid's name and one with the pid of a process that is gone: the
	// locks decide, not the ids.
	live, err := NewDir(filepath.Join(dir, "out"), false)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("true")
	cmd.Run()
	otherNS := filepath.Join(dir, ".btconvert-"+strconv.Itoa(cmd.Process.Pid)+"-89abcdef.tmp")
	os.Mkdir(otherNS, 0o755)
	held, err := lock(otherNS)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	os.Mkdir(stale, 0o755)
	removed := Sweep(dir)
	if len(removed) != 1 || removed[0] != stale {
		t.Fatalf("swept %v, want only %s", removed, stale)
	}
	for _, p := range []string{live.Tmp, otherNS} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s swept: %v", p, err)
		}
	}
	live.Abort()
	// Young entries are left alone: a writer may not have locked it yet.
	sweepAge = time.Hour
	os.Mkdir(stale, 0o755)
	if removed := Sweep(dir); len(removed) != 0 {
		t.Fatalf("swept a young entry: %v", removed)
	}
}

// --force replaces only what btconvert wrote: a folder holding only what its receipt lists, a file
// of the kind the command writes; never the current folder.
func TestForceReplacesOnlyOwnOutput(t *testing.T) {
	root := t.TempDir()
	precious := filepath.Join(root, "precious")
	os.Mkdir(precious, 0o755)
	os.WriteFile(filepath.Join(precious, "thesis.txt"), []byte("thesis"), 0o644)
	if _, err := NewDir(precious, true); err == nil || err.Error() != precious+": was not written by btconvert (it has no .btconvert-output receipt); not replaced (Force replaces only what btconvert wrote)" {
		t.Fatalf("got %v", err)
	}
	ours := filepath.Join(root, "ours")
	o, _ := NewDir(ours, false)
	os.WriteFile(filepath.Join(o.Tmp, "model.safetensors"), []byte("x"), 0o644)
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ours, "notes.txt"), []byte("mine"), 0o644)
	if _, err := NewDir(ours, true); err == nil || err.Error() != ours+": holds notes.txt, which btconvert did not write there; not replaced (move it away or choose another output)" {
		t.Fatalf("got %v", err)
	}
	os.Remove(filepath.Join(ours, "notes.txt"))
	o, err := NewDir(ours, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(precious, "thesis.txt")); err != nil || string(b) != "thesis" {
		t.Fatal("the user's file is gone")
	}
	text := filepath.Join(root, "thesis.json")
	os.WriteFile(text, []byte("my thesis"), 0o644)
	if _, err := WriteOutput(text, []byte("{}"), true, JSONKind("JSON file")); err == nil || err.Error() != text+": exists and is not a JSON file; not replaced (Force replaces only what btconvert wrote)" {
		t.Fatalf("got %v", err)
	}
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(ours)
	for _, d := range []string{".", root} {
		if _, err := NewDir(d, true); err == nil || !strings.HasSuffix(err.Error(), ": is the current folder or holds it; not replaced (choose another output)") {
			t.Fatalf("%s: got %v", d, err)
		}
	}
	// The shell's folder reached through a symlink is the same folder as its real path.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(ours, link)
	os.Chdir(link)
	if _, err := NewDir(ours, true); err == nil || err.Error() != ours+": is the current folder or holds it; not replaced (choose another output)" {
		t.Fatalf("through a symlink: got %v", err)
	}
}

// A path too long to create leaves none of the folders made on the way; a missing $TMPDIR is an
// error, never created.
func TestNoFoldersLeftBehind(t *testing.T) {
	root := t.TempDir()
	long := root
	for i := 0; i < 25; i++ {
		long = filepath.Join(long, strings.Repeat("d", 200))
	}
	if _, err := NewDir(filepath.Join(long, "out"), false); err == nil {
		t.Fatal("a path past PATH_MAX accepted")
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	t.Setenv("TMPDIR", filepath.Join(root, "nonexistent", "tmp"))
	if _, err := NewTempDir("extract"); err == nil || err.Error() != filepath.Join(root, "nonexistent", "tmp")+": the temp folder ($TMPDIR) does not exist or is not a folder" {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// Cleanup runs while the writers still run (a signal handler): a folder they keep adding files to
// is removed all the same, and a file they create afterwards does not bring it back.
func TestCleanupWhileWriting(t *testing.T) {
	for round := 0; round < 50; round++ {
		parent := t.TempDir()
		o, err := NewDir(filepath.Join(parent, "out"), false)
		if err != nil {
			t.Fatal(err)
		}
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if f, err := os.Create(filepath.Join(o.Tmp, strconv.Itoa(i))); err == nil {
					f.Close()
				}
			}
		}()
		time.Sleep(time.Millisecond)
		Cleanup()
		time.Sleep(time.Millisecond)
		close(stop)
		<-done
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Fatalf("round %d: left %v", round, ents)
		}
		o.unlock()
	}
}
