package main

import (
	"fmt"
	"io"
	"os"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/internal/fsio"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "generate text from prompts (KV-cached, streamed)",
		ArgsUsage: "MODEL",
		Description: `Streams the continuation of the prompt to stdout as it is generated, then prints the prompt and
generation speeds and the peak memory on stderr. Several -p (or -f) generate for every prompt in
one batch; prompts of different lengths are left-padded, and each row's text is printed when the
batch is done. A row ends at the model's end-of-sequence id (unless --ignore-eos), at a --stop
string (not printed) or after --max-new-tokens. Temperature 0 (the default) is greedy; sampling
is reproducible for a given --seed. --prompt - (or --prompt-file -) reads stdin.

Examples:
   ./btconvert generate fixtures/bt-tiny -p "The GNU General Public License" -n 64
   ./btconvert generate fixtures/bt-tiny -p "The GNU" -p "This program is free software" -n 32 --stop "."
   echo "The GNU General Public License" | ./btconvert generate out/bt-tiny --prompt-file - --temp 0.8 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.1 --seed 7 --json`,
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "prompt", Aliases: []string{"p"}, KeepSpace: true, Usage: "prompt text (- reads stdin); repeat for a batch"},
			&cli.StringSliceFlag{Name: "prompt-file", Aliases: []string{"f"}, KeepSpace: true, Usage: "read a prompt from a file (- is stdin); repeat for a batch"},
			&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"n", "max-tokens"}, Value: 64, Usage: "tokens to generate (at most)"},
			&cli.StringSliceFlag{Name: "stop", KeepSpace: true, Usage: "end a row before this string (repeatable)"},
			&cli.BoolFlag{Name: "ignore-eos", Usage: "generate past the end-of-sequence id"},
			&cli.BoolFlag{Name: "official-generate", Usage: "generate as the official code's generate does, not as its forward (prefix decoding: other token decoder positions; docs/FORMAT.md)"},
			&cli.Float64Flag{Name: "temperature", Aliases: []string{"temp"}, Value: 0, Usage: "sampling temperature (0: greedy)"},
			&cli.IntFlag{Name: "top-k", Usage: "sample among the k most likely tokens (0: off)"},
			&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "sample among the most likely tokens holding this probability (1: off)"},
			&cli.Float64Flag{Name: "min-p", Usage: "drop tokens less likely than this times the most likely one (0: off)"},
			&cli.Float64Flag{Name: "repeat-penalty", Value: 1, Usage: "penalise every token already in the prompt or the generation, greedy too (1: off; typical 1.1)"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed"},
			jsonFlag, quietFlag,
		}, runFlags...),
		Action: runGenerate,
	}
}

func runGenerate(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	prompts, err := promptsOf(c)
	if err != nil {
		return err
	}
	asJSON := c.Bool("json")
	w := c.App.Writer
	o := btconvert.GenerateOptions{Model: c.Args().First(), Open: openOptions(c), Runtime: runtimeOf(c), Prompts: prompts,
		MaxNewTokens: c.Int("max-new-tokens"), Stop: c.StringSlice("stop"), IgnoreEOS: c.Bool("ignore-eos"), OfficialGenerate: c.Bool("official-generate"), UI: uiOf(c),
		Sampling: graph.Sampling{Temperature: c.Float64("temperature"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"),
			MinP: c.Float64("min-p"), RepeatPenalty: c.Float64("repeat-penalty"), Seed: c.Uint64("seed")}}
	streaming := !asJSON && len(prompts) == 1
	printed := false // the prompt is printed with the first text, so a failed start prints nothing
	showPrompt := func() {
		if !printed {
			fmt.Fprint(w, prompts[0])
			printed = true
		}
	}
	if streaming {
		o.OnText = func(_ int, text string) {
			showPrompt()
			fmt.Fprint(w, text)
		}
	}
	res, err := btconvert.Generate(o)
	if printed && err != nil {
		fmt.Fprintln(w)
	}
	if err != nil {
		return err
	}
	if streaming {
		showPrompt()
		fmt.Fprintln(w)
	}
	if asJSON {
		return printJSON(c, res)
	}
	if !streaming {
		for i, r := range res.Rows {
			fmt.Fprintf(w, "--- %d/%d (%s) ---\n%s%s\n", i+1, len(res.Rows), r.Finish, prompts[i], r.Text)
		}
	}
	say(c, "prompt: %d tokens, %.1f tokens/s; generation: %d tokens, %.1f tokens/s; compile %.2f s; peak memory %s",
		res.PromptTokens, res.PromptTokS, res.GeneratedTokens, res.GenerationTokS, res.CompileS, humanize.IBytes(uint64(res.PeakMemBytes)))
	return nil
}

// promptsOf reads every --prompt and --prompt-file (any one of them may be - for stdin).
func promptsOf(c *cli.Context) ([]string, error) {
	var out []string
	stdin := false
	readStdin := func() (string, error) {
		if stdin {
			return "", usagef("generate: stdin (-) can give one prompt only")
		}
		stdin = true
		b, err := io.ReadAll(io.LimitReader(os.Stdin, fsio.PromptLimit+1))
		if err != nil {
			return "", fmt.Errorf("reading the prompt from stdin: %v", err)
		}
		if len(b) > fsio.PromptLimit {
			return "", usagef("generate: the prompt on stdin is longer than %d bytes (a prompt may have at most that)", fsio.PromptLimit)
		}
		return string(b), nil
	}
	if n := len(c.StringSlice("prompt")) + len(c.StringSlice("prompt-file")); n > maxPrompts {
		return nil, usagef("generate: %d prompts; at most %d in one batch", n, maxPrompts)
	}
	total := 0
	add := func(p string) error {
		if total += len(p); total > maxBatchBytes {
			return usagef("generate: the prompts hold more than %d bytes; a batch may hold at most that", maxBatchBytes)
		}
		out = append(out, p)
		return nil
	}
	for _, p := range c.StringSlice("prompt") {
		if p == "-" {
			var err error
			if p, err = readStdin(); err != nil {
				return nil, err
			}
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	for _, f := range c.StringSlice("prompt-file") {
		var p string
		var err error
		if f == "-" {
			p, err = readStdin()
		} else {
			var b []byte
			b, err = fsio.ReadFile(f, fsio.PromptLimit)
			p = string(b)
		}
		if err != nil {
			return nil, err
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, usagef("generate: --prompt TEXT (or --prompt-file FILE) is required")
	}

	for i, p := range out {
		if p == "" {
			return nil, usagef("generate: prompt %d is empty", i+1)
		}
	}
	return out, nil
}

// maxPrompts and maxBatchBytes bound a batch (its memory is checked against the machine's as
// well, once the prompts are tokens).
const (
	maxPrompts    = 1024
	maxBatchBytes = 16 << 20
)
