package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/graph/backend"
)

func backendsCommand() *cli.Command {
	return &cli.Command{
		Name:  "backends",
		Usage: "list the backends this machine has and say which one auto picks",
		Description: `The pure-Go backend is always there (its matrix products use AVX2 / AVX512 when btconvert is
built with GOEXPERIMENT=simd). XLA runs through a PJRT plugin, found where GoMLX looks:
$PJRT_PLUGIN_LIBRARY_PATH, else ~/.local/lib/go-xla, /usr/local/lib/go-xla and $LD_LIBRARY_PATH.
btconvert never downloads one. Install XLA's CPU plugin with scripts/install-xla-cpu.sh (from
PyPI, checked against its sha256); a CUDA plugin comes with JAX's CUDA wheels.

--backend auto (the default) picks the CUDA plugin on a machine with an NVIDIA GPU, else the CPU
plugin, else the pure-Go backend. The CPU plugin compiles each graph first (1 - 4 s), so auto
weighs the work: a run whose work on the pure-Go backend would take less than XLA's compile saves
(a small model, a short generation, a self-check) stays on go, and its backend line says why; an
explicit --backend is never second-guessed. A plugin that cannot be loaded (not a PJRT plugin,
damaged, truncated) is listed with what is wrong, and auto passes over it, saying so; asked for by
name or path (--backend xla:cpu), it is an error naming the file.

Examples:
   ./btconvert backends
   ./btconvert backends --json`,
		Flags:  []cli.Flag{jsonFlag},
		Action: runBackends,
	}
}

// backendsReport is what backends prints.
type backendsReport struct {
	Auto    string           `json:"auto"`
	Why     string           `json:"why"`
	Rule    string           `json:"rule,omitempty"` // how auto weighs a run's work against XLA's compile
	GoSIMD  string           `json:"go_simd"`
	Plugins []backend.Plugin `json:"plugins"`
	Search  []string         `json:"search_path"`
}

func runBackends(c *cli.Context) error {
	auto, why := backend.Choose(backend.Auto)
	r := backendsReport{Auto: auto, Why: strings.TrimPrefix(why, "auto: "), GoSIMD: backend.SIMDStatus(), Plugins: backend.Installed(),
		Search: backend.PluginDirs()}
	if r.Plugins == nil {
		r.Plugins = []backend.Plugin{}
	}
	if auto == "xla:cpu" {
		r.Rule = backend.AutoRule
	}
	if c.Bool("json") {
		return printJSON(c, r)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "go      pure Go, always there (matrix products: %s)\n", r.GoSIMD)
	for _, p := range r.Plugins {
		state := "PJRT API " + p.API
		if p.Error != "" {
			state = "cannot be loaded: " + p.Error
		}
		fmt.Fprintf(w, "xla:%-4s %s (%s)\n", p.Name, p.Path, state)
	}
	if len(r.Plugins) == 0 {
		fmt.Fprintf(w, "xla     no PJRT plugin in %s (scripts/install-xla-cpu.sh installs the CPU one)\n", strings.Join(r.Search, ":"))
	}
	fmt.Fprintf(w, "auto picks %s: %s\n", r.Auto, r.Why)
	if r.Rule != "" {
		fmt.Fprintf(w, "  for runs that pay for its compile: %s\n", r.Rule)
	}
	return nil
}
