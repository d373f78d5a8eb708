// Package backend chooses and starts the GoMLX backend a model runs on: the pure-Go one (always
// there, SIMD matrix products when built with GOEXPERIMENT=simd) or XLA through a PJRT plugin
// (CPU, CUDA), never downloading one; auto picks the fastest installed. It is the one place where
// a backend spec is resolved, for every command and option that takes one.
package backend

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"  // "go": pure Go, always there
	"github.com/gomlx/go-xla/compute/xla" // "xla:cpu", "xla:cuda", "xla:/path/plugin.so"
	"github.com/gomlx/go-xla/pjrt"
	"k8s.io/klog/v2"

	"github.com/btconvert/btconvert/errs"
)

// Env names the environment variable that picks the backend when no option does.
const Env = "BTCONVERT_BACKEND"

// Auto is the backend spec that picks the fastest backend installed (see Choose).
const Auto = "auto"

// IsGo reports the pure-Go backend (told by its name: its String is "go").
func IsGo(b compute.Backend) bool { return b.String() == gobackend.BackendName }

// Resolve returns the backend spec to use: the option, else $BTCONVERT_BACKEND, else Auto.
func Resolve(option string) string {
	if option != "" {
		return option
	}
	if e := os.Getenv(Env); e != "" {
		return e
	}
	return Auto
}

// PluginDirs are the folders GoMLX searches for PJRT plugins: $PJRT_PLUGIN_LIBRARY_PATH (a
// ":"-separated list) when set, else ~/.local/lib/go-xla, /usr/local/lib/go-xla (each with its
// nvidia/ subfolder), their older gomlx/pjrt names, and $LD_LIBRARY_PATH.
func PluginDirs() []string {
	if p, ok := os.LookupEnv("PJRT_PLUGIN_LIBRARY_PATH"); ok {
		var out []string
		for _, d := range strings.Split(p, ":") {
			if d != "" {
				out = append(out, d)
			}
		}
		return out
	}
	var out []string
	if home, err := os.UserHomeDir(); err == nil {
		l := filepath.Join(home, ".local", "lib")
		out = append(out, filepath.Join(l, "go-xla"), filepath.Join(l, "go-xla", "nvidia"), filepath.Join(l, "gomlx", "pjrt"))
	}
	out = append(out, "/usr/local/lib/go-xla", "/usr/local/lib/go-xla/nvidia", "/usr/local/lib/gomlx/pjrt")
	for _, d := range strings.Split(os.Getenv("LD_LIBRARY_PATH"), ":") {
		if filepath.IsAbs(d) {
			out = append(out, d)
		}
	}
	return out
}

var pluginFile = regexp.MustCompile(`^(?:pjrt_c_api_(.+)_plugin|pjrt[-_]plugin[-_](.+))\.so$`)

// FindPlugins returns the PJRT plugins in dirs by name ("cpu", "cuda", ...): the first found of
// each name, as GoMLX would load it.
func FindPlugins(dirs []string) map[string]string {
	out := map[string]string{}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			m := pluginFile.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			name := m[1] + m[2]
			if _, seen := out[name]; !seen {
				out[name] = filepath.Join(d, e.Name())
			}
		}
	}
	return out
}

// gpuPresent reports an NVIDIA GPU (the driver's device nodes).
func gpuPresent() bool {
	ents, _ := filepath.Glob("/dev/nvidia[0-9]*")
	return len(ents) > 0
}

// Choose resolves Auto to a concrete spec: xla with the CUDA plugin when one is installed and a
// GPU is present, else xla with the CPU plugin when installed, else go. why says which and why.
// Any other spec is returned as it is (never second-guessed).
func Choose(spec string) (chosen, why string) {
	if spec != Auto {
		return spec, "asked for"
	}
	dirs := PluginDirs()
	found := FindPlugins(dirs)
	names := slices.Sorted(maps.Keys(found)) // the same choice every run when several are installed
	for _, name := range names {
		if p := found[name]; strings.HasPrefix(name, "cuda") && gpuPresent() {
			return "xla:" + p, fmt.Sprintf("auto: the CUDA PJRT plugin %s and an NVIDIA GPU", p)
		}
	}
	if p, ok := found["cpu"]; ok {
		note := ""
		for _, name := range names {
			if strings.HasPrefix(name, "cuda") {
				note = " (a CUDA plugin is installed but no GPU is present)"
			}
		}
		return "xla:" + p, fmt.Sprintf("auto: the XLA CPU PJRT plugin %s%s", p, note)
	}
	return "go", fmt.Sprintf("auto: no PJRT plugin in %s, so the pure-Go backend", strings.Join(dirs, ":"))
}

// Started is a backend started from a spec: the spec it resolved to and why.
type Started struct {
	Backend   compute.Backend // the backend itself (tensors know their backend by this value)
	Spec, Why string
}

// Open starts the backend spec names: "auto" (the fastest installed, see Choose), "go",
// "go:parallelism=N", "xla:cpu", "xla:cuda" or "xla:/abs/path/pjrt_plugin.so". It never falls back
// to another backend: a plugin auto finds but cannot start is an error that says how to go on.
// option is the caller's option that gave the spec (errors name it as {option}).
func Open(option, spec string) (*Started, error) {
	chosen, why := Choose(spec)
	b, err := New(chosen)
	if err != nil {
		var oe *errs.OptionError
		if errors.As(err, &oe) {
			c := *oe
			c.Option = option
			err = &c
		}
		if spec == Auto {
			return nil, errs.Option(option, Auto, "found %s, but it could not be started (%v); pass {%s} go to run on the pure-Go backend",
				strings.TrimPrefix(why, "auto: "), errs.Render(err, func(f string) string { return "{" + f + "}" }), option)
		}
		return nil, err
	}
	return &Started{b, chosen, why}, nil
}

// New creates exactly the backend spec names; it never falls back to another one (Auto must be
// resolved with Choose first; Open does both).
func New(spec string) (b compute.Backend, err error) {
	name, conf, _ := strings.Cut(spec, ":")
	switch name {
	case "go":
	case "xla":
		xla.EnableAutoInstall(false) // no downloads at run time: a missing plugin is an error that says so
		klog.SetLogger(logr.Discard())
		if conf == "" {
			return nil, errs.Option("Backend", spec, "name a plugin: xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so")
		}
	default:
		return nil, errs.Option("Backend", spec, "unknown backend (want auto, go, xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so)")
	}
	defer func() {
		// compute.NewWithConfig panics on some bad configs; turn that into an error.
		if r := recover(); r != nil {
			err = backendError(spec, fmt.Errorf("%v", r))
		}
	}()
	b, err = compute.NewWithConfig(SequentialOps(spec))
	if err != nil {
		return nil, backendError(spec, err)
	}
	return b, nil
}

// backendError says what to do when a backend cannot be created.
func backendError(spec string, err error) error {
	name, conf, _ := strings.Cut(spec, ":")
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if name != "xla" {
		return errs.Option("Backend", spec, "%s", msg)
	}
	if filepath.IsAbs(conf) {
		return errs.Option("Backend", spec, "the PJRT plugin %s could not be loaded: %s", conf, msg)
	}
	var nf interface{ NotFound() bool }
	if errors.As(err, &nf) || strings.Contains(msg, "not found") || strings.Contains(msg, "no plugins") {
		return errs.Option("Backend", spec, "no PJRT plugin %q found in %s; point PJRT_PLUGIN_LIBRARY_PATH at the folder holding pjrt_c_api_%s_plugin.so, "+
			"or give its path (xla:/path/to/plugin.so); on a machine with network GoMLX's installer fetches one: go run github.com/gomlx/go-xla/cmd/pjrt_installer@latest -autoinstall",
			conf, strings.Join(PluginDirs(), ":"), conf)
	}
	return errs.Option("Backend", spec, "%s", msg)
}

// Describe says in one line which backend and device run.
func Describe(b compute.Backend) string {
	return fmt.Sprintf("%s (%s, %s)", b.String(), b.Description(), b.DeviceDescription(0))
}

// SequentialOps returns a "go" backend spec that runs a graph's ops one at a time (each op still
// uses all cores). When several independent matmuls are ready at once, running them in parallel
// can exhaust the pure-Go backend's worker pool and deadlock it: each op holds a worker while it
// waits for workers held by the other ops (still so in GoMLX v0.28.8 / compute v0.1.6, also with
// the backend's default scheduling; docs/UPSTREAM_BUGS.md). A user who asks for ops_parallel
// explicitly gets it. Other backends are returned unchanged.
func SequentialOps(spec string) string {
	name, conf, _ := strings.Cut(spec, ":")
	if name != "go" || strings.Contains(conf, "ops_") {
		return spec
	}
	if conf == "" {
		return "go:ops_sequential"
	}
	return spec + ",ops_sequential"
}

// Plugin is one PJRT plugin installed where GoMLX looks.
type Plugin struct {
	Name string `json:"name"` // "cpu", "cuda", ...
	Path string `json:"path"`
	// API is the plugin's PJRT C API version ("0.115"); Error says why it could not be loaded.
	API   string `json:"pjrt_api,omitempty"`
	Error string `json:"error,omitempty"`
}

// Installed lists the PJRT plugins GoMLX would find, each loaded once to read its API version.
func Installed() []Plugin {
	found := FindPlugins(PluginDirs())
	var out []Plugin
	for _, name := range slices.Sorted(maps.Keys(found)) {
		p := Plugin{Name: name, Path: found[name]}
		p.API, p.Error = pluginAPI(p.Path)
		out = append(out, p)
	}
	return out
}

// pluginAPI loads a plugin (by path: no search, no download) and reads its API version.
func pluginAPI(path string) (version, failure string) {
	defer func() {
		if r := recover(); r != nil {
			failure = fmt.Sprint(r)
		}
	}()
	klog.SetLogger(logr.Discard()) // its warnings would go to stderr; the error is reported here
	p, err := pjrt.GetPlugin(path)
	if err != nil {
		return "", strings.Join(strings.Fields(err.Error()), " ")
	}
	major, minor := p.Version()
	return fmt.Sprintf("%d.%d", major, minor), ""
}
