package btconvert

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
	"github.com/btconvert/btconvert/internal/runner"
	"github.com/btconvert/btconvert/verify"
)

// VerifyOptions controls Verify. With none of Reference, EvalText and CompareBackend it runs the
// self-check (KV-cached generation against the full forward on seeded random prompts).
type VerifyOptions struct {
	Model string
	Open  formats.OpenOptions
	Runtime
	Reference      string // reference.safetensors: logits and greedy tokens to compare with
	EvalText       string // text to measure perplexity on
	Against        string // base model: with EvalText, the divergence from it
	CompareBackend string // a second backend to compare scoring and greedy tokens with
	Window         int    // perplexity window (0: 256)
	WindowBatch    int    // windows per executed graph (0: DefaultWindowBatch)
	Chunks         int    // at most this many windows of the text (0: all)
	Seed           uint64 // of the self-check and backend comparison prompts
	MaxRelErr      float64
	MaxCacheErr    float64
	MaxPPLRatio    float64 // with Against: largest ppl / ppl_base that passes (0: no check)
	MinTop1        float64 // with Against: smallest top-1 agreement that passes (0: no check)
	// Record writes the report into the model folder (report.json, listed in the manifest), where
	// export's verification gate reads it.
	Record bool
	// JSONFile, when set, receives the report as JSON (also when a check fails); checked before
	// anything runs, replaced only with Force and only if btconvert wrote it.
	JSONFile string
	Force    bool
	Version  string
	UI       UI
}

// Default thresholds.
const (
	DefaultMaxRelErr   = 1e-4
	DefaultMaxCacheErr = 1e-5
)

// DefaultWindowBatch is how many windows of a scored text run in one executed graph. Eight
// scored faster than four or sixteen on every model measured, on both backends (up to 1.5x over
// sixteen: a batch's activations and logits stay closer to the caches; docs/BENCHMARKS.md).
const DefaultWindowBatch = 8

func (o *VerifyOptions) validate() error {
	switch {
	case o.Against != "" && o.EvalText == "":
		return errs.Option("Against", o.Against, "compares on a text: give {EvalText} too")
	case o.MaxPPLRatio != 0 && o.Against == "":
		return errs.Option("MaxPPLRatio", o.MaxPPLRatio, "checks against a base model: give {Against} (and {EvalText})")
	case o.MinTop1 != 0 && o.Against == "":
		return errs.Option("MinTop1", o.MinTop1, "checks against a base model: give {Against} (and {EvalText})")
	case o.MaxPPLRatio < 0:
		return errs.Option("MaxPPLRatio", o.MaxPPLRatio, "must be positive")
	case o.MinTop1 < 0 || o.MinTop1 > 1:
		return errs.Option("MinTop1", o.MinTop1, "must be between 0 and 1")
	case o.Window < 0 || o.Window == 1:
		return errs.Option("Window", o.Window, "must be at least 2 (0: 256)")
	case o.WindowBatch < 0:
		return errs.Option("WindowBatch", o.WindowBatch, "must be at least 1 (0: %d)", DefaultWindowBatch)
	case o.Chunks < 0:
		return errs.Option("Chunks", o.Chunks, "must not be negative (0: the whole text)")
	case o.Record && source.KindOf(o.Model) != source.Folder:
		return errs.Option("Record", nil, "writes into a btconvert model folder; %s is not one (import it first)", o.Model)
	}
	in := outputs.Inputs(outputs.ModelInputs(o.Model), []string{o.Open.Config, o.Reference, o.EvalText})
	if o.Against != "" {
		in = append(in, outputs.ModelInputs(o.Against)...)
	}
	return outputs.CheckFiles(o.Force, in, outputs.Output{Path: o.JSONFile, Kind: verify.ReportFile})
}

// work is what the checks o asks for will compute (for auto): a parity check or self-check scores
// and generates a few hundred tokens; scoring a text runs its tokens through the model and base.
func (o *VerifyOptions) work() backend.Work {
	w := backend.Work{WeightBytes: runner.WeightsOnDisk(o.Model, o.Against)}
	if o.Reference != "" || o.CompareBackend != "" || o.EvalText == "" {
		w.Tokens, w.Graphs, w.Forwards = w.Tokens+512, w.Graphs+2, w.Forwards+1 // prefill, step; scoring
	}
	if o.EvalText != "" {
		n := runner.TextTokens(o.EvalText)
		if o.Chunks > 0 {
			n = min(n, int64(o.Chunks)*int64(cmp.Or(o.Window, 256)))
		}
		w.Tokens, w.Forwards = w.Tokens+n, w.Forwards+1
		if o.Against != "" {
			w.Forwards++ // the base's scoring graph
		}
	}
	return w
}

// Verify runs the checks o asks for and returns the report; when a check fails the report comes
// with an error wrapping ErrCheckFailed.
func Verify(o VerifyOptions) (*verify.Report, error) {
	ui := orSilent(o.UI)
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.Window, o.WindowBatch = cmp.Or(o.Window, 256), cmp.Or(o.WindowBatch, DefaultWindowBatch)
	o.MaxRelErr, o.MaxCacheErr = cmp.Or(o.MaxRelErr, DefaultMaxRelErr), cmp.Or(o.MaxCacheErr, DefaultMaxCacheErr)
	// Every file read is checked against the manifest's sha256 first.
	dev, l, err := o.Runtime.open(o.Model, o.Open, ui, o.work())
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if o.CompareBackend != "" {
		if err := checkCompareBackend(o, dev); err != nil {
			return nil, err
		}
	}
	m := l.Eng
	rep := &verify.Report{Model: o.Model, Backend: dev.Spec, Device: backend.Describe(dev.Backend), DType: cmp.Or(o.ComputeDType, "f32"), WeightBytes: m.Weights.Bytes}
	ran := false
	if p := o.Reference; p != "" {
		ran = true
		ref, err := verify.ReadReference(p)
		if err != nil {
			return nil, err
		}
		bar := runner.Phase(ui, "parity", runner.Compiling(dev))
		rep.Parity, err = verify.AgainstReference(m, ref, p)
		bar.Done()
		if err != nil {
			return nil, err
		}
		rep.AtMost("rel_l2_err", rep.Parity.RelL2Err, o.MaxRelErr)
		rep.AtLeast("greedy_match", b2f(rep.Parity.GreedyMatch), 1)
	}
	if p := o.EvalText; p != "" {
		ran = true
		q, err := evalText(l, o, dev, ui)
		if err != nil {
			return nil, err
		}
		if q.Divergence != nil {
			maxPPL, minTop1 := o.MaxPPLRatio, o.MinTop1
			// A recorded report gates export: a quantized model's is always checked, against the
			// limits of its type where none were given.
			if dp, dt, quantized := m.Config.QualityLimits(); o.Record && quantized {
				maxPPL, minTop1 = cmp.Or(maxPPL, dp), cmp.Or(minTop1, dt)
				if o.MaxPPLRatio == 0 || o.MinTop1 == 0 {
					ui.Note(fmt.Sprintf("recording with the export limits of its quantization: ppl ratio at most %g, top-1 agreement at least %g", maxPPL, minTop1))
				}
			}
			if maxPPL > 0 {
				rep.AtMost("ppl_ratio", q.PPLRatio, maxPPL)
			}
			if minTop1 > 0 {
				rep.AtLeast("top1_agreement", q.Top1Agreement, minTop1)
			}
		}
		q.Text = p
		rep.Quality = q
	}
	if spec2 := o.CompareBackend; spec2 != "" {
		ran = true
		dev2, err := runner.StartBackend("CompareBackend", spec2, dev.DType, ui, backend.Work{})
		if err != nil {
			return nil, err
		}
		l2, err := dev2.Load(o.Model, o.Open)
		if err != nil {
			return nil, err
		}
		defer l2.Close()
		bar := runner.Phase(ui, "compare-backend", runner.Compiling(dev, dev2))
		p, err := verify.BetweenModels(l2.Eng, m, o.Seed)
		bar.Done()
		if err != nil {
			return nil, err
		}
		rep.CompareBackend = &verify.BackendParity{Backend: dev2.Spec, Parity: *p}
		rep.AtMost("backend_rel_l2_err", p.RelL2Err, o.MaxRelErr)
	}
	if !ran {
		bar := runner.Phase(ui, "self-check", runner.Compiling(dev))
		s, err := verify.RunSelfCheck(m, o.Seed)
		bar.Done()
		if err != nil {
			return nil, err
		}
		rep.SelfCheck = s
		rep.AtMost("cache_rel_l2_err", s.CacheRelL2Err, o.MaxCacheErr)
	}
	pass := rep.Finish()
	if o.Record {
		rep.RecordedBy = "btconvert " + o.Version + " verify (recorded)"
		js, err := verify.EncodeJSON(rep)
		if err != nil {
			return nil, err
		}
		if err := modeldir.RecordReport(o.Model, js); err != nil {
			return nil, err
		}
		ui.Note("recorded the report in " + o.Model)
	}
	if o.JSONFile != "" { // after --record: the same report as the recorded one
		js, err := verify.EncodeJSON(rep)
		if err == nil {
			_, err = fsio.WriteOutput(o.JSONFile, js, o.Force, verify.ReportFile)
		}
		if err != nil {
			return nil, err
		}
	}
	if !pass {
		return rep, fmt.Errorf("%w", ErrCheckFailed)
	}
	return rep, nil
}

// checkCompareBackend refuses a comparison backend that is the one running (dev), before any work.
func checkCompareBackend(o VerifyOptions, dev *runner.Device) error {
	spec2 := o.CompareBackend
	// A backend compared with itself agrees whatever it computes: the same backend in the same
	// configuration is refused however the two options spell it (auto, xla:cpu, the plugin's
	// path; go is run with ops_sequential either way).
	key := func(spec string) string {
		name, conf, _ := strings.Cut(spec, ":")
		if name != "xla" {
			return backend.SequentialOps(spec)
		}
		plugin, opts, _ := strings.Cut(conf, ",")
		if p, ok := backend.FindPlugins(backend.PluginDirs())[plugin]; ok && !filepath.IsAbs(plugin) {
			plugin = p
		}
		if p, err := filepath.EvalSymlinks(plugin); err == nil {
			plugin = p
		}
		return "xla:" + plugin + "," + opts
	}
	if chosen, _ := backend.Choose(spec2); key(chosen) == key(dev.Spec) {
		given := fmt.Sprintf("{Backend} %q", backend.Resolve(o.Backend))
		if e := os.Getenv(backend.Env); o.Backend == "" && e != "" {
			given = fmt.Sprintf("$%s %q", backend.Env, e)
		}
		other := "go"
		if backend.IsGo(dev.Backend) {
			other = "xla:cpu"
			if _, ok := backend.FindPlugins(backend.PluginDirs())["cpu"]; !ok {
				other += " (scripts/install-xla-cpu.sh installs it)"
			}
		}
		return errs.Option("CompareBackend", spec2, "the same backend as %s (both run %s), and a backend compared with itself always agrees; compare with another, e.g. {CompareBackend} %s",
			given, dev.Spec, other)
	}
	return nil
}

// evalText measures perplexity on the eval text (and the divergence from the base model).
func evalText(l *runner.Loaded, o VerifyOptions, dev *runner.Device, ui UI) (*verify.Quality, error) {
	if err := runner.CheckWindows(l, o.Window, o.WindowBatch, "Window", "WindowBatch"); err != nil {
		return nil, err
	}
	text, err := outputs.ReadText(o.EvalText)
	if err != nil {
		return nil, err
	}
	tk, err := l.Tokenizer()
	if err != nil {
		return nil, err
	}
	ids, err := tk.Encode(text)
	if err != nil {
		return nil, err
	}
	if mt := l.Eng.Config.MaxTokens(); mt > 0 && o.Window > mt {
		ui.Note(fmt.Sprintf("warning: the window of %d tokens is past the %d the model was built for (max_length / max_position_embeddings)", o.Window, mt))
	}
	windows := len(ids) / o.Window
	if o.Chunks > 0 {
		windows = min(windows, o.Chunks)
	}
	var base *runner.Loaded
	var fp string
	if o.Against != "" { // loaded before the bar starts: the bar's time is the scoring's
		if base, err = dev.Load(o.Against, formats.OpenOptions{}); err != nil {
			return nil, err
		}
		defer base.Close()
		if fp, err = checkBase(l.Src, base.Src, o, ui); err != nil {
			return nil, err
		}
	}
	bar := ui.Progress("perplexity", int64(windows*o.Window), "tokens")
	defer bar.Done()
	if c := runner.Compiling(dev); c != "" {
		bar.Add(0, c) // the first batch compiles its graphs: seconds before any token is scored
	}
	sc := verify.Scoring{Window: o.Window, Batch: o.WindowBatch, Chunks: o.Chunks,
		Progress: func(n int, ppl float64) { bar.Add(int64(n*o.Window), fmt.Sprintf("ppl %.4g", ppl)) }}
	var q *verify.Quality
	if base != nil {
		q, err = verify.CompareQuality(l.Eng, base.Eng, o.Against, ids, sc)
		if err != nil {
			return nil, withFile(o.EvalText, err)
		}
		q.BaseFingerprint = fp
		return q, nil
	}
	q, err = verify.Perplexity(l.Eng, ids, sc)
	return q, withFile(o.EvalText, err)
}

// checkBase compares the --against model with the one m was quantized from (its manifest's
// record) and returns the base's fingerprint. A check recorded for export must measure against
// that very model: a quantized model compared with itself, or with any other, would pass.
func checkBase(m, base *formats.Model, o VerifyOptions, ui UI) (string, error) {
	fp := base.Fingerprint()
	if len(m.Config.Quantization) == 0 {
		return fp, nil
	}
	switch {
	case fp != "" && fp == m.MadeFrom:
		return fp, nil
	case !o.Record:
		ui.Note("warning: " + o.Against + " is not the model " + o.Model + " was quantized from (their weights differ): the figures compare two other models")
		return fp, nil
	case m.MadeFrom == "":
		return "", &errs.InputError{File: o.Model, Msg: "does not record the model it was quantized from (quantized by an older btconvert): quantize it again to record a quality check for export"}
	}
	return "", errs.Option("Against", o.Against, "is not the model %s was quantized from (their weights differ): a quality check recorded for export must measure against that base", o.Model)
}

// withFile names file in a bad-input error that names no file.
func withFile(file string, err error) error {
	if ie, ok := err.(*errs.InputError); ok && ie.File == "" {
		c := *ie
		c.File = file
		return &c
	}
	return err
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
