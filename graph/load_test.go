package graph

import (
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/internal/testfix"
)

// The fixtures' loaders of the tests, inside the package and (export_test.go) outside it.

// load opens a fixture and uploads it to the pure-Go backend.
func load(t testing.TB, name string, dt dtypes.DType) *Engine {
	t.Helper()
	return loadModel(t, testfix.Open(t, testfix.Path(name)), dt)
}

func loadModel(t testing.TB, m *formats.Model, dt dtypes.DType) *Engine {
	t.Helper()
	return loadOn(t, testfix.Backend(t), m, dt)
}

// loadOn uploads a model to backend b.
func loadOn(t testing.TB, b compute.Backend, m *formats.Model, dt dtypes.DType) *Engine {
	t.Helper()
	e, err := Load(m, b, dt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}
