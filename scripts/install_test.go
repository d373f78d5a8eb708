// Package scripts holds the tests of the shell scripts beside it.
package scripts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakePython stands in for python3: "pip download" copies $FAKE_WHEEL into the -d folder (after
// leaving a partial file in $TMPDIR and stalling, under FAKE_SLOW); "-c" (the unzip) copies
// $FAKE_SO to the member's place.
const fakePython = `#!/usr/bin/env bash
echo $$ >"$FAKE_STATE/python.pid"
if [[ $1 == -m ]]; then
  touch "$FAKE_STATE/pip-ran"
  while [[ $# -gt 0 ]]; do if [[ $1 == -d ]]; then d=$2; fi; shift; done
  if [[ -n ${FAKE_SLOW:-} ]]; then
    head -c 100000 /dev/zero >"$TMPDIR/download.partial"
    touch "$FAKE_STATE/waiting"
    exec sleep 30
  fi
  cp "$FAKE_WHEEL" "$d/lammps_jax_pjrt_cpu-0.11.2-py3-none-manylinux_2_27_x86_64.whl"
else
  mkdir -p "$5/$(dirname "$4")"
  cp "$FAKE_SO" "$5/$4"
fi
`

// fakeInstall copies part of the file and then stalls (FAKE_INSTALL=slow) or fails as a full disk
// does (FAKE_INSTALL=full); otherwise it is install itself.
const fakeInstall = `#!/usr/bin/env bash
dst=${@: -1}
src=${@: -2:1}
case ${FAKE_INSTALL:-} in
slow)
  head -c 100000 "$src" >"$dst"
  echo $$ >"$FAKE_STATE/python.pid"
  touch "$FAKE_STATE/waiting"
  exec sleep 30 ;;
full)
  head -c 100000 "$src" >"$dst"
  echo "install: error writing '$dst': No space left on device" >&2
  exit 1 ;;
esac
exec /usr/bin/install "$@"
`

type installer struct {
	t                      *testing.T
	script, bin, state     string
	dest, target, tmpdir   string
	wheel, so              string
	extraEnv               []string
	code                   int
	stdout, stderr         string
	pythonRan, pipStarted  bool
	downloaded, leftInDest []string
}

func hashOf(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newInstaller is the script with its two pinned hashes those of a made-up wheel and plugin
// (nothing else changed), python3 and install faked on PATH, and DEST and TMPDIR fresh folders.
func newInstaller(t *testing.T) *installer {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the script installs an x86-64 Linux plugin")
	}
	for _, tool := range []string{"bash", "sha256sum", "mktemp", "/usr/bin/install"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	root := t.TempDir()
	in := &installer{t: t, bin: filepath.Join(root, "bin"), state: filepath.Join(root, "state"), dest: filepath.Join(root, "dest"),
		tmpdir: filepath.Join(root, "tmp"), wheel: filepath.Join(root, "fake.whl"), so: filepath.Join(root, "fake.so")}
	in.target = filepath.Join(in.dest, "pjrt_c_api_cpu_plugin.so")
	for _, d := range []string{in.bin, in.state, in.tmpdir} {
		os.Mkdir(d, 0o755)
	}
	os.WriteFile(in.wheel, []byte("a wheel"), 0o644)
	os.WriteFile(in.so, bytes.Repeat([]byte("plugin "), 100000), 0o644)
	src, err := os.ReadFile("install-xla-cpu.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for name, path := range map[string]string{"WHEEL_SHA256": in.wheel, "SO_SHA256": in.so} {
		re := regexp.MustCompile(`(?m)^` + name + `=[0-9a-f]{64}$`)
		if len(re.FindAllString(s, -1)) != 1 {
			t.Fatalf("install-xla-cpu.sh pins no %s", name)
		}
		s = re.ReplaceAllString(s, name+"="+hashOf(t, path))
	}
	in.script = filepath.Join(root, "install-xla-cpu.sh")
	os.WriteFile(in.script, []byte(s), 0o755)
	os.WriteFile(filepath.Join(in.bin, "python3"), []byte(fakePython), 0o755)
	os.WriteFile(filepath.Join(in.bin, "install"), []byte(fakeInstall), 0o755)
	return in
}

// run runs the script; with sig, it sends sig (to the script, or to its process group as Ctrl-C
// does) once the faked step it stalls in has begun.
func (in *installer) run(sig syscall.Signal, group bool, env ...string) {
	t := in.t
	t.Helper()
	os.Remove(filepath.Join(in.state, "waiting"))
	os.Remove(filepath.Join(in.state, "pip-ran"))
	cmd := exec.Command("bash", in.script)
	cmd.Env = append(os.Environ(), "PATH="+in.bin+":"+os.Getenv("PATH"), "DEST="+in.dest, "TMPDIR="+in.tmpdir,
		"FAKE_STATE="+in.state, "FAKE_WHEEL="+in.wheel, "FAKE_SO="+in.so)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer timer.Stop()
	if sig != 0 {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(in.state, "waiting")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the faked step never began: %s", errb.String())
			}
		}
		pid := cmd.Process.Pid
		if group {
			pid = -pid
		}
		syscall.Kill(pid, sig)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if in.code = 0; errors.As(err, &ee) {
		in.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	in.stdout, in.stderr = out.String(), errb.String()
	_, err = os.Stat(filepath.Join(in.state, "pip-ran"))
	in.pipStarted = err == nil
	in.leftInDest = names(in.dest)
	in.downloaded = names(in.tmpdir)
}

func names(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// stalledGone fails the test if the faked step the script was interrupted in still runs.
func (in *installer) stalledGone() {
	b, _ := os.ReadFile(filepath.Join(in.state, "python.pid"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		in.t.Fatalf("no pid recorded: %q", b)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
		in.t.Errorf("the interrupted step (pid %d) was left running", pid)
	}
}

// A folder, a named pipe or a dangling link where the plugin goes is refused before anything is
// downloaded (a folder used to be "installed" into, and downloaded into again on every run).
func TestInstallRefusesNonFile(t *testing.T) {
	in := newInstaller(t)
	for name, make := range map[string]func() error{
		"folder":   func() error { return os.Mkdir(in.target, 0o755) },
		"fifo":     func() error { return syscall.Mkfifo(in.target, 0o644) },
		"dangling": func() error { return os.Symlink(in.target+".gone", in.target) },
	} {
		t.Run(name, func(t *testing.T) {
			in.t = t
			os.RemoveAll(in.dest)
			os.Mkdir(in.dest, 0o755)
			if err := make(); err != nil {
				t.Fatal(err)
			}
			in.run(0, false)
			want := "install-xla-cpu: " + in.target + " is not a regular file; remove it, or set DEST to another folder\n"
			if in.code != 1 || in.stderr != want || in.stdout != "" || in.pipStarted || len(in.downloaded) != 0 ||
				strings.Join(in.leftInDest, " ") != "pjrt_c_api_cpu_plugin.so" {
				t.Errorf("exit %d, stderr %q, stdout %q, pip ran %v, left %v %v\nwant exit 1, stderr %q", in.code, in.stderr, in.stdout,
					in.pipStarted, in.downloaded, in.leftInDest, want)
			}
			if fi, err := os.Lstat(in.target); name == "folder" && (err != nil || !fi.IsDir() || len(names(in.target)) != 0) {
				t.Errorf("the folder was changed: %v %v", err, names(in.target))
			}
		})
	}
}

// A run installs the plugin and nothing else; the next is a no-op.
func TestInstallAndRerun(t *testing.T) {
	in := newInstaller(t)
	in.run(0, false)
	if in.code != 0 || in.stdout != "install-xla-cpu: downloading lammps-jax-pjrt-cpu 0.11.2 (63 MB) from PyPI\ninstalled "+in.target+" (PJRT CPU plugin, lammps-jax-pjrt-cpu 0.11.2)\n" ||
		strings.Join(in.leftInDest, " ") != "pjrt_c_api_cpu_plugin.so" || len(in.downloaded) != 0 {
		t.Fatalf("exit %d %q %q, left %v %v", in.code, in.stdout, in.stderr, in.leftInDest, in.downloaded)
	}
	if fi, err := os.Stat(in.target); err != nil || fi.Mode().Perm() != 0o755 || hashOf(t, in.target) != hashOf(t, in.so) {
		t.Fatalf("installed: %v %v", fi, err)
	}
	in.run(0, false)
	if in.code != 0 || in.stdout != "already installed: "+in.target+"\n" || in.pipStarted {
		t.Fatalf("rerun: exit %d %q %q, pip ran %v", in.code, in.stdout, in.stderr, in.pipStarted)
	}
}

// Interrupted while downloading or copying, or failing on a full disk, the script leaves no
// temporary file behind (not in $TMPDIR, not beside the target), stops the step it was in, and
// exits 128 + the signal.
func TestInstallInterrupted(t *testing.T) {
	// Under nohup the test inherits SIGHUP ignored, and bash cannot trap a signal ignored when it
	// starts: handled here, it reaches the script at its default disposition.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for _, c := range []struct {
		name  string
		sig   syscall.Signal
		group bool
		env   string
		code  int
	}{
		{"download SIGTERM", syscall.SIGTERM, false, "FAKE_SLOW=1", 143},
		{"download Ctrl-C", syscall.SIGINT, true, "FAKE_SLOW=1", 130},
		{"download SIGHUP", syscall.SIGHUP, false, "FAKE_SLOW=1", 129},
		{"copy SIGTERM", syscall.SIGTERM, false, "FAKE_INSTALL=slow", 143},
		{"copy Ctrl-C", syscall.SIGINT, true, "FAKE_INSTALL=slow", 130},
		{"disk full", 0, false, "FAKE_INSTALL=full", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := newInstaller(t)
			start := time.Now()
			in.run(c.sig, c.group, c.env)
			if in.code != c.code || len(in.downloaded) != 0 || len(in.leftInDest) != 0 {
				t.Errorf("exit %d (want %d), left in TMPDIR %v, in DEST %v; stderr %q", in.code, c.code, in.downloaded, in.leftInDest, in.stderr)
			}
			if c.sig != 0 {
				in.stalledGone()
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("the signal took %v to act", d)
				}
			}
		})
	}
}
