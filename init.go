package btconvert

import (
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/randinit"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/internal/outputs"
)

// InitOptions controls Init.
type InitOptions struct {
	Shape   arch.Shape // a preset's (arch.FindPreset) or any other
	Seed    uint64
	DType   safetensors.DType // f32 (default) or bf16
	Output  string
	Force   bool
	Version string
	UI      UI
}

// InitResult is what Init wrote.
type InitResult struct {
	Output       string `json:"output"`
	Architecture string `json:"architecture"`
	Params       int64  `json:"params"`
	Bytes        int64  `json:"bytes"`
}

// Init writes a model with the official random initialisation (for benchmarks).
func Init(o InitOptions) (*InitResult, error) {
	ui := orSilent(o.UI)
	dt := o.DType
	if dt == "" {
		dt = safetensors.F32
	}
	if dt != safetensors.F32 && dt != safetensors.BF16 {
		return nil, errs.Option("DType", string(o.DType), "want f32 or bf16")
	}
	if o.Output == "" {
		return nil, errs.Option("Output", nil, "is required")
	}
	cfg, err := o.Shape.Config()
	if err != nil {
		return nil, err
	}
	if err := outputs.CheckFiles(o.Force, nil, outputs.Output{Path: o.Output, Kind: fsio.Folder}); err != nil {
		return nil, err
	}
	m := randinit.Model(cfg, o.Seed, dt)
	n := arch.ParamCount(cfg)
	res := &InitResult{Output: o.Output, Architecture: cfg.Describe(), Params: n, Bytes: n * int64(dt.Size())}
	ui.Note(cfg.Describe())
	if err := outputs.CheckWrite(m, o.Output, ""); err != nil {
		return nil, err
	}
	bar := ui.Progress("init", res.Bytes, "B")
	defer bar.Done()
	err = modeldir.Write(m, o.Output, modeldir.WriteOptions{Force: o.Force, Version: o.Version,
		Progress: outputs.TensorWritten(bar)})
	if err != nil {
		return nil, err
	}
	return res, nil
}
