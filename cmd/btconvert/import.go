package main

import (
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "convert a checkpoint into a btconvert model directory",
		ArgsUsage: "SRC",
		Description: `SRC is a .safetensors file or a folder: an official Block Transformer checkpoint
(model.safetensors or shards, with config.yaml beside it or --config; without one the architecture is
inferred from the tensor shapes), or an HF GPT-NeoX / Pythia folder (config.json + safetensors).
With --from-vanilla, a GPT-NeoX model is turned into the initialisation of a Block Transformer
(the paper's uptraining recipe).

Examples:
   btconvert import fixtures/bt-tiny -o out/bt-tiny
   btconvert import fixtures/pythia-tiny -o out/pythia-tiny --dtype f32
   btconvert import fixtures/pythia-tiny --from-vanilla --block-length 4 --method partition -o out/bt-up`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output directory"},
			&cli.StringFlag{Name: "dtype", Value: "keep", Usage: "weight dtype: keep, f32, bf16 or f16"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output directory"},
			configFlag, headsFlag,
			&cli.BoolFlag{Name: "from-vanilla", Usage: "initialise a Block Transformer from a vanilla GPT-NeoX model"},
			&cli.IntFlag{Name: "block-length", Value: 4, Usage: "block length L_B (with --from-vanilla)"},
			&cli.StringFlag{Name: "method", Value: "partition", Usage: "layer assignment: partition, skip or duplicate (with --from-vanilla)"},
			&cli.IntFlag{Name: "block-layers", Usage: "block decoder layers (with --from-vanilla; default: the method's)"},
			&cli.IntFlag{Name: "expansion-ratio", Value: 2, Usage: "prefix vectors r (with --from-vanilla)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check the source and print what would be written, write nothing"},
			quietFlag,
		},
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	if err := needArgs(c, 1, "one SRC"); err != nil {
		return err
	}
	var dtype formats.DType
	if d := c.String("dtype"); d != "keep" {
		var err error
		if dtype, err = formats.ParseDType(d); err != nil || dtype == formats.F64 {
			return usagef("--dtype %q: want keep, f32, bf16 or f16", d)
		}
	}
	if c.String("output") == "" && !c.Bool("dry-run") {
		return usagef("import: --output DIR is required")
	}
	if !c.Bool("from-vanilla") {
		for _, f := range []string{"block-length", "method", "block-layers", "expansion-ratio"} {
			if c.IsSet(f) {
				return usagef("--%s only applies with --from-vanilla", f)
			}
		}
	}
	if !c.Bool("dry-run") {
		if err := formats.CheckOutput(c.String("output"), c.Bool("force")); err != nil {
			return err
		}
	}
	m, err := formats.Open(c.Args().First(), openOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	if c.Bool("from-vanilla") {
		if m, err = formats.Uptrain(m, formats.UptrainOptions{BlockLength: c.Int("block-length"), Method: c.String("method"),
			BlockLayers: c.Int("block-layers"), ExpansionRatio: c.Int("expansion-ratio")}); err != nil {
			if !formats.IsInputError(err) {
				err = usagef("%v", err)
			}
			return err
		}
	}
	for _, n := range m.Notes {
		say(c, "note: %s", n)
	}
	say(c, "%s (%s)", m.Config.Describe(), m.Format)
	var total int64
	for _, t := range m.Tensors {
		total += t.NumElements() * int64(dtypeOr(dtype, t.DType).Size())
	}
	out := c.String("output")
	if c.Bool("dry-run") {
		if out == "" {
			out = "(no --output given)"
		}
		say(c, "dry run: would write %d tensors (%s) to %s", len(m.Tensors), humanBytes(total), out)
		return nil
	}
	prog, done := progress(c, total, "import")
	err = formats.WriteModel(m, out, formats.WriteOptions{DType: dtype, Force: c.Bool("force"), Progress: prog, Version: version})
	done()
	if err != nil {
		return err
	}
	say(c, "wrote %s: %d tensors, %s", out, len(m.Tensors), humanBytes(total))
	return nil
}

func dtypeOr(d, def formats.DType) formats.DType {
	if d == "" {
		return def
	}
	return d
}
