package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph/backend"
)

// ui is the library's UI on the terminal: notes on stderr (unless --quiet), progress bars on
// stderr when it is a terminal.
type ui struct{ c *cli.Context }

func uiOf(c *cli.Context) btconvert.UI { return ui{c} }

func (u ui) Note(msg string) {
	if u.c.Bool("quiet") {
		return
	}
	fmt.Fprintln(u.c.App.ErrWriter, oneLine(errs.Spell(msg, flagName)))
	if strings.HasPrefix(msg, "backend: ") && u.c.Bool("verbose") && u.once("plugins") {
		fmt.Fprintln(u.c.App.ErrWriter, oneLine(pluginPaths()))
	}
}

// pluginPaths is the --verbose line after the backend line: the PJRT plugins installed, by the
// name xla:NAME uses and their path, or the folders looked in.
func pluginPaths() string {
	dirs := backend.PluginDirs()
	found := backend.FindPlugins(dirs)
	if len(found) == 0 {
		return "plugins: none in " + strings.Join(dirs, ":")
	}
	var s []string
	for _, name := range slices.Sorted(maps.Keys(found)) {
		s = append(s, "xla:"+name+" "+found[name])
	}
	return "plugins: " + strings.Join(s, ", ")
}

// once reports whether key is seen for the first time in this run.
func (u ui) once(key string) bool {
	if u.c.App.Metadata[key] != nil {
		return false
	}
	if u.c.App.Metadata == nil {
		u.c.App.Metadata = map[string]any{}
	}
	u.c.App.Metadata[key] = true
	return true
}

// Warn prints msg on stderr, --quiet or not, once per run.
func (u ui) Warn(msg string) {
	if u.once("warned: " + msg) {
		fmt.Fprintln(u.c.App.ErrWriter, oneLine(msg))
	}
}

// Progress shows bytes as bytes and counts as counts; the ETA comes from the units done against
// the units to do (tokens, not steps of unequal size). On a terminal it is a bar; elsewhere (CI
// logs, nohup, pipes) a plain line every progressEvery, so long work is never silent.
func (u ui) Progress(what string, total int64, unit string) btconvert.Bar {
	if u.c.Bool("quiet") || total <= 0 {
		return noBar{}
	}
	f, ok := u.c.App.ErrWriter.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return &lineBar{w: u.c.App.ErrWriter, what: what, total: total, unit: unit, start: time.Now(), last: time.Now()}
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(100_000_000), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true)}
	if unit == "B" {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())
	}
	pb := progressbar.NewOptions64(total, opts...)
	pb.StartWithoutRender() // the clock starts now, not at the first unit done (else the first rate is that unit over microseconds)
	return &bar{pb: pb, what: what}
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

// progressEvery is how often a lineBar prints.
var progressEvery = 10 * time.Second

// lineBar prints "what: 42% (n/total unit), rate, ETA" every progressEvery, and a last line at
// the end when it printed any.
type lineBar struct {
	w           io.Writer
	what, unit  string
	total, done int64
	item        string
	start, last time.Time
	first       time.Time // when the first unit was done (the rate counts from there)
	firstDone   int64
	printed     bool
	shown       int64 // done as of the last line printed
}

func (b *lineBar) Add(n int64, item string) {
	now := time.Now()
	if b.first.IsZero() {
		b.first, b.firstDone = now, b.done
	}
	b.done += n
	if item != "" {
		b.item = item
	}
	if now.Sub(b.last) >= progressEvery {
		b.last = now
		b.print(now)
	}
}

func (b *lineBar) print(now time.Time) {
	b.printed, b.shown = true, b.done
	amount := func(v int64) string {
		if b.unit == "B" {
			return humanize.IBytes(uint64(v))
		}
		return humanize.Comma(v) + " " + b.unit
	}
	line := fmt.Sprintf("%s: %d%% (%s of %s)", b.what, b.done*100/b.total, amount(b.done), amount(b.total))
	if el := now.Sub(b.first).Seconds(); el > 0.5 && b.done > b.firstDone {
		rate := float64(b.done-b.firstDone) / el
		if b.unit == "B" {
			line += fmt.Sprintf(", %s/s", humanize.IBytes(uint64(rate)))
		} else {
			line += fmt.Sprintf(", %.1f %s/s", rate, b.unit)
		}
		if b.done < b.total {
			line += ", ETA " + time.Duration(float64(b.total-b.done)/rate*float64(time.Second)).Round(time.Second).String()
		}
	}
	if b.item != "" {
		line += " [" + b.item + "]"
	}
	fmt.Fprintln(b.w, line)
}

func (b *lineBar) Done() {
	if b.printed && b.shown != b.done { // not the line just printed again
		b.print(time.Now())
	}
}

type noBar struct{}

func (noBar) Add(int64, string) {}
func (noBar) Done()             {}
