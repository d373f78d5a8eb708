package main

import (
	"fmt"

	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a randomly initialised model (paper presets or any shape) for benchmarking",
		Description: `Writes a btconvert model directory with the official random initialisation (normal std 0.02
for weights, zero biases, LayerNorms 1/0), reproducible for a --seed. --list shows the presets.

Examples:
   btconvert init --list
   btconvert init --preset block_main_b4_85 -o out/b4_85 --dtype bf16
   btconvert init --hidden 256 --heads 4 --ffn 1024 --block-layers 2 --token-layers 2 --vocab 1024 -o out/small

A shape is resolved as the official code resolves a YAML: the --base model's HF config (default
pythia-410m-deduped: 16 heads, FFN 4096), then every shape flag given set on top of it.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "list", Usage: "list the presets with their parameter counts"},
			&cli.StringFlag{Name: "preset", Usage: "paper configuration (see --list)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output directory"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "f32 or bf16"},
			&cli.StringFlag{Name: "base", Usage: "base model whose HF config the shape flags override (default " + formats.DefaultBase + ")"},
			&cli.IntFlag{Name: "hidden", Usage: "hidden size D (overrides the preset)"},
			&cli.IntFlag{Name: "heads", Usage: "attention heads (default: the base model's)"},
			&cli.IntFlag{Name: "ffn", Usage: "intermediate (FFN) size (default: the base model's)"},
			&cli.IntFlag{Name: "block-layers", Usage: "block decoder layers"},
			&cli.IntFlag{Name: "token-layers", Usage: "token decoder layers"},
			&cli.IntFlag{Name: "layers", Usage: "layers of a vanilla model"},
			&cli.IntFlag{Name: "block-length", Value: 4, Usage: "block length L_B"},
			&cli.IntFlag{Name: "vocab", Usage: "vocabulary size (default: the base model's, 50304)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output directory"},
			quietFlag,
		},
		Action: runInit,
	}
}

func runInit(c *cli.Context) error {
	if c.Bool("list") {
		t := tablewriter.NewWriter(c.App.Writer)
		t.Header("preset", "kind", "base", "hidden", "layers", "heads x head dim", "ffn", "params")
		for _, p := range formats.Presets {
			cfg, err := p.Spec().Config()
			if err != nil {
				return err
			}
			d, layers := cfg.Decoder, fmt.Sprint(p.Layers)
			if cfg.IsBlock() {
				d, layers = cfg.BlockDecoder, fmt.Sprintf("%d + %d", cfg.BlockDecoder.Layers, cfg.TokenDecoder.Layers)
			} else {
				layers = fmt.Sprint(d.Layers)
			}
			t.Append(p.Name, cfg.Kind, p.Base, fmt.Sprint(d.Hidden), layers, fmt.Sprintf("%d x %d", d.Heads, d.HeadDim),
				fmt.Sprint(d.Intermediate), humanCount(formats.ParamCount(cfg)))
		}
		return t.Render()
	}
	var spec formats.ShapeSpec
	if name := c.String("preset"); name != "" {
		p, err := formats.FindPreset(name)
		if err != nil {
			return usagef("%v", err)
		}
		spec = p.Spec()
	} else if !c.IsSet("hidden") && !c.IsSet("base") {
		return usagef("init: give --preset NAME (see --list) or a shape (--base and/or --hidden with --layers, or --block-layers and --token-layers)")
	} else {
		spec = formats.ShapeSpec{Block: c.IsSet("block-layers") || c.IsSet("token-layers"), BlockLength: 4, Origin: "init flags"}
	}
	for flag, dst := range map[string]*int{"hidden": &spec.Hidden, "heads": &spec.Heads, "ffn": &spec.FFN, "block-layers": &spec.BlockLayers,
		"token-layers": &spec.TokenLayers, "layers": &spec.Layers, "block-length": &spec.BlockLength, "vocab": &spec.Vocab} {
		if c.IsSet(flag) {
			*dst = c.Int(flag)
		}
	}
	if c.IsSet("base") {
		spec.Base = c.String("base")
	}
	if c.IsSet("layers") && c.String("preset") != "" {
		spec.Block, spec.BlockLayers, spec.TokenLayers = false, 0, 0
	}
	if c.IsSet("hidden") || c.IsSet("block-length") {
		spec.EmbedderDim = 0
	}
	cfg, err := spec.Config()
	if err != nil {
		return usagef("init: %v", err)
	}
	dt, err := formats.ParseDType(c.String("dtype"))
	if err != nil || (dt != formats.F32 && dt != formats.BF16) {
		return usagef("--dtype %q: want f32 or bf16", c.String("dtype"))
	}
	out := c.String("output")
	if out == "" {
		return usagef("init: --output DIR is required")
	}
	m := formats.RandomModel(cfg, c.Uint64("seed"), dt)
	n := formats.ParamCount(cfg)
	say(c, "%s, %s parameters", cfg.Describe(), humanCount(n))
	prog, done := progress(c, n*int64(dt.Size()), "init")
	err = formats.WriteModel(m, out, formats.WriteOptions{Force: c.Bool("force"), Progress: prog, Version: version})
	done()
	if err != nil {
		return err
	}
	say(c, "wrote %s", out)
	return nil
}
