package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a model: architecture, components, tensors",
		ArgsUsage: "PATH",
		Description: `PATH is anything import accepts, or a btconvert model directory.

Examples:
   btconvert inspect fixtures/bt-tiny
   btconvert inspect out/bt-tiny --json | jq .architecture`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with the sha256 of every tensor)"},
			&cli.BoolFlag{Name: "tensors", Usage: "also list every tensor"},
			configFlag, headsFlag,
			quietFlag,
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if err := needArgs(c, 1, "one PATH"); err != nil {
		return err
	}
	m, err := formats.Open(c.Args().First(), openOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := formats.Summarize(m, c.Bool("json"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	if c.Bool("json") {
		b, _ := json.MarshalIndent(s, "", "  ")
		fmt.Fprintln(w, string(b))
		return nil
	}
	fmt.Fprintf(w, "%s\nformat: %s\n", m.Config.Describe(), s.Format)
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(m.Config.Quantization) > 0 {
		fmt.Fprintf(w, "quantized tensors: %d (device weight memory = stored bytes)\n", len(m.Config.Quantization))
	}
	fmt.Fprintln(w)
	t := tablewriter.NewWriter(w)
	t.Header("component", "tensors", "params", "bytes", "dtypes")
	for _, comp := range s.Components {
		t.Append(comp.Name, comp.Tensors, humanCount(comp.Params), humanBytes(comp.Bytes), strings.Join(comp.DTypes, " "))
	}
	t.Footer("total", len(s.Tensors), humanCount(s.TotalParams), humanBytes(s.TotalBytes), "")
	if err := t.Render(); err != nil {
		return err
	}
	if c.Bool("tensors") {
		fmt.Fprintln(w)
		t := tablewriter.NewWriter(w)
		t.Header("component", "tensor", "dtype", "shape", "bytes")
		for _, ts := range s.Tensors {
			t.Append(ts.Component, ts.Name, ts.DType, fmt.Sprint(ts.Shape), humanBytes(ts.Bytes))
		}
		return t.Render()
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
