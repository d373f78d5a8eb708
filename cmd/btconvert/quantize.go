package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/verify"
)

func quantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "quantize a model's weights to int8 or int4",
		ArgsUsage: "MODEL",
		Description: `Writes a new model directory whose linear weights (both decoders, the expansion layer and the
output head) are int8 per output channel or int4 per group; LayerNorms and biases are never quantized
and embedding tables are kept unless --tensor-type says int8. --dry-run prints the plan only; the same
table ends a real run.

Examples:
   btconvert quantize out/bt-tiny -o out/bt-tiny-q8 --type int8
   btconvert quantize out/bt-tiny -o out/bt-tiny-q4 --type int4 --group-size 64 --calib /usr/share/common-licenses/GPL-2
   btconvert quantize out/bt-tiny -o x --type int4 --tensor-type 'embed_out\.weight$=int8' --dry-run`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output directory"},
			&cli.StringFlag{Name: "type", Usage: "int8 or int4"},
			&cli.IntFlag{Name: "group-size", Value: 64, Usage: "int4 group size: 32, 64 or 128"},
			&cli.BoolFlag{Name: "sym", Usage: "int4 symmetric (q in -8..7) instead of scale + minimum"},
			&cli.BoolFlag{Name: "no-search", Usage: "plain round-to-nearest instead of the scale search"},
			&cli.StringFlag{Name: "scale-dtype", Value: "f32", Usage: "f32 or f16 scales"},
			&cli.StringFlag{Name: "calib", Usage: "text file: weight the scale search by each input column's mean square on it"},
			&cli.IntFlag{Name: "calib-window", Value: 256, Usage: "calibration window in tokens"},
			&cli.StringFlag{Name: "calib-method", Value: "gptq", Usage: "with --calib: gptq (error feedback through E[x x^T]) or imatrix (per-column importance in the scale search)"},
			&cli.StringSliceFlag{Name: "tensor-type", Usage: "REGEX=TYPE override on component/name (repeatable, last match wins; TYPE f32 bf16 f16 int8 int4)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, write nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan as JSON"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output directory"},
			quietFlag,
		}, runFlags...),
		Action: runQuantize,
	}
}

func runQuantize(c *cli.Context) error {
	if err := needArgs(c, 1, "one MODEL"); err != nil {
		return err
	}
	s := quant.Settings{Type: c.String("type"), GroupSize: c.Int("group-size"), Symmetric: c.Bool("sym"),
		Search: !c.Bool("no-search"), F16Scales: c.String("scale-dtype") == "f16"}
	if err := s.Validate(); err != nil {
		return usagef("%v", err)
	}
	if sd := c.String("scale-dtype"); sd != "f32" && sd != "f16" {
		return usagef("--scale-dtype %q: want f32 or f16", sd)
	}
	for _, o := range c.StringSlice("tensor-type") {
		ov, err := quant.ParseOverride(o)
		if err != nil {
			return usagef("%v", err)
		}
		s.Overrides = append(s.Overrides, ov)
	}
	if cm := c.String("calib-method"); cm != "gptq" && cm != "imatrix" {
		return usagef("--calib-method %q: want gptq or imatrix", cm)
	}
	out := c.String("output")
	if !c.Bool("dry-run") {
		if out == "" {
			return usagef("quantize: --output DIR is required")
		}
		if err := formats.CheckOutput(out, c.Bool("force")); err != nil {
			return err
		}
	}
	m, err := formats.Open(c.Args().First(), openOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	plan, err := quant.MakePlan(m, s)
	if err != nil {
		if formats.IsInputError(err) {
			return err
		}
		return usagef("%v", err)
	}
	printPlan := func() error {
		if c.Bool("json") {
			js, _ := json.MarshalIndent(plan, "", "  ")
			fmt.Fprintln(c.App.Writer, string(js))
			return nil
		}
		return plan.Print(c.App.Writer)
	}
	if c.Bool("dry-run") {
		return printPlan()
	}
	var cal *quant.Calibration
	if p := c.String("calib"); p != "" {
		if cal, err = calibrate(c, m, p); err != nil {
			return err
		}
	}
	q := quant.Apply(m, plan, cal)
	var after int64
	for _, e := range plan.Entries {
		after += e.BytesAfter
	}
	prog, done := progress(c, after, "quantize")
	err = formats.WriteModel(q, out, formats.WriteOptions{Force: c.Bool("force"), Version: version, Progress: prog})
	done()
	if err != nil {
		return err
	}
	say(c, "wrote %s", out)
	return printPlan()
}

// calibrate runs the base model over a text file and returns each linear layer's input statistics.
func calibrate(c *cli.Context, m *formats.Model, path string) (*quant.Calibration, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, &formats.InputError{File: path, Msg: "cannot read: " + err.Error()}
	}
	tok, err := formats.TokenizerFor(m)
	if err != nil {
		return nil, err
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		return nil, err
	}
	w := c.Int("calib-window")
	if m.Config.IsBlock() {
		w = w / m.Config.BlockLength * m.Config.BlockLength
	}
	windows := verify.Windows(ids, w)
	if len(windows) == 0 || w < 2 {
		return nil, usagef("--calib %s: fewer tokens (%d) than one window of %d", path, len(ids), w)
	}
	b, _, err := openBackend(c, c.String("backend"))
	if err != nil {
		return nil, err
	}
	dt, err := graph.ParseComputeDType(c.String("dtype"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	gm, err := graph.Load(m, b, dt)
	if err != nil {
		return nil, err
	}
	defer gm.Close()
	cal := graph.NewCalibration(c.String("calib-method") == "gptq")
	prog, done := progress(c, int64(len(windows)), "calibrate")
	defer done()
	const batch = 16
	for i := 0; i < len(windows); i += batch {
		end := min(i+batch, len(windows))
		var flat []int32
		for _, win := range windows[i:end] {
			flat = append(flat, win...)
		}
		if err := gm.Calibrate(cal, flat, end-i, w); err != nil {
			return nil, err
		}
		prog("", int64(end-i))
	}
	say(c, "calibrated on %d windows of %d tokens from %s", len(windows), w, path)
	return &quant.Calibration{Importance: cal.Importance(), Hessian: cal.Hessians()}, nil
}
