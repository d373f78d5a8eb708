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
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"  // "go": pure Go, always there
	"github.com/gomlx/go-xla/compute/xla" // "xla:cpu", "xla:cuda", "xla:/path/plugin.so"
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
// GPU is present, else xla with the CPU plugin when installed, else go. A plugin that does not load
// (see CheckPlugin: a named pipe, a folder, a damaged or foreign library) is passed over, so one
// broken install does not stop every command; why says which was picked, and what was passed over
// and why. The spec names the plugin as the user would (xla:cpu: New finds the same file), so it
// reads short wherever it is printed; `backends` and --verbose give paths. Any other spec is
// returned as it is (never second-guessed).
func Choose(spec string) (chosen, why string) {
	if spec != Auto {
		return spec, "asked for"
	}
	dirs := PluginDirs()
	found := FindPlugins(dirs)
	names := slices.Sorted(maps.Keys(found)) // the same choice every run when several are installed
	var passed []string
	usable := func(kind, p string) bool {
		if _, err := loadPlugin(p); err != nil {
			passed = append(passed, fmt.Sprintf("the %s PJRT plugin %s cannot be loaded (%s)", kind, p, failure(err)))
			return false
		}
		return true
	}
	as := func() string {
		if len(passed) == 0 {
			return ""
		}
		return ", as " + strings.Join(passed, "; ")
	}
	for _, name := range names {
		if p := found[name]; strings.HasPrefix(name, "cuda") && gpuPresent() && usable("CUDA", p) {
			return "xla:" + name, fmt.Sprintf("auto: XLA's CUDA plugin and an NVIDIA GPU%s", as())
		}
	}
	if p, ok := found["cpu"]; ok && usable("XLA CPU", p) {
		note := ""
		for _, name := range names {
			if strings.HasPrefix(name, "cuda") && !gpuPresent() {
				note = " (a CUDA plugin is installed but no GPU is present)"
			}
		}
		return "xla:cpu", fmt.Sprintf("auto: XLA's CPU plugin is installed%s%s", note, as())
	}
	if len(passed) > 0 {
		return "go", fmt.Sprintf("auto: %s, so the pure-Go backend", strings.Join(passed, "; "))
	}
	return "go", "auto: no PJRT plugin installed, so the pure-Go backend"
}

// Started is a backend started from a spec: the spec it resolved to and why.
type Started struct {
	Backend   compute.Backend // the backend itself (tensors know their backend by this value)
	Spec, Why string
}

// Open starts the backend spec names: "auto" (the fastest installed, see Choose), "go",
// "go:parallelism=N", "xla:cpu", "xla:cuda" or "xla:/abs/path/pjrt_plugin.so". Past Choose it
// never falls back to another backend: a plugin auto picked (it loads) whose client cannot start is
// an error that says how to go on. option is the caller's option that gave the spec (errors name
// it as {option}).
func Open(option, spec string) (*Started, error) { return OpenFor(option, spec, Work{}) }

// OpenFor is Open for a run of the given work (see ChooseFor).
func OpenFor(option, spec string, w Work) (*Started, error) {
	chosen, why := ChooseFor(spec, w)
	if chosen == "xla:cpu" && w.quickCompile() {
		if note := useQuickCompile(); note != "" {
			why += "; " + note
		}
	}
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
// resolved with Choose first; Open does both). An xla plugin given by name is looked up in
// PluginDirs here, not by GoMLX, whose search loads every candidate it finds (a named pipe there
// hangs it, a file that is no library crashes it); the plugin file is checked and loaded before
// the backend starts, so a bad one is an errs.InputError naming it.
func New(spec string) (b compute.Backend, err error) {
	name, conf, _ := strings.Cut(spec, ":")
	config := spec
	switch name {
	case "go":
	case "xla":
		xla.EnableAutoInstall(false) // no downloads at run time: a missing plugin is an error that says so
		klog.SetLogger(logr.Discard())
		if conf == "" {
			return nil, errs.Option("Backend", spec, "name a plugin: xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so")
		}
		plugin, options, _ := strings.Cut(conf, ",")
		path := plugin
		if !filepath.IsAbs(path) {
			var ok bool
			if path, ok = findPlugin(plugin); !ok {
				return nil, notInstalled(spec, plugin)
			}
		}
		if _, err := loadPlugin(path); err != nil {
			return nil, err
		}
		config = "xla:" + path
		if options != "" {
			config += "," + options
		}
	default:
		return nil, errs.Option("Backend", spec, "unknown backend (want auto, go, xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so)")
	}
	defer func() {
		// compute.NewWithConfig panics on some bad configs; turn that into an error.
		if r := recover(); r != nil {
			err = backendError(spec, config, fmt.Errorf("%v", r))
		}
	}()
	if name == "go" {
		// GoMLX's go backend prints its parallelism option to stdout, where btconvert's results
		// (--json) go; the backend line says the threads instead.
		restore := quietStdout()
		defer restore()
	}
	b, err = compute.NewWithConfig(SequentialOps(config))
	if err != nil {
		return nil, backendError(spec, config, err)
	}
	return b, nil
}

// findPlugin is the path of the plugin named (cpu, cuda) as GoMLX would pick it: the first in
// PluginDirs, else a versioned one (cpu_v0.83.1 for cpu).
func findPlugin(name string) (string, bool) {
	found := FindPlugins(PluginDirs())
	if p, ok := found[name]; ok {
		return p, true
	}
	for _, n := range slices.Sorted(maps.Keys(found)) {
		if strings.HasPrefix(n, name+"_v") {
			return found[n], true
		}
	}
	return "", false
}

// notInstalled says where plugins are looked for and how to get one: the project's installer
// first (it needs only PyPI), GoMLX's second (it needs GitHub).
func notInstalled(spec, name string) error {
	get := "point PJRT_PLUGIN_LIBRARY_PATH at the folder holding pjrt_c_api_" + name + "_plugin.so, or give its path (xla:/path/to/plugin.so)"
	switch {
	case name == "cpu":
		get = "install it with scripts/install-xla-cpu.sh (from PyPI, hash-checked), " + get +
			"; where GitHub is reachable, GoMLX's installer also works: go run github.com/gomlx/go-xla/cmd/pjrt_installer@latest -autoinstall"
	case strings.HasPrefix(name, "cuda"):
		get = "JAX's CUDA wheel carries one (xla_cuda_plugin.so): give its path (xla:/path/to/xla_cuda_plugin.so), or " + get
	}
	return errs.Option("Backend", spec, "no PJRT plugin %q found in %s; %s", name, strings.Join(PluginDirs(), ":"), get)
}

// backendError says what went wrong creating the backend spec asked for (config is what GoMLX was
// given: the plugin by its path).
func backendError(spec, config string, err error) error {
	name, conf, _ := strings.Cut(config, ":")
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if name == "xla" {
		path, _, _ := strings.Cut(conf, ",")
		return errs.Option("Backend", spec, "the PJRT plugin %s loads, but could not be started: %s", path, msg)
	}
	return errs.Option("Backend", spec, "%s", msg)
}

// quietStdout points os.Stdout at the null device until the returned restore is called (only
// while a backend is created: nothing else writes then).
func quietStdout() (restore func()) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return func() {}
	}
	saved := os.Stdout
	os.Stdout = null
	return func() {
		os.Stdout = saved
		null.Close()
	}
}

// Describe says in a few words which backend runs: "go (2 threads)", or the XLA plugin as a spec
// names it ("xla:cpu"; the path of one that has no usual name).
func Describe(b compute.Backend) string {
	if x, ok := b.(*xla.Backend); ok {
		path := x.PluginName()
		if m := pluginFile.FindStringSubmatch(filepath.Base(path)); m != nil && FindPlugins(PluginDirs())[m[1]+m[2]] == path {
			return "xla:" + m[1] + m[2] + level()
		}
		return "xla:" + path + level()
	}
	if IsGo(b) {
		return fmt.Sprintf("go (%d threads)", goThreads(b))
	}
	return b.String()
}

// level is what Describe adds for an XLA backend compiling at optimization level 0.
func level() string {
	if QuickCompile() {
		return " (optimization level 0)"
	}
	return ""
}

var parallelism = regexp.MustCompile(`\(parallelism=(-?\d+)\)`)

// goThreads is how many threads the go backend computes with: its workers, bounded by GOMAXPROCS
// as its pool bounds them (its description gives the pool's target, twice GOMAXPROCS by default).
func goThreads(b compute.Backend) int {
	n := runtime.GOMAXPROCS(0)
	if m := parallelism.FindStringSubmatch(b.Description()); m != nil {
		if p, err := strconv.Atoi(m[1]); err == nil && p >= 0 {
			n = min(max(p, 1), n)
		}
	}
	return n
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

// Installed lists the PJRT plugins GoMLX would find, each checked and loaded once to read its API
// version (what auto would load).
func Installed() []Plugin {
	found := FindPlugins(PluginDirs())
	var out []Plugin
	for _, name := range slices.Sorted(maps.Keys(found)) {
		p := Plugin{Name: name, Path: found[name]}
		if pl, err := loadPlugin(p.Path); err != nil {
			p.Error = failure(err)
		} else {
			major, minor := pl.Version()
			p.API = fmt.Sprintf("%d.%d", major, minor)
		}
		out = append(out, p)
	}
	return out
}
