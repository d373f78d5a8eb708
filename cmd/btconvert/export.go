package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/formats/safetensors"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write the artifact you deploy: the official PyTorch layout or a verified .btz bundle",
		ArgsUsage: "MODEL",
		Description: `--format official: a Block Transformer as the official checkpoint (model.safetensors with the
official names, config.yaml in the official Hydra schema stating every architecture key); a vanilla
model as an HF folder of its family (GPT-NeoX, or Llama / Mistral / Qwen2: config.json +
model.safetensors). A Block Transformer with Llama-family decoders has no official layout: export
it as a bundle. Quantized tensors are dequantized.

--format bundle: one OUT.btz file, the model folder as a zstd-compressed tar with its manifest
(sha256 of every file) and its recorded verification report (verify --record). inspect, verify,
generate and export read a .btz directly. A bundle guarantees integrity, not authorship: it is not
signed.

A quantized model is exported only with a recorded report that passed and measured quality against
its base model on a text (or with --skip-verify). The artifact's size and sha256 are printed.

Examples:
   ./btconvert export out/bt-tiny -o out/bt-tiny-export --format official
   ./btconvert quantize out/bt-tiny -o out/bt-tiny-int8 --type int8
   ./btconvert verify out/bt-tiny-int8 --against out/bt-tiny --eval-text /usr/share/common-licenses/GPL-3 --record
   ./btconvert export out/bt-tiny-int8 -o out/bt-tiny-int8.btz`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder (official) or .btz file (bundle)"},
			threadsFlag,
			&cli.StringFlag{Name: "format", Usage: "official or bundle (default: bundle for an --output ending in .btz)"},
			&cli.StringFlag{Name: "dtype", Usage: "official: storage dtype f32, bf16 or f16 (default: as stored; dequantized tensors f32)"},
			&cli.StringFlag{Name: "shard-size", Usage: "official: largest shard, e.g. 2GB or 500MiB (default: one file)"},
			&cli.BoolFlag{Name: "skip-verify", Usage: "export a quantized model without a passing verification report"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output (never one that is or holds the input)"},
			configFlag, headsFlag, decodingFlag,
			jsonFlag, quietFlag,
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	dtype, err := storageDType(c, safetensors.F32, safetensors.BF16, safetensors.F16)
	if err != nil {
		return err
	}
	shard, err := parseSize("shard-size", c.String("shard-size"))
	if err != nil {
		return err
	}
	if c.String("output") == "" {
		return usagef("export: --output is required")
	}
	res, err := btconvert.Export(btconvert.ExportOptions{Source: c.Args().First(), Output: c.String("output"), Format: btconvert.ExportFormat(c.String("format")),
		Open: openOptions(c), DType: dtype, ShardSize: shard, SkipVerify: c.Bool("skip-verify"), Force: c.Bool("force"),
		Version: btconvert.Version().Version, UI: uiOf(c)})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, res)
	}
	w := c.App.Writer
	what := "bundle"
	if res.Format == btconvert.Official {
		what = res.Layout + " layout"
	}
	fmt.Fprintf(w, "wrote %s (%s, %s)\n", res.Output, what, humanize.IBytes(uint64(res.Size)))
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %s  %s  %s\n", f.SHA256, humanize.IBytes(uint64(f.Size)), f.Name)
	}
	return nil
}
