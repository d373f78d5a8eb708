package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// btcWithin is btc failing the test if the command has not returned in 20 s (a plugin that is a
// named pipe used to hang every command).
func btcWithin(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); code, stdout, stderr = btc(t, args...) }()
	select {
	case <-done:
		return code, stdout, stderr
	case <-time.After(20 * time.Second):
		t.Fatalf("%v: still running after 20 s", args)
	}
	return
}

// A file named like the CPU plugin that is none (a named pipe, a folder, text, another library):
// backends lists it as unloadable and why, auto passes over it to the pure-Go backend and says so
// on the backend line, and asking for it by path or by name is bad input naming the file.
func TestBrokenPluginInstalls(t *testing.T) {
	libm, _ := os.ReadFile("/lib/x86_64-linux-gnu/libm.so.6")
	for _, c := range []struct {
		name, want string
		make       func(path string) error
	}{
		{"fifo", "a named pipe, not a PJRT plugin", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"folder", "a folder, not a PJRT plugin", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"text", "no ELF header, so not a shared library or PJRT plugin", func(p string) error { return os.WriteFile(p, []byte("not a library\n"), 0o755) }},
		{"libm", "a shared library without GetPjrtApi, so not a PJRT plugin", func(p string) error { return os.WriteFile(p, libm, 0o755) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "libm" && libm == nil {
				t.Skip("no /lib/x86_64-linux-gnu/libm.so.6 to stand in for a foreign library")
			}
			dir := t.TempDir()
			plugin := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
			if err := c.make(plugin); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
			t.Setenv("BTCONVERT_BACKEND", "")
			passed := "the XLA CPU PJRT plugin " + plugin + " cannot be loaded (" + c.want + "), so the pure-Go backend"

			code, out, stderr := btcWithin(t, "backends")
			if code != 0 || !strings.Contains(out, "\nxla:cpu  "+plugin+" (cannot be loaded: "+c.want+")\n") || !strings.HasSuffix(out, "\nauto picks go: "+passed+"\n") {
				t.Errorf("backends: %d %q %q", code, out, stderr)
			}
			code, out, _ = btcWithin(t, "backends", "--json")
			var r struct {
				Auto    string
				Plugins []struct{ Path, Error string }
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Auto != "go" || len(r.Plugins) != 1 || r.Plugins[0].Path != plugin || r.Plugins[0].Error != c.want {
				t.Errorf("backends --json: %d %v %s", code, err, out)
			}

			code, _, stderr = btcWithin(t, "verify", filepath.Join(fx, "bt-tiny"))
			if code != 0 || !strings.Contains(stderr, "[auto: "+passed+"]\n") {
				t.Errorf("auto: %d %q", code, stderr)
			}

			for _, args := range [][]string{{"--backend", "xla:" + plugin}, {"--backend", "xla:cpu"}, {"--backend", "go", "--compare-backend", "xla:cpu"}} {
				code, _, stderr = btcWithin(t, append([]string{"verify", filepath.Join(fx, "bt-tiny"), "-q"}, args...)...)
				if last, ok := lastLineIs(stderr, "btconvert: "+plugin+": "+c.want); code != 2 || !ok {
					t.Errorf("%v: %d %q", args, code, last)
				}
			}
		})
	}
}
