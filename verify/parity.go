// Package verify measures a model run through graph/: parity against reference outputs, against
// its own full forward and against another backend; perplexity; and reports.
package verify

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/graph"
)

// Parity compares logits and greedy tokens with a reference.
type Parity struct {
	RelL2Err             float64 `json:"rel_l2_err"`
	MaxAbsErr            float64 `json:"max_abs_err"`
	Top1Agreement        float64 `json:"top1_agreement"`
	GreedyTokenAgreement float64 `json:"greedy_token_agreement"`
	GreedyMatch          bool    `json:"greedy_match"`
}

// Reference is a reference file: input_ids [B, T] with their logits, prompt_ids with greedy_ids.
type Reference struct {
	IDs     []int32
	B, T    int
	Logits  []float32
	Shape   []int
	Prompts [][]int32
	Greedy  [][]int32
}

// ReadReference reads the fixtures' reference.safetensors layout.
func ReadReference(path string) (*Reference, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &Reference{}
	for _, name := range []string{"input_ids", "logits", "prompt_ids", "greedy_ids"} {
		info := f.Info(name)
		if info == nil {
			return nil, errs.Tensor(path, name, "missing (a reference file holds input_ids, logits, prompt_ids and greedy_ids)")
		}
		if name != "logits" && len(info.Shape) != 2 {
			return nil, errs.Tensor(path, name, "shape %v, want [batch, length]", info.Shape)
		}
	}
	ids, shape, err := f.Int64("input_ids")
	if err != nil {
		return nil, err
	}
	r.B, r.T = shape[0], shape[1]
	if r.IDs, err = toInt32(path, "input_ids", ids); err != nil {
		return nil, err
	}
	if r.Logits, r.Shape, err = f.Float32("logits"); err != nil {
		return nil, err
	}
	rows := func(name string) ([][]int32, error) {
		v, s, err := f.Int64(name)
		if err != nil {
			return nil, err
		}
		out := make([][]int32, s[0])
		for i := range out {
			if out[i], err = toInt32(path, name, v[i*s[1]:(i+1)*s[1]]); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if r.Prompts, err = rows("prompt_ids"); err != nil {
		return nil, err
	}
	if r.Greedy, err = rows("greedy_ids"); err != nil {
		return nil, err
	}
	return r, nil
}

// toInt32 converts token ids, refusing any that is not one (before any cut to 32 bits could
// make, say, 2^32 + 61 into 61).
func toInt32(path, tensor string, v []int64) ([]int32, error) {
	out := make([]int32, len(v))
	for i, x := range v {
		if x < 0 || x > math.MaxInt32 {
			return nil, errs.Tensor(path, tensor, "element %d is %d, not a token id", i, x)
		}
		out[i] = int32(x)
	}
	return out, nil
}

// CompareLogits fills the logit figures of a Parity: relative L2, max abs and argmax agreement
// over rows of V.
func CompareLogits(got, want []float32, V int) Parity {
	var num, den, maxAbs float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	agree, rows := 0, len(got)/V
	for r := 0; r < rows; r++ {
		if argmax(got[r*V:(r+1)*V]) == argmax(want[r*V:(r+1)*V]) {
			agree++
		}
	}
	return Parity{RelL2Err: math.Sqrt(num / den), MaxAbsErr: maxAbs, Top1Agreement: float64(agree) / float64(rows)}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// CheckIDs refuses reference ids outside the model's vocabulary (the reference does not belong to
// this model).
func (r *Reference) CheckIDs(path string, vocab int) error {
	check := func(tensor string, ids []int32) error {
		for i, id := range ids {
			if id < 0 || int(id) >= vocab {
				return errs.Tensor(path, tensor, "id %d (element %d) is outside the model's vocabulary 0..%d", id, i, vocab-1)
			}
		}
		return nil
	}
	if err := check("input_ids", r.IDs); err != nil {
		return err
	}
	for _, p := range []struct {
		name string
		rows [][]int32
	}{{"prompt_ids", r.Prompts}, {"greedy_ids", r.Greedy}} {
		for _, row := range p.rows {
			if err := check(p.name, row); err != nil {
				return err
			}
		}
	}
	return nil
}

// AgainstReference scores the reference inputs and runs greedy generation from its prompts.
func AgainstReference(m *graph.Engine, r *Reference, path string) (*Parity, error) {
	if err := r.CheckIDs(path, m.Config.VocabSize); err != nil {
		return nil, err
	}
	got, shape, err := m.Score(r.IDs, r.B, r.T)
	if err != nil {
		return nil, err
	}
	if fmt.Sprint(shape) != fmt.Sprint(r.Shape) {
		return nil, errs.Tensor(path, "logits", "shape %v, but the model gives %v for input_ids", r.Shape, shape)
	}
	p := CompareLogits(got, r.Logits, m.Config.VocabSize)
	gen, err := m.Generate(r.Prompts, graph.GenerateOptions{MaxNewTokens: len(r.Greedy[0])})
	if err != nil {
		return nil, err
	}
	same, total := 0, 0
	for i := range r.Greedy {
		for j, want := range r.Greedy[i] {
			total++
			if gen.Tokens[i][j] == want {
				same++
			}
		}
	}
	p.GreedyTokenAgreement = float64(same) / float64(total)
	p.GreedyMatch = same == total
	return &p, nil
}

// BetweenModels scores the same seeded random ids with both models (e.g. the same weights on two
// backends) and compares the logits; greedy generation from seeded prompts is compared too.
func BetweenModels(a, ref *graph.Engine, seed uint64) (*Parity, error) {
	ids, B, T := RandomIDs(a.Config, seed, 2, 8)
	la, _, err := a.Score(ids, B, T)
	if err != nil {
		return nil, err
	}
	lb, _, err := ref.Score(ids, B, T)
	if err != nil {
		return nil, err
	}
	p := CompareLogits(la, lb, a.Config.VocabSize)
	prompts := rowsOf(ids, B, T/2)
	n := 2 * max(a.Config.BlockLength, 1) * 4
	ga, err := a.Generate(prompts, graph.GenerateOptions{MaxNewTokens: n})
	if err != nil {
		return nil, err
	}
	gb, err := ref.Generate(prompts, graph.GenerateOptions{MaxNewTokens: n})
	if err != nil {
		return nil, err
	}
	same := 0
	for i := range ga.Tokens {
		for j := range ga.Tokens[i] {
			if ga.Tokens[i][j] == gb.Tokens[i][j] {
				same++
			}
		}
	}
	p.GreedyTokenAgreement = float64(same) / float64(B*n)
	p.GreedyMatch = same == B*n
	return &p, nil
}

// RandomIDs draws B rows of seeded random ids (avoiding id 0, the pad) of blocks whole blocks
// (4*blocks tokens for a vanilla model).
func RandomIDs(cfg *arch.Config, seed uint64, B, blocks int) ([]int32, int, int) {
	L := 4 // tokens per "block" of a vanilla model
	if cfg.IsBlock() {
		L = cfg.BlockLength
	}
	T := blocks * L
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(1 + r.IntN(cfg.VocabSize-1))
	}
	return ids, B, T
}

// rowsOf cuts the first n ids of each [B, T] row.
func rowsOf(ids []int32, B, n int) [][]int32 {
	T := len(ids) / B
	out := make([][]int32, B)
	for b := range out {
		out[b] = ids[b*T : b*T+n]
	}
	return out
}
