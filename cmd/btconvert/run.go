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
	configFlag, headsFlag,
}

// Flags that complete what a checkpoint's own files say (every command that reads a checkpoint).
var (
	configFlag = &cli.StringFlag{Name: "config", Usage: "architecture file for a checkpoint: official config.yaml (Block or vanilla) or HF config.json"}
	headsFlag  = &cli.IntFlag{Name: "heads", Usage: "attention heads of every decoder whose config does not state them (checkpoints without a config, or on a base model btconvert does not know)"}
)

// openOptions are the --config / --heads flags.
func openOptions(c *cli.Context) formats.OpenOptions {
	return formats.OpenOptions{Config: c.String("config"), Heads: c.Int("heads")}
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
	src, err := formats.Open(path, openOptions(c))
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

// warnLength says (one line on stderr) when a run needs more positions than the model was built for.
func warnLength(c *cli.Context, cfg *formats.Config, tokens int, what string) {
	if mt := cfg.MaxTokens(); mt > 0 && tokens > mt {
		say(c, "warning: %s is %d tokens, past the %d the model was built for (max_length / max_position_embeddings)", what, tokens, mt)
	}
}
