package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/formats/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a randomly initialised model (paper presets or any shape) for benchmarking",
		Description: `Writes a btconvert model folder with the official random initialisation (normal std 0.02
for weights, zero biases, LayerNorms 1/0), reproducible for a --seed. --list shows the presets: the
official configs, each a base model's HF config with its YAML's keys set on top.

A shape is resolved as the official code resolves a YAML: the --base model's HF config (default
pythia-410m-deduped: 16 heads, FFN 4096), then every shape flag given set on top of it.

Examples:
   btconvert init --list
   btconvert init --preset block_main_b4_85 -o out/b4_85 --dtype bf16
   btconvert init --hidden 256 --heads 4 --ffn 1024 --block-layers 2 --token-layers 2 --vocab 1024 -o out/small`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "list", Usage: "list the presets with heads, FFN and parameter counts"},
			&cli.StringFlag{Name: "preset", Usage: "paper configuration (see --list)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "storage dtype: f32 or bf16"},
			&cli.StringFlag{Name: "base", Usage: "base model whose HF config the shape flags override (default " + arch.DefaultBase + ")"},
			&cli.IntFlag{Name: "hidden", Usage: "hidden size D (overrides the preset)"},
			&cli.IntFlag{Name: "heads", Usage: "attention heads (default: the base model's)"},
			&cli.IntFlag{Name: "ffn", Usage: "intermediate (FFN) size (default: the base model's)"},
			&cli.IntFlag{Name: "block-layers", Usage: "block decoder layers"},
			&cli.IntFlag{Name: "token-layers", Usage: "token decoder layers"},
			&cli.IntFlag{Name: "layers", Usage: "layers of a vanilla model"},
			&cli.IntFlag{Name: "block-length", Value: 4, Usage: "block length L_B"},
			&cli.IntFlag{Name: "vocab", Usage: "vocabulary size (default: the base model's, 50304)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output folder"},
			jsonFlag, quietFlag,
		},
		Action: runInit,
	}
}

// presetRow is one preset as init --list shows it.
type presetRow struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Base    string `json:"base"`
	Hidden  int    `json:"hidden_size"`
	Layers  string `json:"layers"`
	Heads   int    `json:"heads"`
	HeadDim int    `json:"head_dim"`
	FFN     int    `json:"intermediate_size"`
	Params  int64  `json:"params"`
}

func runInit(c *cli.Context) error {
	if c.Bool("list") {
		var rows []presetRow
		for _, p := range arch.Presets {
			cfg, err := p.Shape().Config()
			if err != nil {
				return err
			}
			d, layers := cfg.Decoder, ""
			if cfg.IsBlock() {
				d, layers = cfg.BlockDecoder, fmt.Sprintf("%d + %d", cfg.BlockDecoder.Layers, cfg.TokenDecoder.Layers)
			} else {
				layers = fmt.Sprint(d.Layers)
			}
			rows = append(rows, presetRow{p.Name, string(cfg.Kind), p.Base, d.Hidden, layers, d.Heads, d.HeadDim, d.Intermediate, arch.ParamCount(cfg)})
		}
		if c.Bool("json") {
			return printJSON(c, rows)
		}
		t := tablewriter.NewWriter(c.App.Writer)
		t.Header("preset", "kind", "base", "hidden", "layers", "heads x head dim", "ffn", "params")
		for _, r := range rows {
			t.Append(r.Name, r.Kind, r.Base, fmt.Sprint(r.Hidden), r.Layers, fmt.Sprintf("%d x %d", r.Heads, r.HeadDim), fmt.Sprint(r.FFN),
				humanize.SIWithDigits(float64(r.Params), 2, ""))
		}
		return t.Render()
	}
	var shape arch.Shape
	if name := c.String("preset"); name != "" {
		p, err := arch.FindPreset(name)
		if err != nil {
			return err
		}
		shape = p.Shape()
	} else if !c.IsSet("hidden") && !c.IsSet("base") {
		return usagef("init: give --preset NAME (see --list) or a shape (--base and/or --hidden with --layers, or --block-layers and --token-layers)")
	} else {
		shape = arch.Shape{Block: c.IsSet("block-layers") || c.IsSet("token-layers"), BlockLength: 4, Origin: "init flags"}
	}
	for flag, dst := range map[string]*int{"hidden": &shape.Hidden, "heads": &shape.Heads, "ffn": &shape.FFN, "block-layers": &shape.BlockLayers,
		"token-layers": &shape.TokenLayers, "layers": &shape.Layers, "block-length": &shape.BlockLength, "vocab": &shape.Vocab} {
		if c.IsSet(flag) {
			if c.Int(flag) < 1 {
				return usagef("--%s %d: must be at least 1", flag, c.Int(flag))
			}
			*dst = c.Int(flag)
		}
	}
	if c.IsSet("base") {
		shape.Base = c.String("base")
	}
	if c.IsSet("layers") && c.String("preset") != "" {
		shape.Block, shape.BlockLayers, shape.TokenLayers = false, 0, 0
	}
	if c.IsSet("hidden") || c.IsSet("block-length") {
		shape.EmbedderDim = 0
	}
	dt, err := safetensors.ParseDType(c.String("dtype"))
	if err != nil || (dt != safetensors.F32 && dt != safetensors.BF16) {
		return usagef("--dtype %q: want f32 or bf16", c.String("dtype"))
	}
	if c.String("output") == "" {
		return usagef("init: --output DIR is required")
	}
	res, err := btconvert.Init(btconvert.InitOptions{Shape: shape, Seed: c.Uint64("seed"), DType: dt, Output: c.String("output"),
		Force: c.Bool("force"), Version: btconvert.Version().Version, UI: uiOf(c)})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, res)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: %s parameters, %s\n", res.Output, humanize.SIWithDigits(float64(res.Params), 2, ""), humanize.IBytes(uint64(res.Bytes)))
	return nil
}
