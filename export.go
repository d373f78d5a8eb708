package btconvert

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
	"github.com/btconvert/btconvert/quant"
)

// ExportFormat is what Export writes.
type ExportFormat string

// The export formats.
const (
	// Official is the layout the original code loads: the official Block Transformer checkpoint for a
	// block model, the HF folder of its family for a vanilla one (quantized tensors dequantized).
	Official ExportFormat = "official"
	// Bundle is our model folder as one verified .btz file.
	Bundle ExportFormat = "bundle"
)

// ExportOptions controls Export.
type ExportOptions struct {
	Source, Output string
	Format         ExportFormat
	Open           formats.OpenOptions
	DType          safetensors.DType // official: storage dtype ("" as stored; dequantized tensors f32)
	ShardSize      int64             // official: largest shard in bytes (0: one file)
	// SkipVerify exports a quantized model without a passing recorded verification.
	SkipVerify bool
	Force      bool
	Version    string
	UI         UI
}

// ExportedFile is one file of an export.
type ExportedFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ExportResult is what Export wrote.
type ExportResult struct {
	Output string         `json:"output"`
	Format ExportFormat   `json:"format"`
	Layout string         `json:"layout,omitempty"`
	Size   int64          `json:"size"`
	Files  []ExportedFile `json:"files"`
}

// MinShardSize is the smallest shard export writes.
const MinShardSize = 1 << 20

// Export writes the artifact people deploy.
func Export(o ExportOptions) (*ExportResult, error) {
	ui := orSilent(o.UI)
	if o.Output == "" {
		return nil, errs.Option("Output", nil, "is required")
	}
	if o.Format == "" && strings.HasSuffix(o.Output, modeldir.BundleExt) {
		o.Format = Bundle // the extension says it
	}
	switch o.Format {
	case Official:
	case Bundle:
		if o.DType != "" {
			return nil, errs.Option("DType", string(o.DType), "applies to the official format only (a bundle keeps the model as it is)")
		}
		if o.ShardSize != 0 {
			return nil, errs.Option("ShardSize", o.ShardSize, "applies to the official format only")
		}
		if !strings.HasSuffix(o.Output, modeldir.BundleExt) {
			o.Output += modeldir.BundleExt
		}
	case "":
		return nil, errs.Option("Format", nil, "give official or bundle (an {Output} ending in %s is a bundle)", modeldir.BundleExt)
	default:
		return nil, errs.Option("Format", string(o.Format), "want official or bundle")
	}
	if o.ShardSize < 0 || (o.ShardSize > 0 && o.ShardSize < MinShardSize) {
		return nil, errs.Option("ShardSize", humanize.IBytes(uint64(max(o.ShardSize, 0))), "must be at least %s (HF shards are gigabytes; 0 writes one file)", humanize.IBytes(MinShardSize))
	}
	kind := modeldir.BundleFile
	if o.Format == Official {
		kind = fsio.Folder
	}
	if err := outputs.CheckFiles(o.Force, outputs.Inputs(outputs.ModelInputs(o.Source), []string{o.Open.Config}), outputs.Output{Path: o.Output, Kind: kind}); err != nil {
		return nil, err
	}
	m, err := source.Open(o.Source, o.Open)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if !o.SkipVerify {
		if err := requireVerified(m, o.Source); err != nil {
			return nil, err
		}
	}
	if o.Format == Official {
		return exportOfficial(m, o, ui)
	}
	return exportBundle(m, o, ui)
}

// requireVerified is export's gate. Any model whose recorded report failed is refused. A quantized
// model needs a report recorded by verify --record (listed and hashed in the manifest) that
// passed and checked its quality against a base model on a text: the perplexity ratio and the
// top-1 agreement, each against a limit.
func requireVerified(m *formats.Model, arg string) error {
	rep, _, err := outputs.RecordedReport(m)
	if err != nil {
		return err
	}
	how := "run: btconvert verify " + arg + " {Against} BASE {EvalText} FILE {Record} (or pass {SkipVerify})"
	quantized := len(m.Config.Quantization) > 0
	switch {
	case rep != nil && !rep.Pass:
		return &errs.InputError{File: arg, Msg: "its recorded verification report failed; verify it again with {Record} once it passes, or pass {SkipVerify}"}
	case !quantized:
		return nil
	case rep == nil:
		return &errs.InputError{File: arg, Msg: "is quantized and has no recorded verification report; " + how}
	case !rep.MeasuredAgainstBase():
		return &errs.InputError{File: arg, Msg: "is quantized and its recorded report did not measure quality against a base model on a text; " + how}
	case m.MadeFrom == "":
		return &errs.InputError{File: arg, Msg: "is quantized and does not record the model it was quantized from (quantized by an older btconvert): quantize it again, then " + how}
	case !rep.MeasuredAgainst(m.MadeFrom):
		return &errs.InputError{File: arg, Msg: "is quantized and its recorded report measured quality against another model than the one it was quantized from; " + how}
	case !rep.Checked("ppl_ratio") || !rep.Checked("top1_agreement"):
		return &errs.InputError{File: arg, Msg: "is quantized and its recorded report did not check the perplexity ratio and top-1 agreement against limits; " + how}
	}
	// Limits a user chose are theirs to check by, but export holds the quantization's own: a
	// recorded pass under looser ones is not a pass.
	maxPPL, minTop1, _ := m.Config.QualityLimits()
	again := "; verify it again with {Record} within them (without {MaxPPLRatio} and {MinTop1} it checks exactly them), or pass {SkipVerify}"
	if l := rep.Limit("ppl_ratio"); l > maxPPL {
		return &errs.InputError{File: arg, Msg: fmt.Sprintf("is quantized and its recorded report allowed a perplexity ratio up to %g, past the %g export allows for its quantization%s", l, maxPPL, again)}
	}
	if l := rep.Limit("top1_agreement"); l < minTop1 {
		return &errs.InputError{File: arg, Msg: fmt.Sprintf("is quantized and its recorded report allowed a top-1 agreement down to %g, below the %g export requires for its quantization%s", l, minTop1, again)}
	}
	return nil
}

func exportOfficial(m *formats.Model, o ExportOptions, ui UI) (*ExportResult, error) {
	plain, err := quant.Dequantized(m, cmp.Or(o.DType, safetensors.F32))
	if err != nil {
		return nil, err
	}
	layout := source.ExportLayout(m.Config)
	if layout == nil {
		return nil, &errs.InputError{File: o.Source, Msg: "no official layout holds this model (" + m.Config.Describe() + "): the official Block Transformer code builds GPT-NeoX decoders only; export it as a bundle"}
	}
	if err := outputs.CheckWrite(plain, o.Output, o.DType); err != nil {
		return nil, err
	}
	out, err := fsio.NewDir(o.Output, o.Force)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, t := range plain.Tensors {
		total += t.Bytes()
	}
	bar := ui.Progress("export", total, "B")
	err = layout.Export(plain, out.Tmp, formats.ExportOptions{DType: o.DType, ShardSize: o.ShardSize, Name: outputs.ModelName(strings.TrimSuffix(o.Source, modeldir.BundleExt)),
		Progress: outputs.TensorWritten(bar)})
	bar.Done()
	if err == nil {
		err = carryTokenizer(m, out.Tmp)
	}
	var files []ExportedFile
	if err == nil {
		err = m.Finish()
	}
	if err == nil {
		files, err = hashFiles(out.Tmp)
	}
	if err != nil {
		out.Abort()
		return nil, err
	}
	if err := out.Commit(); err != nil {
		return nil, err
	}
	res := &ExportResult{Output: o.Output, Format: Official, Layout: layout.Format(), Files: files}
	for _, f := range files {
		res.Size += f.Size
	}
	return res, nil
}

// carryTokenizer copies the model's tokenizer files into an exported folder.
func carryTokenizer(m *formats.Model, dir string) error {
	files, err := tokenizer.Files(m.File)
	if err != nil {
		return err
	}
	for name, b := range files {
		if _, err := fsio.WriteFile(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func exportBundle(m *formats.Model, o ExportOptions, ui UI) (*ExportResult, error) {
	dir := m.Path
	if m.Format != modeldir.Format && m.Bundle == "" {
		// A checkpoint: import it into a temp folder first.
		tmp, err := fsio.NewTempDir("extract")
		if err != nil {
			return nil, err
		}
		defer tmp.Abort()
		dir = tmp.Tmp
		tok, err := outputs.TokenizerFiles(m, "", ui.Note)
		if err != nil {
			return nil, err
		}
		if err := modeldir.WriteInto(m, dir, modeldir.WriteOptions{Version: o.Version, Extra: tok}); err != nil {
			return nil, err
		}
	}
	if rep, _, err := modeldir.ReadReport(dir); err != nil {
		return nil, err
	} else if rep == nil {
		ui.Note("note: " + o.Source + " has no recorded verification report (verify with {Record} adds one)")
	}
	man, _, err := modeldir.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, f := range man.Files {
		total += f.Size
	}
	bar := ui.Progress("bundle", total, "B")
	w, err := modeldir.WriteBundle(dir, o.Output, o.Force, func(name string, n int64) { bar.Add(n, name) })
	bar.Done()
	if err != nil {
		return nil, err
	}
	return &ExportResult{Output: o.Output, Format: Bundle, Size: w.Size, Files: []ExportedFile{{filepath.Base(o.Output), w.Size, w.SHA256}}}, nil
}

// hashFiles lists the files of dir with their sizes and sha256.
func hashFiles(dir string) ([]ExportedFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []ExportedFile
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		h := digest.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, ExportedFile{e.Name(), n, hex.EncodeToString(h.Sum(nil))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
