package backend

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btconvert/btconvert/errs"
)

const pluginName = "pjrt_c_api_cpu_plugin.so"

// within runs f, failing the test if it has not returned in 10 s: loading a named pipe used to
// block for ever, and a hung test should say so rather than wait for go test's timeout.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running after 10 s", what)
	}
}

// foreignLibrary is a shared library of this machine that is no PJRT plugin (the C maths library),
// skipping the test where there is none.
func foreignLibrary(t *testing.T) []byte {
	t.Helper()
	for _, p := range []string{"/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib/libm.so.6"} {
		if b, err := os.ReadFile(p); err == nil {
			return b
		}
	}
	t.Skip("no libm.so.6 to stand in for a foreign shared library")
	return nil
}

// overlong is lib with its last loadable segment claiming bytes past the end of the file, as in a
// plugin cut short whose headers survived.
func overlong(t *testing.T, lib []byte) []byte {
	t.Helper()
	f, err := elf.NewFile(strings.NewReader(string(lib)))
	if err != nil || f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		t.Skipf("libm is not a little-endian 64-bit ELF file (%v)", err)
	}
	last := -1
	for i, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			last = i
		}
	}
	out := append([]byte(nil), lib...)
	phoff := binary.LittleEndian.Uint64(out[32:])
	phent := uint64(binary.LittleEndian.Uint16(out[54:]))
	ph := out[phoff+uint64(last)*phent:]
	p := f.Progs[last]
	binary.LittleEndian.PutUint64(ph[32:], uint64(len(lib))-p.Off+4096) // p_filesz
	binary.LittleEndian.PutUint64(ph[40:], uint64(len(lib))-p.Off+4096) // p_memsz
	return out
}

// Every kind of file that can sit where a plugin is expected is told apart before dlopen sees it:
// named pipes (dlopen blocks on them), folders, text, foreign and truncated libraries. An explicit
// spec gets the same error, naming the file, as bad input; nothing is passed over.
func TestBrokenPluginFiles(t *testing.T) {
	lib := foreignLibrary(t)
	root := t.TempDir()
	type attack struct {
		name, want string
		make       func(path string) error
	}
	write := func(b []byte) func(string) error {
		return func(p string) error { return os.WriteFile(p, b, 0o755) }
	}
	attacks := []attack{
		{"fifo", "a named pipe, not a PJRT plugin", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"folder", "a folder, not a PJRT plugin", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"text", "no ELF header, so not a shared library or PJRT plugin", write([]byte("not a shared library\n"))},
		{"empty", "empty, not a PJRT plugin", write(nil)},
		{"libm", "a shared library without GetPjrtApi, so not a PJRT plugin", write(lib)},
		{"truncated", "truncated: the file ends inside its ELF headers", write(lib[:len(lib)/2])},
		{"overlong", "truncated: " + strconv.Itoa(len(lib)) + " bytes, but its code and data run to byte " + strconv.Itoa(len(lib)+4096), write(overlong(t, lib))},
		{"symlink-to-fifo", "a named pipe, not a PJRT plugin", func(p string) error {
			if err := syscall.Mkfifo(p+".fifo", 0o644); err != nil {
				return err
			}
			return os.Symlink(p+".fifo", p)
		}},
		{"dangling", "no such file", func(p string) error { return os.Symlink(p+".gone", p) }},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			dir := filepath.Join(root, a.name)
			os.Mkdir(dir, 0o755)
			path := filepath.Join(dir, pluginName)
			if err := a.make(path); err != nil {
				t.Fatal(err)
			}
			want := path + ": " + a.want
			within(t, "CheckPlugin", func() {
				if err := CheckPlugin(path); err == nil || err.Error() != want || !errs.IsInput(err) {
					t.Errorf("CheckPlugin: %v\nwant %s", err, want)
				}
			})
			t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
			for _, spec := range []string{"xla:" + path, "xla:cpu", "xla:cpu,tf32=false"} {
				within(t, spec, func() {
					if _, err := New(spec); err == nil || err.Error() != want || !errs.IsInput(err) {
						t.Errorf("%s: %v\nwant %s", spec, err, want)
					}
				})
			}
			within(t, "Installed", func() {
				if got := Installed(); len(got) != 1 || got[0].Path != path || got[0].Error != a.want || got[0].API != "" {
					t.Errorf("Installed: %+v\nwant the error %s", got, a.want)
				}
			})
			within(t, "Choose", func() {
				wantWhy := "auto: the XLA CPU PJRT plugin " + path + " cannot be loaded (" + a.want + "), so the pure-Go backend"
				if spec, why := Choose(Auto); spec != "go" || why != wantWhy {
					t.Errorf("Choose: %s (%s)\nwant go (%s)", spec, why, wantWhy)
				}
			})
		})
	}
}

// The real plugin passes the check, also through a symlink, and auto picks it over a broken CUDA
// plugin, which it passes over only where a GPU would have made it the choice.
func TestInstalledPluginPasses(t *testing.T) {
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", "")
	os.Unsetenv("PJRT_PLUGIN_LIBRARY_PATH")
	real, ok := FindPlugins(PluginDirs())["cpu"]
	if !ok {
		t.Skip("the PJRT CPU plugin is not installed (scripts/install-xla-cpu.sh)")
	}
	if err := CheckPlugin(real); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, pluginName)
	os.Symlink(real, link)
	if err := CheckPlugin(link); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "pjrt_c_api_cuda_plugin.so"), 0o755)
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	spec, why := Choose(Auto)
	want := "auto: XLA's CPU plugin is installed (a CUDA plugin is installed but no GPU is present)"
	if gpuPresent() {
		want = "auto: XLA's CPU plugin is installed, as the CUDA PJRT plugin " + filepath.Join(dir, "pjrt_c_api_cuda_plugin.so") + " cannot be loaded (a folder, not a PJRT plugin)"
	}
	if spec != "xla:cpu" || why != want {
		t.Fatalf("%s (%s)\nwant xla:cpu (%s)", spec, why, want)
	}
	// The spec by name starts the plugin found there, which is described by that name.
	b, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	if d := Describe(b); d != "xla:cpu" {
		t.Errorf("Describe: %q, want xla:cpu", d)
	}
}

// Libraries that pass the file check but fail in the loader or in GetPjrtApi (built with the C
// compiler, where there is one): an error naming the file, never a nil plugin used.
func TestPluginsFailingToLoad(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build the libraries")
	}
	root := t.TempDir()
	build := func(out, src string, args ...string) {
		t.Helper()
		c := filepath.Join(root, filepath.Base(out)+".c")
		os.WriteFile(c, []byte(src), 0o644)
		if b, err := exec.Command(cc, append([]string{"-shared", "-fPIC", "-o", out, c}, args...)...).CombinedOutput(); err != nil {
			t.Skipf("cc: %v %s", err, b)
		}
	}
	build(filepath.Join(root, "libgone.so"), "int gone(void) { return 1; }\n")
	for _, c := range []struct {
		name, src, want string
		link            []string
	}{
		{"null", "void *GetPjrtApi(void) { return 0; }\n", "not a working PJRT plugin: GetPjrtApi returned no API", nil},
		{"missing-library", "extern int gone(void);\nvoid *GetPjrtApi(void) { gone(); return 0; }\n",
			"dlopen: libgone.so: cannot open shared object file: No such file or directory", []string{"-L" + root, "-lgone"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(root, c.name)
			os.Mkdir(dir, 0o755)
			path := filepath.Join(dir, pluginName)
			build(path, c.src, c.link...)
			if err := CheckPlugin(path); err != nil {
				t.Fatalf("the file check should pass: %v", err)
			}
			t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
			want := path + ": " + c.want
			if _, err := New("xla:cpu"); err == nil || err.Error() != want || !errs.IsInput(err) {
				t.Errorf("New: %v\nwant %s", err, want)
			}
			if got := Installed(); len(got) != 1 || got[0].Error != c.want {
				t.Errorf("Installed: %+v\nwant the error %s", got, c.want)
			}
			if spec, why := Choose(Auto); spec != "go" || why != "auto: the XLA CPU PJRT plugin "+path+" cannot be loaded ("+c.want+"), so the pure-Go backend" {
				t.Errorf("Choose: %s (%s)", spec, why)
			}
		})
	}
}
