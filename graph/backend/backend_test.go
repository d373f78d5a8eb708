package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The pure-Go backend is told by its name, so the graphs take its paths.
func TestIsGo(t *testing.T) {
	b, err := New("go")
	if err != nil {
		t.Fatal(err)
	}
	if !IsGo(b) {
		t.Fatalf("the pure-Go backend (%s, %s) is not recognised", b.String(), b.Name())
	}
	// The threads it computes with, not its pool's target (twice GOMAXPROCS).
	if d, want := Describe(b), fmt.Sprintf("go (%d threads)", runtime.GOMAXPROCS(0)); d != want {
		t.Errorf("Describe: %q, want %q", d, want)
	}
}

// auto picks XLA only where a plugin is installed and loads, names what it found or passed over,
// and an explicit spec is never second-guessed.
func TestChooseBackend(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv(Env, "")
	if spec, why := Choose(Resolve("")); spec != "go" || why != "auto: no PJRT plugin installed, so the pure-Go backend" {
		t.Fatalf("absent: %s (%s)", spec, why)
	}
	cpu := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
	os.WriteFile(cpu, []byte("not a shared library"), 0o644)
	if spec, why := Choose(Auto); spec != "go" || why != "auto: the XLA CPU PJRT plugin "+cpu+" cannot be loaded (no ELF header, so not a shared library or PJRT plugin), so the pure-Go backend" {
		t.Fatalf("cpu present but broken: %s (%s)", spec, why)
	}
	if spec, _ := Choose("go"); spec != "go" {
		t.Fatalf("explicit go became %s", spec)
	}
	t.Setenv(Env, "xla:cpu")
	if Resolve("") != "xla:cpu" || Resolve("go") != "go" {
		t.Fatal("the option or the environment was not followed")
	}
	// Asked for by path or by name, the plugin that cannot be loaded is an error that names it.
	for _, spec := range []string{"xla:" + cpu, "xla:cpu"} {
		_, err := New(spec)
		if err == nil || err.Error() != cpu+": no ELF header, so not a shared library or PJRT plugin" {
			t.Fatalf("%s, unloadable: %v", spec, err)
		}
	}
	// A plugin name that is not installed says where it was looked for and how to get one: for
	// the CPU plugin, the project's installer first (GoMLX's needs GitHub).
	_, err := New("xla:nosuchplugin")
	if err == nil || err.Error() != `Backend "xla:nosuchplugin": no PJRT plugin "nosuchplugin" found in `+dir+"; point PJRT_PLUGIN_LIBRARY_PATH at the folder holding pjrt_c_api_nosuchplugin_plugin.so, or give its path (xla:/path/to/plugin.so)" {
		t.Fatalf("a plugin that is not installed: %v", err)
	}
	os.Remove(cpu)
	_, err = New("xla:cpu")
	if want := `Backend "xla:cpu": no PJRT plugin "cpu" found in ` + dir + "; install it with scripts/install-xla-cpu.sh (from PyPI, hash-checked), point PJRT_PLUGIN_LIBRARY_PATH at the folder holding pjrt_c_api_cpu_plugin.so, or give its path (xla:/path/to/plugin.so); where GitHub is reachable, GoMLX's installer also works: go run github.com/gomlx/go-xla/cmd/pjrt_installer@latest -autoinstall"; err == nil || err.Error() != want {
		t.Fatalf("the CPU plugin not installed:\n got %v\nwant %s", err, want)
	}
}

// The kernel named is the one the go backend picks: SIMD needs GOEXPERIMENT=simd, then the CPU's
// best variant the environment allows.
func TestMatmulKernel(t *testing.T) {
	if !SIMDBuiltIn {
		if MatmulKernel() != KernelNoSIMD || SIMDStatus() != "off (built without GOEXPERIMENT=simd)" {
			t.Fatalf("no SIMD build: %s, %q", MatmulKernel(), SIMDStatus())
		}
		return
	}
	avx512, avx2 := cpuHasAVX()
	t.Logf("CPU: AVX512 %v, AVX2 %v; kernel %s (%s)", avx512, avx2, MatmulKernel(), SIMDStatus())
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, map[bool]string{true: KernelAVX512, false: map[bool]string{true: KernelAVX2, false: KernelNoSIMD}[avx2]}[avx512]},
		{map[string]string{"GOMLX_SIMD_AVX512": "false"}, map[bool]string{true: KernelAVX2, false: KernelNoSIMD}[avx2]},
		{map[string]string{"GOMLX_SIMD_AVX512": "false", "GOMLX_SIMD_AVX2": "off"}, KernelNoSIMD},
		{map[string]string{"GOMLX_DOT_MATMUL": "false"}, KernelNoSIMD},
	} {
		for _, k := range []string{"GOMLX_SIMD_AVX512", "GOMLX_SIMD_AVX2", "GOMLX_DOT_MATMUL"} {
			t.Setenv(k, c.env[k])
		}
		if got, why := detectKernel(); got != c.want || (got == KernelNoSIMD) == (why == "") {
			t.Errorf("%v: kernel %s (%q), want %s", c.env, got, why, c.want)
		}
	}
}
