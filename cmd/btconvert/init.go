package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a randomly initialised model (paper presets or any shape) for benchmarking",
		Description: `Writes a btconvert model folder with the official random initialisation (normal std 0.02
for weights, zero biases, LayerNorms 1/0), reproducible for a --seed. --list shows the presets: the
official configs (main, MEGABYTE and vanilla), resolved exactly as an import of their YAML is.

A shape is resolved as the official code resolves a YAML that states it: for a Block model the
official fill-in gives the heads and FFN not given (heads of 32 up to width 256, 64 up to 1536,
128 above; FFN 4 x hidden), then the --base model's HF config (default pythia-410m-deduped) gives
the rest. A vanilla shape takes what it does not give from the base model.

Examples:
   ./btconvert init --list
   ./btconvert init --preset block_main_b4_85 -o out/b4_85 --dtype bf16
   ./btconvert init --hidden 256 --heads 4 --ffn 1024 --block-layers 2 --token-layers 2 --vocab 1024 -o out/small`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "list", Usage: "list the presets: each decoder's width, heads, FFN and layers, and parameter counts"},
			&cli.StringFlag{Name: "preset", Usage: "paper configuration (see --list)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "storage dtype: f32 or bf16"},
			&cli.StringFlag{Name: "base", Usage: "base model whose HF config the shape flags override (default " + arch.DefaultBase + ")"},
			&cli.IntFlag{Name: "hidden", Usage: "hidden size D (overrides the preset)"},
			&cli.IntFlag{Name: "heads", Usage: "attention heads of each decoder (default: the official fill-in for a Block model, the base model's for a vanilla one)"},
			&cli.IntFlag{Name: "ffn", Usage: "intermediate (FFN) size (default: 4 x hidden for a Block model, the base model's for a vanilla one)"},
			&cli.IntFlag{Name: "block-layers", Usage: "block decoder layers"},
			&cli.IntFlag{Name: "token-layers", Usage: "token decoder layers"},
			&cli.IntFlag{Name: "layers", Usage: "layers of a vanilla model"},
			&cli.IntFlag{Name: "block-length", Usage: "block length L_B (default: the preset's, else 4)"},
			&cli.IntFlag{Name: "embedder-dim", Usage: "width of the embedder's token vectors (default: hidden / block length, the concat embedder)"},
			&cli.IntFlag{Name: "expansion-ratio", Usage: "token decoder prefix vectors per block context (default: the preset's, else 2)"},
			&cli.IntFlag{Name: "vocab", Usage: "vocabulary size (default: the base model's, 50304)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output folder"},
			jsonFlag, quietFlag,
		},
		Action: runInit,
	}
}

// presetRow is one preset as init --list --json shows it.
type presetRow struct {
	Name         string            `json:"name"`
	Architecture arch.Architecture `json:"architecture"`
	Base         string            `json:"base"`
	Params       int64             `json:"params"`
}

func runInit(c *cli.Context) error {
	if c.Bool("list") {
		return listPresets(c)
	}
	var shape arch.Shape
	if name := c.String("preset"); name != "" {
		p, err := arch.FindPreset(name)
		if err != nil {
			return err
		}
		shape = p
	} else if !c.IsSet("hidden") && !c.IsSet("base") {
		return usagef("init: give --preset NAME (see --list) or a shape (--base and/or --hidden with --layers, or --block-layers and --token-layers)")
	} else {
		shape = arch.Shape{Block: c.IsSet("block-layers") || c.IsSet("token-layers") || c.IsSet("block-length") || c.IsSet("embedder-dim") || c.IsSet("expansion-ratio")}
	}
	for flag, dst := range map[string]*int{"hidden": &shape.Hidden, "heads": &shape.Heads, "ffn": &shape.FFN, "block-layers": &shape.BlockLayers,
		"token-layers": &shape.TokenLayers, "layers": &shape.Layers, "block-length": &shape.BlockLength, "vocab": &shape.Vocab,
		"embedder-dim": &shape.EmbedderDim, "expansion-ratio": &shape.ExpansionRatio} {
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

// listPresets prints the presets: each decoder's width, heads, FFN and layers.
func listPresets(c *cli.Context) error {
	var rows []presetRow
	for _, name := range arch.Presets {
		p, _ := arch.FindPreset(name)
		cfg, err := p.Config()
		if err != nil {
			return err
		}
		base := ""
		if cfg.Source != nil {
			base = cfg.Source.BaseModels[cfg.Components()[len(cfg.Components())-1]]
		}
		rows = append(rows, presetRow{Name: name, Architecture: cfg.Summary(), Base: base, Params: arch.ParamCount(cfg)})
	}
	if c.Bool("json") {
		return printJSON(c, rows)
	}
	stack := func(d *arch.StackSummary) string {
		if d == nil {
			return ""
		}
		return fmt.Sprintf("%d x D %d, %d x %d heads, FFN %d", d.Layers, d.HiddenSize, d.Heads, d.HeadDim, d.IntermediateSize)
	}
	t := tablewriter.NewWriter(c.App.Writer)
	t.Header("preset", "block decoder / decoder", "token decoder", "decoding", "params")
	for _, r := range rows {
		a := r.Architecture
		first, dec := a.Decoder, "vanilla"
		if a.BlockDecoder != nil {
			first, dec = a.BlockDecoder, fmt.Sprintf("%s r=%d", a.TokenDecoder.Decoding, a.TokenDecoder.ExpansionRatio)
		}
		t.Append(r.Name, stack(first), stack(a.TokenDecoder), dec, humanize.SIWithDigits(float64(r.Params), 2, ""))
	}
	return t.Render()
}
