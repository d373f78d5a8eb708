package modeldir

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Recorded is what the export gate reads of a recorded verification report (verify --record
// writes the whole report; see verify.Report).
type Recorded struct {
	Pass     bool   `json:"pass"`
	Recorder string `json:"recorded_by"` // "btconvert verify --record"
	Quality  *struct {
		Text            string `json:"text"`
		Base            string `json:"base"`
		BaseFingerprint string `json:"base_fingerprint"`
	} `json:"quality"`
	Checks []struct {
		Name  string  `json:"name"`
		Limit float64 `json:"limit"`
		Pass  bool    `json:"pass"`
	} `json:"checks"`
}

// Limit is the limit the report checked the named measure against (0 if none).
func (r *Recorded) Limit(name string) float64 {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Limit
		}
	}
	return 0
}

// Checked reports whether the report checked the named measure against a limit.
func (r *Recorded) Checked(name string) bool {
	for _, c := range r.Checks {
		if c.Name == name && c.Limit > 0 {
			return true
		}
	}
	return false
}

// MeasuredAgainst reports whether the report measured quality against the model whose
// Fingerprint is base.
func (r *Recorded) MeasuredAgainst(base string) bool {
	return r.MeasuredAgainstBase() && base != "" && r.Quality.BaseFingerprint == base
}

// MeasuredAgainstBase reports whether the report measured quality on a text against a base model.
func (r *Recorded) MeasuredAgainstBase() bool {
	return r.Quality != nil && r.Quality.Text != "" && r.Quality.Base != ""
}

// ReadReport returns the recorded report of our folder, or nil if it has none. A report.json the
// manifest does not list, or whose bytes differ from the manifest's sha256, is refused: only
// verify --record writes one.
func ReadReport(dir string) (*Recorded, []byte, error) {
	p := filepath.Join(dir, ReportName)
	if _, err := os.Lstat(p); os.IsNotExist(err) {
		return nil, nil, nil
	}
	man, _, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	if man.File(ReportName) == nil {
		return nil, nil, errs.File(p, "is not listed in the manifest (only a verification run that records its report writes one)")
	}
	b, err := ReadListed(dir, man, ReportName)
	if err != nil {
		return nil, nil, err
	}
	var r Recorded
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, errs.File(p, "not valid JSON: %v", err)
	}
	return &r, b, nil
}

// RecordReport writes report.json into our folder and updates manifest.json to list it.
func RecordReport(dir string, report []byte) error {
	man, _, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	w, err := fsio.WriteFile(filepath.Join(dir, ReportName), report)
	if err != nil {
		return err
	}
	entry := ManifestFile{ReportName, w.Size, w.SHA256}
	if f := man.File(ReportName); f != nil {
		*f = entry
	} else {
		man.Files = append(man.Files, entry)
	}
	js, _ := json.MarshalIndent(man, "", "  ")
	if _, err = fsio.WriteFile(filepath.Join(dir, ManifestName), append(js, '\n')); err != nil {
		return err
	}
	return fsio.AddToReceipt(dir, ReportName)
}
