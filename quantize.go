package btconvert

import (
	"cmp"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"time"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
	"github.com/btconvert/btconvert/internal/runner"
	"github.com/btconvert/btconvert/quant"
	"github.com/btconvert/btconvert/quant/scheme"
)

// CalibMethod is how calibration statistics are used.
type CalibMethod string

// The calibration methods.
const (
	GPTQ    CalibMethod = "gptq"    // error feedback through E[x x^T] (the default)
	IMatrix CalibMethod = "imatrix" // per-column importance in the scale search
)

// QuantizeOptions controls Quantize.
type QuantizeOptions struct {
	Source, Output string
	Open           formats.OpenOptions
	Settings       quant.Settings
	// Calib is a text to run the model over to collect calibration statistics ("" without).
	Calib       string
	CalibMethod CalibMethod // "" is GPTQ
	CalibWindow int         // tokens per window (0: 256)
	// CalibStats reuses statistics saved with CalibOut instead of running Calib.
	CalibStats string
	// CalibOut saves the collected statistics to this file.
	CalibOut string
	Runtime
	Force, DryRun bool
	Version       string
	UI            UI
}

// QuantizeResult is what Quantize did.
type QuantizeResult struct {
	Output      string                `json:"output,omitempty"`
	Plan        *quant.Plan           `json:"plan"`
	Provenance  *arch.QuantProvenance `json:"quantized_with"`
	CollectSecs float64               `json:"calibration_seconds,omitempty"` // running the model over the calibration text
	WriteSecs   float64               `json:"write_seconds,omitempty"`       // quantizing (and solving GPTQ) while writing
	DryRun      bool                  `json:"dry_run,omitempty"`
}

// Quantize writes a quantized copy of a model.
func Quantize(o QuantizeOptions) (*QuantizeResult, error) {
	ui := orSilent(o.UI)
	if err := o.Settings.Validate(); err != nil {
		return nil, err
	}
	if s, _ := o.Settings.Resolve(); s.Type.Scheme().GGML != nil && (o.Calib != "" || o.CalibStats != "") {
		return nil, errs.Option("Type", string(s.Type), "llama.cpp's types are its round-to-nearest, which calibration would change: calibrate int8 or int4 instead")
	}
	method := cmp.Or(o.CalibMethod, GPTQ)
	if method != GPTQ && method != IMatrix {
		return nil, errs.Option("CalibMethod", string(method), "want gptq or imatrix")
	}
	if o.Calib != "" && o.CalibStats != "" {
		return nil, errs.Option("CalibStats", o.CalibStats, "reuses statistics instead of {Calib}: give one of them")
	}
	if o.CalibOut != "" && o.Calib == "" {
		return nil, errs.Option("CalibOut", o.CalibOut, "saves statistics collected with {Calib}: give {Calib} too")
	}
	if o.Output == "" && !o.DryRun {
		return nil, errs.Option("Output", nil, "is required")
	}
	if o.Output != "" { // a dry run too: its plan must not promise a write the run would refuse
		in := outputs.Inputs(outputs.ModelInputs(o.Source), []string{o.Open.Config, o.Calib, o.CalibStats})
		if err := outputs.CheckFiles(o.Force, in, outputs.Output{Path: o.Output, Kind: fsio.Folder}, outputs.Output{Path: o.CalibOut, Kind: quant.CalibrationFile}); err != nil {
			return nil, err
		}
	}
	m, err := source.Open(o.Source, o.Open)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	plan, err := quant.MakePlan(m, o.Settings)
	if err != nil {
		return nil, err
	}
	prov := &arch.QuantProvenance{Type: scheme.Type(plan.Settings.Type), GroupSize: plan.Settings.GroupSize, Symmetric: plan.Settings.Symmetric,
		Method: "rtn", Tool: o.Version}
	if plan.Settings.Search {
		prov.Method = "search"
	}
	res := &QuantizeResult{Output: o.Output, Plan: plan, Provenance: prov, DryRun: o.DryRun}
	if o.DryRun {
		return res, nil
	}
	var cal *quant.Calibration
	var staged *fsio.File // the statistics to save, committed after the model
	switch {
	case o.Calib != "":
		start := time.Now()
		var tokens int
		var sum [32]byte
		if cal, tokens, sum, err = calibrate(m, o, method == GPTQ, ui); err != nil {
			return nil, err
		}
		res.CollectSecs = time.Since(start).Seconds()
		prov.Method, prov.Calibration, prov.CalibrationSHA256, prov.CalibrationTokens = string(method), filepath.Base(o.Calib), hex.EncodeToString(sum[:]), tokens
		if o.CalibOut != "" {
			meta := map[string]string{"model": outputs.ModelName(o.Source), "text": prov.Calibration, "text_sha256": prov.CalibrationSHA256,
				"tokens": strconv.Itoa(tokens), "window": strconv.Itoa(cmp.Or(o.CalibWindow, 256))}
			// Put in place with the model only: a run that fails or is interrupted leaves neither.
			if staged, err = cal.Stage(o.CalibOut, meta, o.Force); err != nil {
				return nil, err
			}
			defer func() {
				if staged != nil {
					staged.Abort()
				}
			}()
		}
	case o.CalibStats != "":
		var meta map[string]string
		if cal, meta, err = quant.LoadCalibration(o.CalibStats); err != nil {
			return nil, err
		}
		if err := cal.Check(o.CalibStats, m.Config, method == GPTQ); err != nil {
			return nil, err
		}
		prov.Method, prov.Calibration, prov.CalibrationSHA256 = string(method), meta["text"], meta["text_sha256"]
		prov.CalibrationTokens, _ = strconv.Atoi(meta["tokens"])
	}
	if cal != nil && method == IMatrix {
		cal = &quant.Calibration{Importance: cal.Importance, File: cal.File} // importance only: the search, not GPTQ
	}
	q := quant.Apply(m, plan, cal)
	q.Config.QuantizedWith = prov
	q.Notes = append(append([]string(nil), m.Notes...), "quantized: "+prov.String())
	if err := outputs.CheckWrite(q, o.Output, ""); err != nil {
		return nil, err
	}
	tok, err := outputs.TokenizerFiles(m, "", silent{}.Note)
	if err != nil {
		return nil, err
	}
	var after int64
	for _, e := range plan.Entries {
		after += e.BytesAfter
	}
	bar := ui.Progress("quantize", after, "B")
	start := time.Now()
	err = modeldir.Write(q, o.Output, modeldir.WriteOptions{Force: o.Force, Version: o.Version, Extra: tok,
		Progress: outputs.TensorWritten(bar)})
	bar.Done()
	if err != nil {
		return nil, err
	}
	if staged != nil {
		_, err := staged.Commit()
		staged = nil
		if err != nil {
			return nil, err
		}
		ui.Note("saved the calibration statistics to " + o.CalibOut)
	}
	res.WriteSecs = time.Since(start).Seconds()
	return res, nil
}

// calibBatch is the windows of one calibration graph.
const calibBatch = 16

// calibrate runs the model over the calibration text (windows of CalibWindow tokens, batches of
// 16) and returns what each linear layer saw, the tokens it ran and the text's SHA-256 (read once).
func calibrate(m *formats.Model, o QuantizeOptions, full bool, ui UI) (*quant.Calibration, int, [32]byte, error) {
	var sum [32]byte
	text, err := outputs.ReadText(o.Calib)
	if err != nil {
		return nil, 0, sum, err
	}
	sum = digest.Sum256([]byte(text))
	tk, err := tokenizer.For(m.File, m.Name(), m.Config.VocabSize)
	if err != nil {
		return nil, 0, sum, err
	}
	ids, err := tk.Encode(text)
	if err != nil {
		return nil, 0, sum, err
	}
	w := cmp.Or(o.CalibWindow, 256)
	least := 2
	if m.Config.IsBlock() {
		L := m.Config.BlockLength
		least = 2 * L
		w = w / L * L // whole blocks
	}
	if o.CalibWindow < 0 || w < least || w > 1<<16 {
		return nil, 0, sum, errs.Option("CalibWindow", o.CalibWindow, "must be between %d (two blocks) and 65536 tokens", least)
	}
	windows := graph.Windows(ids, w)
	if len(windows) == 0 {
		return nil, 0, sum, errs.File(o.Calib, "has %d tokens, fewer than one calibration window of %d", len(ids), w)
	}
	dev, err := o.Runtime.start(ui, backend.Work{WeightBytes: runner.WeightsOnDisk(o.Source), Tokens: runner.TextTokens(o.Calib), Forwards: 1})
	if err != nil {
		return nil, 0, sum, err
	}
	load := runner.Phase(ui, "load", o.Source)
	eng, err := graph.Load(m, dev.Backend, dev.DType)
	load.Done()
	if err != nil {
		return nil, 0, sum, err
	}
	defer eng.Close()
	if err := runner.CheckWindows(&runner.Loaded{Src: m, Eng: eng}, w, calibBatch, "CalibWindow", "CalibBatch"); err != nil {
		return nil, 0, sum, err
	}
	bar := ui.Progress("calibrate", int64(len(windows)*w), "tokens")
	defer bar.Done()
	if c := runner.Compiling(dev); c != "" {
		bar.Add(0, c) // the first batch compiles the graph: seconds before any token is counted
	}
	st, err := eng.Calibrate(windows, calibBatch, full, func(n int) { bar.Add(int64(n*w), "") })
	if err != nil {
		return nil, 0, sum, err
	}
	cal := &quant.Calibration{Importance: st.MeanSquare, Hessian: st.SecondMoment, File: o.Calib}
	if err := cal.CheckCollected(); err != nil {
		return nil, 0, sum, err
	}
	ui.Note("calibrated on " + strconv.Itoa(len(windows)) + " windows of " + strconv.Itoa(w) + " tokens from " + o.Calib)
	return cal, len(windows) * w, sum, nil
}
