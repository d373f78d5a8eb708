package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/formats/fsio"
	"github.com/btconvert/btconvert/graph"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "generate text from a prompt (KV-cached, streamed)",
		ArgsUsage: "MODEL",
		Description: `Streams the continuation of the prompt to stdout as it is generated. Temperature 0 (the default)
is greedy; sampling is reproducible for a given --seed. --prompt - (or --prompt-file -) reads stdin.

Examples:
   btconvert generate fixtures/bt-tiny -p "The GNU General Public License" -n 64
   btconvert generate out/bt-tiny --prompt-file prompt.txt --temp 0.8 --top-p 0.9 --seed 7 --json`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt text (- reads stdin)"},
			&cli.StringFlag{Name: "prompt-file", Aliases: []string{"f"}, Usage: "read the prompt from a file (- is stdin)"},
			&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"n", "max-tokens"}, Value: 64, Usage: "tokens to generate"},
			&cli.Float64Flag{Name: "temperature", Aliases: []string{"temp"}, Value: 0, Usage: "sampling temperature (0: greedy)"},
			&cli.IntFlag{Name: "top-k", Usage: "sample among the k most likely tokens (0: off)"},
			&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "sample among the most likely tokens holding this probability (1: off)"},
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
	prompt, err := promptOf(c)
	if err != nil {
		return err
	}
	asJSON := c.Bool("json")
	w := c.App.Writer
	o := btconvert.GenerateOptions{Model: c.Args().First(), Open: openOptions(c), Runtime: runtimeOf(c), Prompt: prompt,
		MaxNewTokens: c.Int("max-new-tokens"), UI: uiOf(c),
		Sampling: graph.Sampling{Temperature: c.Float64("temperature"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), Seed: c.Uint64("seed")}}
	printed := false
	if !asJSON {
		o.OnText = func(text string) {
			if !printed {
				fmt.Fprint(w, prompt)
				printed = true
			}
			fmt.Fprint(w, text)
		}
	}
	res, err := btconvert.Generate(o)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(c, res)
	}
	fmt.Fprintln(w)
	say(c, "%d tokens: prefill %.1f ms, %.1f tokens/s", len(res.IDs), res.PrefillS*1e3, res.TokensPerS)
	return nil
}

// promptOf reads --prompt or --prompt-file (either may be - for stdin).
func promptOf(c *cli.Context) (string, error) {
	p, f := c.String("prompt"), c.String("prompt-file")
	switch {
	case c.IsSet("prompt") && c.IsSet("prompt-file"):
		return "", usagef("generate: give --prompt or --prompt-file, not both")
	case p == "-" || f == "-":
		b, err := io.ReadAll(io.LimitReader(os.Stdin, fsio.PromptLimit+1))
		if err != nil {
			return "", fmt.Errorf("reading the prompt from stdin: %v", err)
		}
		if len(b) > fsio.PromptLimit {
			return "", usagef("generate: the prompt on stdin is longer than %d bytes (a prompt may have at most that)", fsio.PromptLimit)
		}
		p = string(b)
	case f != "":
		b, err := fsio.ReadFile(f, fsio.PromptLimit)
		if err != nil {
			return "", err
		}
		p = string(b)
	}
	if p == "" {
		return "", usagef("generate: --prompt TEXT (or --prompt-file FILE) is required")
	}
	return p, nil
}
