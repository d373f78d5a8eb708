package main

import (
	"fmt"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/formats/errs"
)

// ui is the library's UI on the terminal: notes on stderr (unless --quiet), progress bars on
// stderr when it is a terminal.
type ui struct{ c *cli.Context }

func uiOf(c *cli.Context) btconvert.UI { return ui{c} }

func (u ui) Note(msg string) {
	if !u.c.Bool("quiet") {
		fmt.Fprintln(u.c.App.ErrWriter, oneLine(errs.Spell(msg, flagName)))
	}
}

// Warn prints msg on stderr, --quiet or not, once per run.
func (u ui) Warn(msg string) {
	key := "warned: " + msg
	if u.c.App.Metadata[key] != nil {
		return
	}
	if u.c.App.Metadata == nil {
		u.c.App.Metadata = map[string]any{}
	}
	u.c.App.Metadata[key] = true
	fmt.Fprintln(u.c.App.ErrWriter, oneLine(msg))
}

// Progress shows bytes as bytes and counts as counts; the ETA comes from the units done against
// the units to do (tokens, not steps of unequal size).
func (u ui) Progress(what string, total int64, unit string) btconvert.Bar {
	f, ok := u.c.App.ErrWriter.(*os.File)
	if u.c.Bool("quiet") || !ok || !isatty.IsTerminal(f.Fd()) || total <= 0 {
		return noBar{}
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(100_000_000), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true)}
	if unit == "B" {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())
	}
	return &bar{pb: progressbar.NewOptions64(total, opts...), what: what}
}

type bar struct {
	pb    *progressbar.ProgressBar
	what  string
	count int
}

func (b *bar) Add(n int64, item string) {
	if item != "" {
		b.count++
		b.pb.Describe(fmt.Sprintf("%s [%d] %s", b.what, b.count, item))
	}
	b.pb.Add64(n)
}

func (b *bar) Done() { b.pb.Finish() }

type noBar struct{}

func (noBar) Add(int64, string) {}
func (noBar) Done()             {}
