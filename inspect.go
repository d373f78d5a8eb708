package btconvert

import (
	"encoding/json"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/source"
	"github.com/btconvert/btconvert/internal/outputs"
)

// InspectResult describes a model.
type InspectResult struct {
	*formats.Summary
	QuantizedWith *arch.QuantProvenance `json:"quantized_with,omitempty"`
	Report        json.RawMessage       `json:"report,omitempty"` // the recorded verification report
}

// Inspect describes a model, after checking every file of our folder or bundle against its
// manifest; with hashes every tensor is read once to hash its bytes.
func Inspect(path string, o formats.OpenOptions, hashes bool) (*InspectResult, error) {
	m, err := source.Open(path, o)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	s, err := formats.Summarize(m, hashes)
	if err == nil {
		err = m.Finish() // the weights a summary did not read are hashed too: a changed file is refused
	}
	if err != nil {
		return nil, err
	}
	res := &InspectResult{Summary: s, QuantizedWith: m.Config.QuantizedWith}
	if _, b, err := outputs.RecordedReport(m); err != nil {
		return nil, err
	} else if b != nil {
		res.Report = b
	}
	return res, nil
}
