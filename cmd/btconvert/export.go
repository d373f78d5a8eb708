package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/quant"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write the artifact you deploy: the official PyTorch layout or a verified .btz bundle",
		ArgsUsage: "MODEL",
		Description: `--format official: a Block Transformer as the official checkpoint (model.safetensors with the
official names, config.yaml in the official Hydra schema); a vanilla model as an HF GPT-NeoX folder
(config.json + model.safetensors). Quantized tensors are dequantized.

--format bundle: one OUT.btz file, the model directory as a zstd-compressed tar with its manifest
(sha256 of every file) and its recorded verification report (verify --record). inspect, verify,
generate and export read a .btz directly.

A quantized model is exported only with a passing recorded report (or --skip-verify).

Examples:
   btconvert export out/bt-tiny -o out/bt-tiny-official --format official
   btconvert verify out/bt-tiny-q8 --against out/bt-tiny --eval-text /usr/share/common-licenses/GPL-3 --record
   btconvert export out/bt-tiny-q8 -o out/bt-tiny-q8.btz --format bundle`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output folder (official) or .btz file (bundle)"},
			&cli.StringFlag{Name: "format", Usage: "official or bundle"},
			&cli.StringFlag{Name: "dtype", Usage: "official: f32, bf16 or f16 (default: as stored; dequantized tensors f32)"},
			&cli.StringFlag{Name: "shard-size", Usage: "official: largest shard, e.g. 2GB or 500MiB (default: one file)"},
			&cli.BoolFlag{Name: "skip-verify", Usage: "export a quantized model without a passing verification report"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output"},
			configFlag, headsFlag,
			quietFlag,
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	out, format := c.String("output"), c.String("format")
	if out == "" {
		return usagef("export: --output is required")
	}
	if format != "official" && format != "bundle" {
		return usagef("export: --format %q: want official or bundle", format)
	}
	var dtype formats.DType
	if d := c.String("dtype"); d != "" {
		var err error
		if dtype, err = formats.ParseDType(d); err != nil || dtype == formats.F64 || format == "bundle" {
			return usagef("--dtype %q: want f32, bf16 or f16 (official format only)", d)
		}
	}
	shard, err := parseSize(c.String("shard-size"))
	if err != nil || (shard != 0 && format == "bundle") {
		return usagef("--shard-size %q: want a size like 2GB or 500MiB (official format only)", c.String("shard-size"))
	}
	if format == "bundle" && !strings.HasSuffix(out, formats.BundleExt) {
		out += formats.BundleExt
	}
	if err := formats.CheckOutput(out, c.Bool("force")); err != nil {
		return err
	}
	m, err := formats.Open(c.Args().First(), openOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	if len(m.Config.Quantization) > 0 && !c.Bool("skip-verify") {
		if err := requirePassingReport(m, c.Args().First()); err != nil {
			return err
		}
	}
	var total int64
	for _, t := range m.Tensors {
		total += t.Bytes()
	}
	prog, done := progress(c, total, "export")
	defer done()
	if format == "official" {
		to := dtype
		if to == "" {
			to = formats.F32
		}
		plain, err := quant.Dequantized(m, to)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(filepath.Clean(c.Args().First())), formats.BundleExt)
		if err := formats.ExportOfficial(plain, out, formats.ExportOptions{DType: dtype, ShardSize: shard, Force: c.Bool("force"), Progress: prog, Name: name}); err != nil {
			return err
		}
		done()
		say(c, "wrote %s (%s layout)", out, map[bool]string{true: "official Block Transformer", false: "HF GPT-NeoX"}[m.Config.IsBlock()])
		return nil
	}
	dir := m.Path
	if m.Format != formats.FormatName && m.Bundle == "" {
		// A checkpoint: import it into a temp directory first.
		tmp, err := os.MkdirTemp("", "btconvert-export-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "model")
		if err := formats.WriteModel(m, dir, formats.WriteOptions{Version: version}); err != nil {
			return err
		}
	}
	if rep, _, err := formats.ReadReport(dir); err != nil {
		return err
	} else if rep == nil {
		say(c, "note: %s has no recorded verification report (btconvert verify MODEL --record adds one)", c.Args().First())
	}
	if err := formats.WriteBundle(dir, out, c.Bool("force"), prog); err != nil {
		return err
	}
	done()
	say(c, "wrote %s", out)
	return nil
}

// requirePassingReport refuses a quantized model without a passing recorded verification.
func requirePassingReport(m *formats.Model, arg string) error {
	rep, _, err := formats.ReadReport(m.Path)
	if err != nil {
		return err
	}
	how := fmt.Sprintf("run: btconvert verify %s --against BASE --eval-text FILE --record (or pass --skip-verify)", arg)
	switch {
	case rep == nil:
		return &formats.InputError{File: arg, Msg: "is quantized and has no recorded verification report; " + how}
	case !rep.Pass:
		return &formats.InputError{File: arg, Msg: "is quantized and its recorded verification report failed; " + how}
	}
	return nil
}

// parseSize reads 2GB, 500MiB, 1000000 (bytes); "" is 0.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suf string
		mul int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suf) {
			s, mul = strings.TrimSuffix(s, u.suf), u.mul
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size")
	}
	return int64(v * float64(mul)), nil
}
