package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph/backend"
)

// ui is the library's UI on the command line: notes and progress on stderr (unless --quiet),
// progress as bars when stderr is a terminal, as lines elsewhere.
type ui struct{ c *cli.Context }

func uiOf(c *cli.Context) btconvert.UI { return ui{c} }

func (u ui) Note(msg string) {
	if u.c.Bool("quiet") {
		return
	}
	u.println(oneLine(errs.Spell(msg, flagName)))
	if strings.HasPrefix(msg, "backend: ") && u.c.Bool("verbose") && u.once("plugins") {
		u.println(oneLine(pluginPaths()))
	}
}

// println prints a line on stderr, on a line of its own when a bar is on the terminal (the bar
// is drawn again at its next redraw).
func (u ui) println(line string) {
	outMu.Lock()
	defer outMu.Unlock()
	if active != nil {
		active.pb.Clear()
	}
	fmt.Fprintln(u.c.App.ErrWriter, line)
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
		u.println(oneLine(msg))
	}
}

// Progress shows bytes as bytes and counts as counts; the ETA comes from the units done against
// the units to do (tokens, not steps of unequal size). Unit "" is a phase whose progress is not
// counted (loading, compiling, a check): it shows that it runs and for how long. On a terminal it
// is a bar, drawn at once and redrawn every second (the elapsed time moves while a graph
// compiles); elsewhere (CI logs, nohup, pipes) plain lines (lineBar), so long work is never
// silent for long.
func (u ui) Progress(what string, total int64, unit string) btconvert.Bar {
	if u.c.Bool("quiet") || total <= 0 {
		return noBar{}
	}
	f, ok := u.c.App.ErrWriter.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return newLineBar(u.c.App.ErrWriter, what, total, unit)
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(100_000_000), progressbar.OptionClearOnFinish(), progressbar.OptionSetElapsedTime(true)}
	switch unit {
	case "":
		total = -1 // a spinner and the elapsed time
		// Turned by redraw, under outMu: progressbar's own spinner goroutine would draw between a
		// note's clearing of the bar and the note.
		opts = append(opts, progressbar.OptionSpinnerType(14), progressbar.OptionSetSpinnerChangeInterval(0))
	case "B":
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowBytes(true))
	default:
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())
	}
	b := &bar{pb: progressbar.NewOptions64(total, opts...), what: what, stop: make(chan struct{}), stopped: make(chan struct{})}
	b.pb.StartWithoutRender() // the clock starts now, not at the first unit done (else the first rate is that unit over microseconds)
	outMu.Lock()
	active = b
	b.pb.RenderBlank()
	outMu.Unlock()
	go b.redraw()
	return b
}

// outMu orders what goes to stderr: notes from the command and lines from the bars' timers.
var outMu sync.Mutex

// active is the terminal bar on screen (under outMu): a note clears it first, else the note
// would continue the bar's line.
var active *bar

type bar struct {
	pb            *progressbar.ProgressBar
	what          string
	count         int
	stop, stopped chan struct{}
	done          bool
}

// redraw draws the bar every second until Done: progressbar draws only when units are added, and
// a compile adds none for seconds.
func (b *bar) redraw() {
	defer close(b.stopped)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			outMu.Lock()
			b.pb.RenderBlank()
			outMu.Unlock()
		}
	}
}

// Add with n == 0 names the work under way (item); with n > 0, what was just done, counted.
func (b *bar) Add(n int64, item string) {
	outMu.Lock()
	defer outMu.Unlock()
	if item != "" {
		desc := b.what + " " + item
		if n > 0 {
			b.count++
			desc = fmt.Sprintf("%s [%d] %s", b.what, b.count, item)
		}
		b.pb.Describe(desc)
	}
	b.pb.Add64(n)
	if n == 0 {
		b.pb.RenderBlank() // the work under way shows now: progressbar holds back a redraw within 0.1 s of the last
	}
}

func (b *bar) Done() {
	if b.done {
		return
	}
	b.done = true
	close(b.stop)
	<-b.stopped
	outMu.Lock()
	defer outMu.Unlock()
	if active == b {
		active = nil
	}
	b.pb.Finish()
}

// A lineBar's first line comes progressFirst after it starts (work done sooner prints nothing),
// the second progressSecond later (with a rate and an ETA by then), the rest every progressEvery.
var (
	progressFirst  = time.Second
	progressSecond = 2 * time.Second
	progressEvery  = 10 * time.Second
)

// lineBar prints "what: 42% (n of total unit), rate, ETA [item]" on the schedule above, from a
// timer (a graph compiling adds no units for seconds), and a last line at the end when it printed
// any; a phase (unit "") prints "what: running, 3s [item]" and "what: done, 14s".
type lineBar struct {
	mu          sync.Mutex
	w           io.Writer
	what, unit  string
	total, done int64
	item        string
	start       time.Time
	first       time.Time // when the first unit was done (the rate counts from there)
	firstDone   int64
	lines       int   // lines printed
	shown       int64 // done as of the last line printed
	ended       bool
	timer       *time.Timer
	now         func() time.Time
}

func newLineBar(w io.Writer, what string, total int64, unit string) *lineBar {
	b := &lineBar{w: w, what: what, total: total, unit: unit, start: time.Now(), now: time.Now}
	b.mu.Lock() // the timer's first call waits for b.timer
	defer b.mu.Unlock()
	b.timer = time.AfterFunc(progressFirst, b.tick)
	return b
}

// tick prints a line and sets the timer for the next.
func (b *lineBar) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.print(b.now())
	next := progressEvery
	if b.lines == 1 {
		next = progressSecond
	}
	b.timer.Reset(next)
}

func (b *lineBar) Add(n int64, item string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.first.IsZero() && n > 0 {
		b.first, b.firstDone = b.now(), b.done
	}
	b.done += n
	if item != "" {
		b.item = item
	}
}

// print writes the line for now (b.mu held).
func (b *lineBar) print(now time.Time) {
	b.lines, b.shown = b.lines+1, b.done
	elapsed := now.Sub(b.start).Round(time.Second).String()
	var line string
	switch {
	case b.unit == "" && b.ended:
		line = b.what + ": done, " + elapsed
	case b.unit == "":
		line = b.what + ": running, " + elapsed
	default:
		amount := func(v int64) string {
			if b.unit == "B" {
				return humanize.IBytes(uint64(v))
			}
			return humanize.Comma(v) + " " + b.unit
		}
		line = fmt.Sprintf("%s: %d%% (%s of %s)", b.what, b.done*100/b.total, amount(b.done), amount(b.total))
		if el := now.Sub(b.first).Seconds(); !b.first.IsZero() && el > 0.5 && b.done > b.firstDone {
			rate := float64(b.done-b.firstDone) / el
			if b.unit == "B" {
				line += fmt.Sprintf(", %s/s", humanize.IBytes(uint64(rate)))
			} else {
				line += fmt.Sprintf(", %.1f %s/s", rate, b.unit)
			}
			if b.done < b.total {
				line += ", ETA " + time.Duration(float64(b.total-b.done)/rate*float64(time.Second)).Round(time.Second).String()
			}
		} else {
			line += ", " + elapsed // no rate yet (compiling, loading): the time says it is not stuck
		}
	}
	if b.item != "" && !(b.unit == "" && b.ended) {
		line += " [" + b.item + "]"
	}
	outMu.Lock()
	fmt.Fprintln(b.w, line)
	outMu.Unlock()
}

func (b *lineBar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended = true
	b.timer.Stop()                                          // a tick already waiting on b.mu sees ended and prints nothing
	if b.lines > 0 && (b.shown != b.done || b.unit == "") { // not the line just printed again
		b.print(b.now())
	}
}

type noBar struct{}

func (noBar) Add(int64, string) {}
func (noBar) Done()             {}
