// Command btconvert converts, quantizes, verifies and exports Block Transformer language models.
// The work is the btconvert package's pipeline; this command maps flags to its options, prints
// results and maps errors to exit statuses.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Exit statuses, the same for every command.
const (
	exitOK       = 0
	exitFailure  = 1 // a failed check, or a failure of the run
	exitBadInput = 2 // bad input or usage
)

// usageError marks a bad flag or argument (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func main() {
	// Ctrl-C, SIGTERM, a closed terminal (SIGHUP) or SIGQUIT: remove what this run was writing,
	// let the command save what it can, exit.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		s := <-sigs
		// Never unlocked: this exit, not the run's failure on its removed output, ends the process.
		// Taken before the flag is set: a run that exits first has printed its error.
		exiting.Lock()
		interrupted.Store(true)
		kept := runInterruptHooks() // before the cleanup: what they write is complete, not partial
		fsio.Cleanup()
		if kept != "" {
			kept = "; " + kept
		}
		fmt.Fprintf(os.Stderr, "btconvert: interrupted (%v)%s; partial output removed\n", s, kept)
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	backend.AllowQuickCompile() // a short run on XLA's CPU plugin may set this process's XLA_FLAGS
	code := run(os.Args, os.Stdout, os.Stderr)
	exiting.Lock()
	os.Exit(code)
}

// exiting is taken by whichever ends the process first: an interrupt or the run's end. A run
// whose temp output the interrupt has just removed fails on it; the interrupt's exit status and
// message are the ones that count. interrupted keeps that failure off the terminal.
var (
	exiting     sync.Mutex
	interrupted atomic.Bool
)

// interruptHooks are what the running command saves when interrupted (a bench: the summary and
// plot of the rows it finished); each returns what it kept, for the last line.
var interruptHooks struct {
	sync.Mutex
	fns []func() string
}

// atInterrupt has fn run if the process is interrupted while the returned remove is not called.
func atInterrupt(fn func() string) (remove func()) {
	interruptHooks.Lock()
	defer interruptHooks.Unlock()
	interruptHooks.fns = append(interruptHooks.fns, fn)
	i := len(interruptHooks.fns) - 1
	return func() {
		interruptHooks.Lock()
		defer interruptHooks.Unlock()
		interruptHooks.fns[i] = nil
	}
}

// interruptGrace bounds the hooks: an interrupted run still exits promptly.
const interruptGrace = 10 * time.Second

// runInterruptHooks runs the hooks (within interruptGrace) and joins what they kept.
func runInterruptHooks() string {
	interruptHooks.Lock()
	fns := slices.Clone(interruptHooks.fns)
	interruptHooks.Unlock()
	done := make(chan string, 1)
	go func() {
		var kept []string
		for _, fn := range fns {
			if fn != nil {
				if k := fn(); k != "" {
					kept = append(kept, k)
				}
			}
		}
		done <- strings.Join(kept, "; ")
	}()
	select {
	case k := <-done:
		return k
	case <-time.After(interruptGrace):
		return ""
	}
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	out := &checkedWriter{w: stdout}
	return runApp(newApp(out, stderr), out, args, stderr)
}

// runApp runs app (writing to out) on args and maps its error to an exit status.
func runApp(app *cli.App, out *checkedWriter, args []string, stderr io.Writer) int {
	args, err := prepareArgs(app, args)
	if err == nil {
		err = app.Run(args)
	}
	if err == nil && out.err != nil {
		err = fmt.Errorf("writing the output: %v", fsio.Unwrap(out.err))
	}
	if err == nil {
		return exitOK
	}
	if !interrupted.Load() {
		fmt.Fprintln(stderr, "btconvert: "+oneLine(errs.Render(err, flagName)))
	}
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageError
	switch {
	case errors.As(err, &ue), errs.IsInput(err):
		return exitBadInput
	case errors.Is(err, btconvert.ErrCheckFailed):
		return exitFailure
	}
	return exitFailure
}

// oneLine puts a message on one line, with control bytes from files escaped (never sent to the
// terminal as they are).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkedWriter remembers the first failed write (stdout to a full disk, a closed pipe).
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// plainStringer is urfave/cli's flag line with the noise taken out: no "(default: false)" on
// switches, and no second "(default: ...)" where the usage already says what the default is.
var plainStringer = cli.FlagStringer

func init() {
	cli.FlagStringer = func(f cli.Flag) string {
		s := plainStringer(f)
		s = strings.TrimSuffix(s, " (default: false)")
		if i := strings.LastIndex(s, " (default: "); i > 0 && strings.Contains(s[:i], "(default") {
			s = s[:i]
		}
		return s
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "btconvert",
		Usage:   "convert, quantize, verify and export Block Transformer language models",
		Version: btconvert.Version().String(),
		Description: `btconvert reads Block Transformer checkpoints (official layout) and HF GPT-NeoX / Pythia and
Llama-family (Llama, Mistral, Qwen2) checkpoints, writes them as a btconvert model folder (embedder / block decoder / token decoder),
runs them through GoMLX to prove numerical parity, quantizes them and exports what you deploy.

Exit status: 0 success, 1 failure or failed check, 2 bad input or usage, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP), 131 quit (SIGQUIT); an interrupted run
leaves no partial output.

The examples of every command's --help run from the repository root after the README's build and
tour; these after its build alone.

Examples:
   ./btconvert backends
   ./btconvert inspect fixtures/bt-tiny
   ./btconvert verify fixtures/bt-tiny --reference fixtures/bt-tiny/reference.safetensors
   ./btconvert generate fixtures/bt-tiny -p "The GNU General Public License" -n 64
   ./btconvert quantize --help`,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		// Repeated flags (-p, --stop, --tensor-type) take their values whole: prompts, stop strings
		// and regexes have commas in them.
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {}, // run() decides the exit status
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
			backendsCommand(),
			completionCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = func(c *cli.Context, err error, _ bool) error { return &usageError{err.Error()} }
		c.Before = checkFlags
	}
	return app
}

// prepareArgs checks the command name and moves a command's flags before its positional
// arguments, so that "btconvert import SRC -o DIR" works (urfave/cli v2 stops parsing flags at
// the first positional argument).
func prepareArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) >= 2 && strings.HasPrefix(args[1], "-") {
		return args, checkTopFlags(app, args[1:])
	}
	if len(args) < 2 {
		return args, nil
	}
	cmd := app.Command(args[1])
	if cmd == nil && args[1] != "help" {
		return nil, unknownCommand(app, args[1])
	}
	if cmd == nil || len(args) < 3 {
		return args, nil
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	help := false
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
			base, _, _ := strings.Cut(name, "=")
			help = help || base == "help" || base == "h"
			if _, known := takesValue[base]; !known && base != "help" && base != "h" {
				return nil, unknownFlag(cmd.Name, cmd.Flags, a)
			}
			if !strings.Contains(name, "=") && takesValue[name] {
				if i+1 >= len(rest) {
					return nil, usagef("%s: flag %s needs a value", cmd.Name, a)
				}
				flags = append(flags, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	if help { // help wins, whatever else is on the line
		return []string{args[0], args[1], "--help"}, nil
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out, nil
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: `Examples:
   source <(./btconvert completion bash)
   ./btconvert completion zsh > "${fpath[1]}/_btconvert"`,
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			default:
				return usagef("completion: want bash or zsh")
			}
			return nil
		},
	}
}

const bashCompletion = `_btconvert() {
  local cur opts
  cur="${COMP_WORDS[COMP_CWORD]}"
  opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  [[ ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "${cur}"))
  return 0
}
complete -o filenames -F _btconvert btconvert
`

const zshCompletion = `#compdef btconvert
_btconvert() {
  local -a opts
  opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts || _files
}
compdef _btconvert btconvert
`
