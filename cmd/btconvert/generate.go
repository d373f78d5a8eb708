package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "generate text from a prompt (KV-cached, streamed)",
		ArgsUsage: "MODEL",
		Description: `Streams the continuation of --prompt to stdout as it is generated. Temperature 0 (the default)
is greedy; sampling is reproducible for a given --seed.

Examples:
   btconvert generate fixtures/bt-tiny --prompt "The GNU General Public License" --max-new-tokens 64
   btconvert generate out/bt-tiny --prompt "Hello" --temperature 0.8 --top-p 0.9 --seed 7 --json`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "prompt", Usage: "prompt text"},
			&cli.IntFlag{Name: "max-new-tokens", Value: 64, Usage: "tokens to generate"},
			&cli.Float64Flag{Name: "temperature", Value: 0, Usage: "sampling temperature (0: greedy)"},
			&cli.IntFlag{Name: "top-k", Usage: "sample among the k most likely tokens (0: off)"},
			&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "sample among the most likely tokens holding this probability (1: off)"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed"},
			&cli.BoolFlag{Name: "json", Usage: "print ids, text and timing as JSON instead of streaming"},
			quietFlag,
		}, runFlags...),
		Action: runGenerate,
	}
}

func runGenerate(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	if !c.IsSet("prompt") || c.String("prompt") == "" {
		return usagef("generate: --prompt TEXT is required")
	}
	s := graph.Sampling{Temperature: c.Float64("temperature"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), Seed: c.Uint64("seed")}
	if s.Temperature < 0 || s.TopK < 0 || s.TopP <= 0 || s.TopP > 1 || c.Int("max-new-tokens") < 1 {
		return usagef("generate: need --temperature >= 0, --top-k >= 0, 0 < --top-p <= 1 and --max-new-tokens >= 1")
	}
	b, spec, err := openBackend(c, c.String("backend"))
	if err != nil {
		return err
	}
	l, err := loadModel(c, c.Args().First(), b, spec)
	if err != nil {
		return err
	}
	defer l.Close()
	tok, err := formats.TokenizerFor(l.src)
	if err != nil {
		return err
	}
	ids, err := tok.Encode(c.String("prompt"))
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usagef("generate: the prompt encodes to no tokens")
	}
	warnLength(c, l.src.Config, len(ids)+c.Int("max-new-tokens"), "prompt plus generation")
	asJSON := c.Bool("json")
	w := c.App.Writer
	if !asJSON {
		fmt.Fprint(w, c.String("prompt"))
	}
	streamed := 0
	max := c.Int("max-new-tokens")
	g, err := l.model.Generate([][]int32{ids}, graph.GenerateOptions{MaxNewTokens: max, Sampling: s, OnTokens: func(rows [][]int32) {
		if asJSON {
			return
		}
		fresh := rows[0][:min(len(rows[0]), max-streamed)]
		streamed += len(fresh)
		fmt.Fprint(w, tok.Decode(fresh))
	}})
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintln(w)
		say(c, "%d tokens: prefill %.1f ms, decode %.1f tokens/s", max, g.PrefillTime.Seconds()*1e3, float64(max)/(g.PrefillTime+g.DecodeTime).Seconds())
		return nil
	}
	out := map[string]any{
		"backend": spec, "prompt_ids": ids, "pad_tokens": g.PadTokens, "ids": g.Tokens[0], "text": tok.Decode(g.Tokens[0]),
		"prefill_s": g.PrefillTime.Seconds(), "decode_s": g.DecodeTime.Seconds(),
		"tokens_per_s": float64(max) / (g.PrefillTime + g.DecodeTime).Seconds(),
		"sampling":     s,
	}
	js, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintln(w, string(js))
	return nil
}
