// Package btconvert is the pipeline that takes Block Transformer language models from training
// checkpoints to verified, quantized, deployable artifacts: Import, Quantize, Verify, Bench,
// Generate, Export, Init and Inspect, each taking an options struct (the role mlx_lm.convert plays
// for mlx-lm). The btconvert command maps its flags onto these options and prints their results.
//
// Errors a caller causes (a bad file, an option value that cannot work) are *errs.InputError or
// *errs.OptionError (package errs); a verification whose checks fail returns its report with
// ErrCheckFailed; anything else is a failure of the run.
package btconvert

import (
	"errors"
	"runtime/debug"
	"strings"

	// The architecture families register themselves.
	_ "github.com/btconvert/btconvert/families/gptneox"
	_ "github.com/btconvert/btconvert/families/llama"
	_ "github.com/btconvert/btconvert/families/lookup"
	_ "github.com/btconvert/btconvert/families/roberta"
	_ "github.com/btconvert/btconvert/families/t5"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/runner"
)

// ErrCheckFailed is returned (wrapped) with a report whose checks did not all pass.
var ErrCheckFailed = errors.New("verification failed: a check is out of bounds")

// UI is how a long run talks to its user; nil is silent. Note is one line to tell the user (a
// fact, or a warning starting with "warning:"); Progress starts a bar of total units (unit "B" is
// bytes, else a count of unit; unit "" is a phase whose progress is not counted, shown as running
// for so long).
type UI = runner.UI

// Bar is one progress bar: Add advances it by n units (item names what was just done, "" keeps
// the last, or with n == 0 what is under way); Done ends it.
type Bar = runner.Bar

// Warner is a UI that also shows warnings --quiet does not silence (the command line's does).
type Warner = runner.Warner

// silent is the UI of a caller that gave none.
type silent struct{}

type silentBar struct{}

func (silent) Note(string)                        {}
func (silent) Progress(string, int64, string) Bar { return silentBar{} }
func (silentBar) Add(int64, string)               {}
func (silentBar) Done()                           {}

func orSilent(ui UI) UI {
	if ui == nil {
		return silent{}
	}
	return ui
}

// VersionInfo is what this build is: the module version, the commit it was built from, the Go,
// GoMLX and compute (GoMLX's backends) versions, and the go backend's SIMD matmul kernel on this
// CPU (backend.SIMDStatus).
type VersionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	GoMLX    string `json:"gomlx"`
	Compute  string `json:"compute"`
	SIMD     string `json:"simd"`
}

// Version reads the build information of the running binary.
func Version() VersionInfo {
	v := VersionInfo{Version: "(devel)", SIMD: backend.SIMDStatus()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/gomlx/gomlx":
			v.GoMLX = d.Version
		case "github.com/gomlx/compute":
			v.Compute = d.Version
		}
	}
	return v
}

// String is the version in one line.
func (v VersionInfo) String() string {
	parts := []string{v.Version}
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "+modified"
		}
		parts = append(parts, "commit "+c)
	}
	parts = append(parts, v.Go, "GoMLX "+v.GoMLX, "compute "+v.Compute, "simd: "+v.SIMD)
	return strings.Join(parts, ", ")
}
