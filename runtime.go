package btconvert

import (
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/runner"
)

// Runtime says where a model runs.
type Runtime struct {
	Backend      string // "" is $BTCONVERT_BACKEND, else auto (see backend.Choose)
	ComputeDType string // "f32" (default) or "bf16"
}

// start checks the compute dtype, creates the backend rt asks for and tells the user which one
// runs and why. The work (backend.Work) lets auto keep a small run off XLA's CPU plugin, whose
// compile would take longer than the run.
func (rt Runtime) start(ui UI, w backend.Work) (*runner.Device, error) {
	dt, err := graph.ParseComputeDType(rt.ComputeDType)
	if err != nil {
		return nil, err
	}
	return runner.StartBackend("Backend", backend.Resolve(rt.Backend), dt, ui, w)
}

// open starts the backend rt asks for and loads model on it.
func (rt Runtime) open(model string, o formats.OpenOptions, ui UI, w backend.Work) (*runner.Device, *runner.Loaded, error) {
	dev, err := rt.start(ui, w)
	if err != nil {
		return nil, nil, err
	}
	l, err := dev.Load(model, o)
	if err != nil {
		return nil, nil, err
	}
	return dev, l, nil
}
