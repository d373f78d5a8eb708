package graph

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/internal/testfix"
)

// The pure-Go backend is told by its name, so the graphs take its paths.
func TestKindOfGoBackend(t *testing.T) {
	if kindOf(testfix.Backend(t)) != goBackend {
		t.Fatalf("the pure-Go backend (%s, %s) is not recognised", testfix.Backend(t).String(), testfix.Backend(t).Name())
	}
}

// auto picks XLA only where a plugin is installed, names what it found, and an explicit spec is
// never second-guessed.
func TestChooseBackend(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv(BackendEnv, "")
	if spec, why := Choose(Resolve("")); spec != "go" || why != "auto: no PJRT plugin in "+dir+", so the pure-Go backend" {
		t.Fatalf("absent: %s (%s)", spec, why)
	}
	cpu := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
	os.WriteFile(cpu, []byte("not a shared library"), 0o644)
	if spec, why := Choose(Auto); spec != "xla:"+cpu || why != "auto: the XLA CPU PJRT plugin "+cpu {
		t.Fatalf("cpu present: %s (%s)", spec, why)
	}
	os.WriteFile(filepath.Join(dir, "pjrt_c_api_cuda_plugin.so"), nil, 0o644)
	if !gpuPresent() {
		if spec, why := Choose(Auto); spec != "xla:"+cpu || !strings.HasSuffix(why, "(a CUDA plugin is installed but no GPU is present)") {
			t.Fatalf("cuda without a GPU: %s (%s)", spec, why)
		}
	}
	if spec, _ := Choose("go"); spec != "go" {
		t.Fatalf("explicit go became %s", spec)
	}
	t.Setenv(BackendEnv, "xla:cpu")
	if Resolve("") != "xla:cpu" || Resolve("go") != "go" {
		t.Fatal("the option or the environment was not followed")
	}
	// The plugin auto found cannot be loaded: an error that names it, not a switch to another.
	_, err := NewBackend("xla:" + cpu)
	if err == nil || !strings.HasPrefix(err.Error(), `Backend "xla:`+cpu+`": the PJRT plugin `+cpu+` could not be loaded: `) {
		t.Fatalf("unloadable plugin: %v", err)
	}
	// A plugin name that is not installed says where GoMLX looks and how to get one. (Not "cpu":
	// GoMLX reads PJRT_PLUGIN_LIBRARY_PATH once, at start-up, so a CPU plugin installed on this
	// machine would be found whatever the test sets.)
	_, err = NewBackend("xla:absent")
	if err == nil || !strings.Contains(err.Error(), `no PJRT plugin "absent" found in `+dir+"; point PJRT_PLUGIN_LIBRARY_PATH at the folder") {
		t.Fatalf("a plugin nowhere installed: %v", err)
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
