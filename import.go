package btconvert

import (
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/formats/uptrain"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
)

// ImportOptions controls Import.
type ImportOptions struct {
	Source string
	Output string              // our model folder to write ("" only with DryRun)
	Open   formats.OpenOptions // how to read a checkpoint that does not say everything
	DType  safetensors.DType   // storage dtype of float tensors ("" keeps each as stored)
	Force  bool                // replace an existing output
	DryRun bool                // check the source and say what would be written; write nothing
	// Uptrain, when set, turns a vanilla model into the initialisation of a Block Transformer whose
	// decoders are of its family (the paper's uptraining recipe).
	Uptrain *uptrain.Options
	// Tokenizer is a tokenizer.json (or vocab.json with merges.txt beside it) to carry into the
	// model folder; "" carries the source's own.
	Tokenizer string
	Version   string // tool version for the manifest
	UI        UI
}

// ImportResult says what was (or, in a dry run, would be) written.
type ImportResult struct {
	Output       string   `json:"output,omitempty"`
	Format       string   `json:"source_format"`
	Architecture string   `json:"architecture"`
	Tensors      int      `json:"tensors"`
	Bytes        int64    `json:"bytes"`
	Tokenizer    []string `json:"tokenizer_files,omitempty"`
	Notes        []string `json:"notes,omitempty"`
	DryRun       bool     `json:"dry_run,omitempty"`
}

// Import converts a checkpoint into our model folder.
func Import(o ImportOptions) (*ImportResult, error) {
	ui := orSilent(o.UI)
	if o.Output == "" && !o.DryRun {
		return nil, errs.Option("Output", nil, "is required")
	}
	if o.DType != "" && o.DType != safetensors.F32 && o.DType != safetensors.BF16 && o.DType != safetensors.F16 {
		return nil, errs.Option("DType", string(o.DType), "want f32, bf16 or f16")
	}
	if o.Output != "" { // a dry run too: its plan must not promise a write the run would refuse
		in := outputs.Inputs(outputs.ModelInputs(o.Source), []string{o.Open.Config}, outputs.TokenizerInputs(o.Tokenizer))
		if err := outputs.CheckFiles(o.Force, in, outputs.Output{Path: o.Output, Kind: fsio.Folder}); err != nil {
			return nil, err
		}
	}
	switch source.KindOf(o.Source) {
	case source.Folder, source.Bundle:
		if o.Uptrain == nil {
			return nil, &errs.InputError{File: o.Source, Msg: "is already a btconvert model; nothing to import (quantize, verify or export it directly, or copy it)"}
		}
	}
	open := o.Open
	var up uptrain.Options
	if o.Uptrain != nil {
		up = *o.Uptrain
		if open.Config != "" { // a Block config is the model the uptraining trains, not the source's
			target, err := official.BlockTarget(open.Config, open.Heads)
			if err != nil {
				return nil, err
			}
			if target != nil {
				up.Target, open.Config, open.Heads = target, "", nil
			}
		}
	}
	m, err := source.Open(o.Source, open)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if o.Uptrain != nil {
		if m, err = uptrain.Uptrain(m, up); err != nil {
			return nil, err
		}
	}
	for _, n := range m.Notes {
		ui.Note("note: " + n)
	}
	tok, err := outputs.TokenizerFiles(m, o.Tokenizer, ui.Note)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{Output: o.Output, Format: m.Format, Architecture: m.Config.Describe(), Tensors: len(m.Tensors), Notes: m.Notes, DryRun: o.DryRun}
	for name := range tok {
		res.Tokenizer = append(res.Tokenizer, name)
	}
	for _, t := range m.Tensors {
		to := t.DType
		if o.DType != "" {
			to = o.DType
		}
		res.Bytes += t.NumElements() * int64(to.Size())
	}
	if o.DryRun {
		return res, nil
	}
	if err := outputs.CheckWrite(m, o.Output, o.DType); err != nil {
		return nil, err
	}
	bar := ui.Progress("import", res.Bytes, "B")
	defer bar.Done()
	err = modeldir.Write(m, o.Output, modeldir.WriteOptions{DType: o.DType, Force: o.Force, Version: o.Version, Extra: tok,
		Progress: outputs.TensorWritten(bar)})
	if err != nil {
		return nil, err
	}
	return res, nil
}
