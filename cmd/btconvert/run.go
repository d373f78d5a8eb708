package main

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
)

// Flags shared by the commands that run a model.
var runFlags = []cli.Flag{
	&cli.StringFlag{Name: "backend", Usage: "go (default), xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so; env " + graph.BackendEnv},
	&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
	&cli.StringFlag{Name: "config", Usage: "architecture file for a checkpoint (as in import)"},
}

// loaded is a model opened and uploaded to a backend.
type loaded struct {
	src     *formats.Model
	model   *graph.Model
	backend backends.Backend
	spec    string
}

func (l *loaded) Close() {
	l.model.Close()
	l.src.Close()
}

// openBackend creates the backend the flags ask for and says which one runs.
func openBackend(c *cli.Context, flag string) (backends.Backend, string, error) {
	spec := graph.ResolveBackend(flag)
	b, err := graph.NewBackend(spec)
	if err != nil {
		return nil, spec, usagef("%v", err)
	}
	say(c, "backend: %s", graph.Describe(b))
	return b, spec, nil
}

// loadModel opens path (anything import reads, or our directory) and loads it onto the backend.
func loadModel(c *cli.Context, path string, b backends.Backend, spec string) (*loaded, error) {
	dt, err := graph.ParseComputeDType(c.String("dtype"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	src, err := formats.Open(path, c.String("config"))
	if err != nil {
		return nil, err
	}
	m, err := graph.Load(src, b, dt)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &loaded{src: src, model: m, backend: b, spec: spec}, nil
}
