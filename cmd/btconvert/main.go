// Command btconvert converts, quantizes, verifies and exports Block Transformer language models.
// The work lives in the library packages; this file and its siblings only parse flags and print.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit statuses, the same for every command.
const (
	exitOK       = 0
	exitFailure  = 1 // a failed check or an internal failure
	exitBadInput = 2 // bad input or usage
)

// usageError marks a bad flag or argument (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// checkFailed marks a verification that ran but did not pass (exit 1).
type checkFailed struct{ msg string }

func (e *checkFailed) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(interspersed(app, args))
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "btconvert: "+oneLine(err.Error()))
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageError
	var cf *checkFailed
	switch {
	case errors.As(err, &ue), formats.IsInputError(err):
		return exitBadInput
	case errors.As(err, &cf):
		return exitFailure
	}
	return exitFailure
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "btconvert",
		Usage:   "convert, quantize, verify and export Block Transformer language models",
		Version: version,
		Description: `btconvert reads Block Transformer checkpoints (official layout) and HF GPT-NeoX / Pythia
checkpoints, writes them as a btconvert model directory (embedder / block decoder / token decoder),
runs them through GoMLX to prove numerical parity, quantizes them and exports what you deploy.

Exit status: 0 success, 1 failure or failed check, 2 bad input or usage.`,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() decides the exit status
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return &usageError{err.Error()}
		},
		Commands: []*cli.Command{
			importCommand(),
			inspectCommand(),
			verifyCommand(),
			generateCommand(),
			quantizeCommand(),
			exportCommand(),
			initCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = func(c *cli.Context, err error, _ bool) error { return &usageError{err.Error()} }
	}
	return app
}

var quietFlag = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"}

// progress returns a byte progress bar on stderr when it is a terminal and --quiet is not set, or a
// no-op. Call finish when done.
func progress(c *cli.Context, total int64, what string) (formats.Progress, func()) {
	f, ok := c.App.ErrWriter.(*os.File)
	if c.Bool("quiet") || !ok || !isatty.IsTerminal(f.Fd()) {
		return func(string, int64) {}, func() {}
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100_000_000), progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
	count := 0
	return func(tensor string, n int64) {
		if tensor != "" {
			count++
			bar.Describe(fmt.Sprintf("%s [%d] %s", what, count, tensor))
		}
		bar.Add64(n)
	}, func() { bar.Finish() }
}

// needArgs checks the positional argument count.
func needArgs(c *cli.Context, n int, what string) error {
	if c.NArg() != n {
		return usagef("%s: expected %s (see btconvert %s --help)", c.Command.Name, what, c.Command.Name)
	}
	return nil
}

// say prints an informational line to stderr unless --quiet.
func say(c *cli.Context, format string, args ...any) {
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, format+"\n", args...)
	}
}

// interspersed moves a command's flags before its positional arguments, so that
// "btconvert import SRC -o DIR" works (urfave/cli v2 stops at the first positional argument).
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out
}
