// Package graph runs Block Transformer and GPT-NeoX models with GoMLX: weights on the device,
// scoring, and KV-cached generation.
package graph

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // "go": pure Go, the default
	"github.com/gomlx/gomlx/backends/xla"        // "xla:cpu", "xla:cuda", "xla:/path/plugin.so"
)

// BackendEnv names the environment variable that picks the backend when --backend is not given.
const BackendEnv = "BTCONVERT_BACKEND"

// DefaultBackend is used when neither the flag nor the environment says otherwise.
const DefaultBackend = "go"

// ResolveBackend returns the backend spec to use: flag, else $BTCONVERT_BACKEND, else "go".
func ResolveBackend(flag string) string {
	if flag != "" {
		return flag
	}
	if e := os.Getenv(BackendEnv); e != "" {
		return e
	}
	return DefaultBackend
}

// NewBackend creates exactly the backend asked for; it never falls back to another one.
// Specs: "go", "go:parallelism=N", "xla:cpu", "xla:cuda", "xla:/abs/path/pjrt_plugin.so".
func NewBackend(spec string) (b backends.Backend, err error) {
	name, _, _ := strings.Cut(spec, ":")
	switch name {
	case "go":
	case "xla":
		// No downloads at run time: a missing plugin is an error that says so.
		xla.EnableAutoInstall(false)
	default:
		return nil, fmt.Errorf("unknown backend %q (want go, xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so)", spec)
	}
	defer func() {
		// backends.NewWithConfig panics on some bad configs; turn that into an error.
		if r := recover(); r != nil {
			err = fmt.Errorf("backend %q: %v", spec, r)
		}
	}()
	b, err = backends.NewWithConfig(SequentialOps(spec))
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", spec, err)
	}
	return b, nil
}

// Describe says in one line which backend and device run.
func Describe(b backends.Backend) string {
	return fmt.Sprintf("%s (%s, %s)", b.String(), b.Description(), b.DeviceDescription(0))
}

// SequentialOps returns a "go" backend spec that runs a graph's ops one at a time (each op still
// uses all cores). When several independent matmuls are ready at once, running them in parallel
// can exhaust the pure-Go backend's worker pool and deadlock it (GoMLX v0.26.0: each op waits for
// workers held by the other ops). A user who asks for ops_parallel explicitly gets it. Other
// backends are returned unchanged.
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
