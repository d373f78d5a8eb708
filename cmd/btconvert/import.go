package main

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/uptrain"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "convert a checkpoint into a btconvert model folder",
		ArgsUsage: "SRC",
		Description: `SRC is a .safetensors file or a folder: ` + source.Describe() + `. Tokenizer files
beside SRC (tokenizer.json, or vocab.json + merges.txt) are carried along.

The architecture comes from the config.yaml beside the weights, or --config: a YAML file, or the
name of an official config (the official download folders hold only the weights). Each is resolved
as the official code resolves it (docs/FORMAT.md). Heads and the decoding strategy cannot be read
off the weights: without a config, give --heads (and --decoding where the weights fit both).

Official configs by name: ` + strings.Join(arch.ReleasedNames(), ", ") + `.

With --from-vanilla, a vanilla model is turned into the initialisation of a Block Transformer (the
paper's uptraining recipe) whose decoders are of its family (` + strings.Join(arch.Families(), ", ") + `); --config then
names the Block config it trains (e.g. block_uptrain_b4_800_10: its heads, layers and expansion),
else the flags below give the shape and the vanilla model's heads are kept.

An official download folder is imported with its config named: import DIR --config
block_main_b4_85 -o out/b4_85; a checkpoint without any config with its heads: import DIR --heads 12
-o out/model.

Examples:
   ./btconvert import fixtures/bt-tiny -o out/bt-tiny-bf16 --dtype bf16
   ./btconvert import fixtures/bt-tiny/model.safetensors --config fixtures/bt-tiny/config.yaml --dry-run
   ./btconvert import fixtures/pythia-tiny -o out/pythia-tiny-f32 --dtype f32
   ./btconvert import fixtures/pythia-tiny --from-vanilla --block-length 4 --method partition -o out/bt-up-partition`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder"},
			threadsFlag,
			&cli.StringFlag{Name: "dtype", Value: "keep", Usage: "storage dtype of the weights: keep, f32, bf16 or f16"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output folder (never one that is or holds the input)"},
			configFlag, headsFlag, decodingFlag,
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json (or vocab.json with merges.txt beside it) to carry into the model folder"},
			&cli.BoolFlag{Name: "from-vanilla", Usage: "initialise a Block Transformer from a vanilla model (GPT-NeoX or Llama-family)"},
			&cli.IntFlag{Name: "block-length", Usage: "block length L_B (with --from-vanilla; default 4)"},
			&cli.StringFlag{Name: "method", Value: "partition", Usage: "layer assignment: partition, skip or duplicate (with --from-vanilla)"},
			&cli.IntFlag{Name: "block-layers", Usage: "block decoder layers (with --from-vanilla; default: the method's)"},
			&cli.IntFlag{Name: "expansion-ratio", Usage: "prefix vectors r (with --from-vanilla; default 2)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check the source and print what would be written, write nothing"},
			jsonFlag, quietFlag,
		},
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	if err := needArgs(c, 1, "one SRC"); err != nil {
		return err
	}
	dtype, err := storageDType(c, safetensors.F32, safetensors.BF16, safetensors.F16)
	if err != nil {
		return err
	}
	if c.String("output") == "" && !c.Bool("dry-run") {
		return usagef("import: --output DIR is required")
	}
	o := btconvert.ImportOptions{Source: c.Args().First(), Output: c.String("output"), Open: openOptions(c), DType: dtype,
		Force: c.Bool("force"), DryRun: c.Bool("dry-run"), Tokenizer: c.String("tokenizer"), Version: btconvert.Version().Version, UI: uiOf(c)}
	if c.Bool("from-vanilla") {
		for _, f := range []string{"block-length", "expansion-ratio"} {
			if c.IsSet(f) && c.Int(f) < 1 {
				return usagef("--%s %d: must be at least 1", f, c.Int(f))
			}
		}
		o.Uptrain = &uptrain.Options{BlockLength: c.Int("block-length"), Method: uptrain.Method(c.String("method")),
			BlockLayers: c.Int("block-layers"), ExpansionRatio: c.Int("expansion-ratio")}
	} else {
		for _, f := range []string{"block-length", "method", "block-layers", "expansion-ratio"} {
			if c.IsSet(f) {
				return usagef("--%s only applies with --from-vanilla", f)
			}
		}
	}
	res, err := btconvert.Import(o)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, res)
	}
	say(c, "%s (%s)", res.Architecture, res.Format)
	if res.DryRun {
		what := fmt.Sprintf("%d tensors (%s)", res.Tensors, humanize.IBytes(uint64(res.Bytes)))
		if res.Output == "" {
			say(c, "dry run: the source reads as a model of %s; nothing written", what)
		} else {
			say(c, "dry run: would write %s to %s", what, res.Output)
		}
		return nil
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: %d tensors, %s\n", res.Output, res.Tensors, humanize.IBytes(uint64(res.Bytes)))
	return nil
}
