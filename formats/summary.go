package formats

import (
	"encoding/hex"
	"sort"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Summary is what `btconvert inspect --json` prints.
type Summary struct {
	Description  string             `json:"description"`
	Format       string             `json:"format"`
	Architecture arch.Architecture  `json:"architecture"`
	Components   []ComponentSummary `json:"components"`
	Tensors      []TensorSummary    `json:"tensors"`
	TotalParams  int64              `json:"total_params"`
	TotalBytes   int64              `json:"total_bytes"`
	Notes        []string           `json:"notes,omitempty"`
}

// ComponentSummary totals one component.
type ComponentSummary struct {
	Name    string   `json:"name"`
	Tensors int      `json:"tensors"`
	Params  int64    `json:"params"`
	Bytes   int64    `json:"bytes"`
	DTypes  []string `json:"dtypes"`
}

// TensorSummary is one stored tensor.
type TensorSummary struct {
	Name      string `json:"name"`
	Component string `json:"component"`
	DType     string `json:"dtype"`
	Shape     []int  `json:"shape"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256,omitempty"`
}

// Summarize describes m. With hashes, every tensor is read once to hash its stored bytes.
// Parameters count logical weights: a quantized tensor counts rows x cols, its scales count none.
func Summarize(m *Model, hashes bool) (*Summary, error) {
	s := &Summary{Description: m.Config.Describe(), Format: m.Format, Architecture: m.Config.Summary(), Notes: m.Notes}
	byComp := map[string]*ComponentSummary{}
	for _, comp := range m.Config.Components() {
		s.Components = append(s.Components, ComponentSummary{Name: comp})
	}
	for i := range s.Components {
		byComp[s.Components[i].Name] = &s.Components[i]
	}
	dts := map[string]map[string]bool{}
	for _, t := range m.Tensors {
		ts := TensorSummary{Name: t.Name, Component: t.Component, DType: string(t.DType), Shape: t.Shape, Bytes: t.Bytes()}
		if hashes {
			raw, err := t.Raw()
			if err != nil {
				return nil, err
			}
			h := digest.Sum256(raw)
			ts.SHA256 = hex.EncodeToString(h[:])
		}
		s.Tensors = append(s.Tensors, ts)
		c := byComp[t.Component]
		c.Tensors++
		c.Bytes += t.Bytes()
		params := logicalParams(m.Config, t)
		c.Params += params
		s.TotalParams += params
		s.TotalBytes += t.Bytes()
		if dts[t.Component] == nil {
			dts[t.Component] = map[string]bool{}
		}
		dts[t.Component][string(t.DType)] = true
	}
	for i := range s.Components {
		for d := range dts[s.Components[i].Name] {
			s.Components[i].DTypes = append(s.Components[i].DTypes, d)
		}
		sort.Strings(s.Components[i].DTypes)
	}
	return s, nil
}

func logicalParams(c *arch.Config, t *Tensor) int64 {
	if !c.IsQuantPart(t.Component, t.Name) {
		return t.NumElements()
	}
	if base, ok := strings.CutSuffix(t.Name, scheme.QWeightSuffix); ok {
		q := c.QuantOf(t.Component, base)
		return int64(q.Rows) * int64(q.Cols)
	}
	return 0
}
