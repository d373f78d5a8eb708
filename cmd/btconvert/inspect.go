package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/verify"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a model: architecture, components, tensors, quantization, recorded report",
		ArgsUsage: "PATH",
		Description: `PATH is anything import accepts, a btconvert model folder or a .btz bundle.

Examples:
   ./btconvert inspect fixtures/bt-tiny
   ./btconvert inspect out/bt-tiny-q4 --tensors
   ./btconvert inspect out/bt-tiny --json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with the sha256 of every tensor)"},
			&cli.BoolFlag{Name: "tensors", Usage: "also list every tensor"},
			configFlag, headsFlag, decodingFlag,
			quietFlag,
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if err := needArgs(c, 1, "one PATH"); err != nil {
		return err
	}
	res, err := btconvert.Inspect(c.Args().First(), openOptions(c), c.Bool("json"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, res)
	}
	s := res.Summary
	w := c.App.Writer
	fmt.Fprintf(w, "%s\nformat: %s\n", s.Description, s.Format)
	ui := uiOf(c)
	for _, n := range s.Notes { // notes go to stderr, as every command's
		ui.Note("note: " + n)
	}
	if q := res.QuantizedWith; q != nil {
		fmt.Fprintf(w, "quantized: %s\n", q)
	}
	if res.Report != nil {
		fmt.Fprintf(w, "recorded verification report: %s\n", reportLine(res.Report))
	}
	fmt.Fprintln(w)
	t := tablewriter.NewWriter(w)
	t.Header("component", "tensors", "params", "bytes", "dtypes")
	for _, comp := range s.Components {
		t.Append(comp.Name, comp.Tensors, humanize.SIWithDigits(float64(comp.Params), 2, ""), humanize.IBytes(uint64(comp.Bytes)), strings.Join(comp.DTypes, " "))
	}
	t.Footer("total", len(s.Tensors), humanize.SIWithDigits(float64(s.TotalParams), 2, ""), humanize.IBytes(uint64(s.TotalBytes)), "")
	if err := t.Render(); err != nil {
		return err
	}
	if c.Bool("tensors") {
		fmt.Fprintln(w)
		t := tablewriter.NewWriter(w)
		t.Header("component", "tensor", "dtype", "shape", "bytes")
		for _, ts := range s.Tensors {
			t.Append(ts.Component, ts.Name, ts.DType, fmt.Sprint(ts.Shape), humanize.IBytes(uint64(ts.Bytes)))
		}
		return t.Render()
	}
	return nil
}

// reportLine summarises a recorded verification report.
func reportLine(raw []byte) string {
	var r verify.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return "unreadable: " + err.Error()
	}
	var parts []string
	for _, ch := range r.Checks {
		parts = append(parts, fmt.Sprintf("%s %.4g %s %.4g", ch.Name, ch.Value, ch.Op, ch.Limit))
	}
	s := cmp.Or(r.Status, map[bool]string{true: "PASS", false: "FAIL"}[r.Pass])
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if q := r.Quality; q != nil {
		s += fmt.Sprintf("; ppl %.4g on %s", q.PPL, q.Text)
		if q.Divergence != nil {
			s += fmt.Sprintf(" against %s (ratio %.4g, mean KLD %.4g)", q.Base, q.PPLRatio, q.MeanKLD)
		}
	}
	return s + fmt.Sprintf("; %s on %s", r.RecordedBy, r.Backend)
}
