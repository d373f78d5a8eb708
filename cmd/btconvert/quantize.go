package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/quant"
)

func quantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "quantize a model's weights to int8, int4 or llama.cpp's block types",
		ArgsUsage: "MODEL",
		Description: `Writes a new model folder whose linear weights (both decoders, the expansion layer and the
output head) are quantized: int8 per output channel, int4 per group, or llama.cpp's block types;
its token tables become int8 (a lookup unpacks only the rows it reads); LayerNorms and biases are
never quantized; --tensor-type overrides any of it. --dry-run prints the plan only; the same table
ends a real run.

--type takes (in any case):
  int8, int4       btconvert's own; int4 is groups of 64 with a scale and a minimum unless
                   --group-size or --sym say otherwise. Without --type (or --q-bits) it is int4:
                   what mlx-lm's convert -q writes by default.
  q8_0 q4_0 q4_1   llama.cpp's blocks of 32 weights with an f16 scale (q4_1: and a minimum),
                   8.5 / 4.5 / 5 bits per weight.
  q4_k q6_k        llama.cpp's k-quants: super-blocks of 256 with quantized sub-block scales,
                   4.5 / 6.5625 bits per weight. A row whose length is not a multiple of 256 is
                   written as q4_1 for q4_k and q8_0 for q6_k, as llama.cpp does (it takes q5_0
                   for q4_k); a --tensor-type asking a k-quant for such rows is refused.
llama.cpp's types are rounded as its reference quantizers round them (no search, no calibration;
for the k-quants, a llama.cpp build that fuses multiply-adds differs in a few blocks in a hundred).
mlx-lm's --q-bits 8|4 and --q-group-size are accepted too. Other llama.cpp and mlx-lm names
(q4_k_m, q5_0, iq4_xs, 4bit, bf16, ...) are refused saying what to use instead.

Examples:
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-int4                  # int4, groups of 64: the default
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-q8 --type int8
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-g128 --group-size 128 --calib /usr/share/common-licenses/GPL-2
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-q8_0 --type q8_0
   ./btconvert quantize out/b4_5 -o out/b4_5-q4_k_m --type q4_k --tensor-type 'dense_4h_to_h\.weight$=q6_k'   # like Q4_K_M
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-mixed --tensor-type 'embed_out\.weight$=int8' --dry-run`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder"},
			&cli.StringFlag{Name: "type", Value: defaultQuantType, Usage: "int8, int4, or llama.cpp's q8_0, q4_0, q4_1, q4_k, q6_k; int4 is groups of 64 with a scale and a minimum unless --group-size or --sym say otherwise (mlx-lm's default)"},
			&cli.IntFlag{Name: "q-bits", Usage: "mlx-lm spelling: 8 (int8) or 4 (int4)"},
			&cli.IntFlag{Name: "group-size", Aliases: []string{"q-group-size"}, Usage: "int4 group size: 32, 64 or 128 (default: 64; llama.cpp's types have blocks of their own)"},
			&cli.BoolFlag{Name: "sym", Usage: "int4 symmetric (q in -8..7) instead of scale + minimum"},
			&cli.BoolFlag{Name: "no-search", Usage: "plain round-to-nearest instead of the scale search"},
			&cli.StringFlag{Name: "scale-dtype", Value: "f32", Usage: "f32 or f16 scales"},
			&cli.StringFlag{Name: "calib", Usage: "text file to run the model over: its statistics drive GPTQ (or the search with --calib-method imatrix)"},
			&cli.IntFlag{Name: "calib-window", Value: 256, Usage: "calibration window in tokens"},
			&cli.StringFlag{Name: "calib-method", Value: "gptq", Usage: "with --calib: gptq (error feedback through E[x x^T]) or imatrix (per-column importance in the scale search)"},
			&cli.StringFlag{Name: "calib-out", Usage: "save the calibration statistics to this file (reuse with --calib-stats)"},
			&cli.StringFlag{Name: "calib-stats", Usage: "reuse statistics saved with --calib-out instead of running --calib"},
			&cli.StringSliceFlag{Name: "tensor-type", Usage: "REGEX=TYPE override on component/name (repeatable, last match wins; TYPE f32 bf16 f16 int8 int4 q8_0 q4_0 q4_1 q4_k q6_k, any case)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, write nothing"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output folder (never one that is or holds the input)"},
			jsonFlag, quietFlag,
		}, runFlags...),
		Action: runQuantize,
	}
}

// defaultQuantType is what mlx-lm's convert -q writes by default (4 bits, groups of 64, a scale
// and a bias per group): int4 at its default group size, asymmetric.
const defaultQuantType = "int4"

// quantType reads --type / --q-bits (mlx-lm's): the library knows the schemes and the names
// llama.cpp users know (quant.Presets); the names it does not offer are explained here.
func quantType(c *cli.Context) (quant.Type, error) {
	t := quant.Type(strings.ToLower(c.String("type")))
	if why := explainQuantType(string(t)); why != "" {
		return "", usagef("--type %q: %s", c.String("type"), why)
	}
	if c.IsSet("q-bits") {
		bits, err := quant.TypeForBits(c.Int("q-bits"))
		if err != nil {
			return "", err
		}
		if !c.IsSet("type") {
			t = bits
		} else if r, err := (quant.Settings{Type: t}).Resolve(); err != nil || r.Type.Scheme().Bits != bits.Scheme().Bits {
			return "", usagef("--q-bits %d disagrees with --type %s", c.Int("q-bits"), c.String("type"))
		}
	}
	return t, nil
}

func runQuantize(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	typ, err := quantType(c)
	if err != nil {
		return err
	}
	s := quant.Settings{Type: typ, GroupSize: c.Int("group-size"), Symmetric: c.Bool("sym"), Search: !c.Bool("no-search"), F16Scales: c.String("scale-dtype") == "f16"}
	if sd := c.String("scale-dtype"); sd != "f32" && sd != "f16" {
		return usagef("--scale-dtype %q: want f32 or f16", sd)
	}
	for _, t := range c.StringSlice("tensor-type") {
		if i := strings.LastIndex(t, "="); i > 0 {
			if why := explainQuantType(t[i+1:]); why != "" && !strings.HasPrefix(why, "a storage dtype") {
				return usagef("--tensor-type %q: %s", t, why)
			}
		}
		ov, err := quant.ParseOverride(t)
		if err != nil {
			return err
		}
		s.Overrides = append(s.Overrides, ov)
	}
	if err := s.Validate(); err != nil { // before the usage checks: a type llama.cpp names is explained first
		return err
	}
	if c.String("output") == "" && !c.Bool("dry-run") {
		return usagef("quantize: --output DIR is required")
	}
	if c.IsSet("calib-window") && c.Int("calib-window") < 1 {
		return usagef("--calib-window %d: must be positive", c.Int("calib-window"))
	}
	o := btconvert.QuantizeOptions{Source: c.Args().First(), Output: c.String("output"), Open: openOptions(c), Settings: s,
		Calib: c.String("calib"), CalibMethod: btconvert.CalibMethod(c.String("calib-method")), CalibWindow: c.Int("calib-window"),
		CalibStats: c.String("calib-stats"), CalibOut: c.String("calib-out"), Runtime: runtimeOf(c),
		Force: c.Bool("force"), DryRun: c.Bool("dry-run"), Version: btconvert.Version().Version, UI: uiOf(c)}
	res, err := btconvert.Quantize(o)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, res)
	}
	if !res.DryRun {
		say(c, "wrote %s (%s, %s)", res.Output, res.Provenance.Type, res.Provenance.Method)
		if n, of := res.Plan.Fallbacks(); n > 0 {
			sc := res.Plan.Settings.Type.Scheme()
			say(c, "%d of the %d tensors planned as %s are %s: their rows are not whole blocks of %d (the plan's notes)", n, of, sc.Type, sc.Fallback, sc.GGML.Values)
		}
		if res.CollectSecs > 0 {
			say(c, "calibration %.1f s, quantizing and writing %.1f s", res.CollectSecs, res.WriteSecs)
		}
		if c.Bool("quiet") { // the plan is what --dry-run asks for; a quiet run prints nothing
			return nil
		}
	}
	return res.Plan.Print(c.App.Writer)
}
