package btconvert

import (
	"fmt"

	"github.com/dustin/go-humanize"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/errs"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/verify/bench"
)

// MaxTokens bounds prompt plus generation (and benchmark lengths): far past any model's context,
// small enough that sizes computed from it cannot overflow.
const MaxTokens = 1 << 24

// GenerateOptions controls Generate.
type GenerateOptions struct {
	Model string
	Open  formats.OpenOptions
	Runtime
	Prompt       string
	MaxNewTokens int
	Sampling     graph.Sampling
	// OnText, if set, receives the continuation as it is generated.
	OnText func(text string)
	UI     UI
}

// GenerateResult is a generation.
type GenerateResult struct {
	Backend    string         `json:"backend"`
	PromptIDs  []int32        `json:"prompt_ids"`
	PadTokens  int            `json:"pad_tokens"`
	IDs        []int32        `json:"ids"`
	Text       string         `json:"text"`
	PrefillS   float64        `json:"prefill_s"`
	DecodeS    float64        `json:"decode_s"`
	TokensPerS float64        `json:"tokens_per_s"`
	Sampling   graph.Sampling `json:"sampling"`
}

// Generate continues a prompt.
func Generate(o GenerateOptions) (*GenerateResult, error) {
	ui := orSilent(o.UI)
	if o.Prompt == "" {
		return nil, errs.Option("Prompt", nil, "is required (and not empty)")
	}
	if o.MaxNewTokens < 1 || o.MaxNewTokens > MaxTokens {
		return nil, errs.Option("MaxNewTokens", o.MaxNewTokens, "must be between 1 and %d", MaxTokens)
	}
	if err := o.Sampling.Validate(); err != nil {
		return nil, err
	}
	dev, err := o.Runtime.start(ui)
	if err != nil {
		return nil, err
	}
	l, err := dev.load(o.Model, o.Open)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	tk, err := tokenizer.For(l.src.File, l.src.Name(), l.eng.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	ids, err := tk.Encode(o.Prompt)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errs.Option("Prompt", o.Prompt, "encodes to no tokens")
	}
	n := len(ids) + o.MaxNewTokens
	if mt := l.eng.Config.MaxTokens(); mt > 0 && n > mt {
		ui.Note(fmt.Sprintf("warning: prompt plus generation is %d tokens, past the %d the model was built for (max_length / max_position_embeddings)", n, mt))
	}
	if err := fitsMemory(l, 1, n); err != nil {
		return nil, err
	}
	streamed := 0
	g, err := l.eng.Generate([][]int32{ids}, graph.GenerateOptions{MaxNewTokens: o.MaxNewTokens, Sampling: o.Sampling, OnTokens: func(rows [][]int32) {
		if o.OnText == nil {
			return
		}
		fresh := rows[0][:min(len(rows[0]), o.MaxNewTokens-streamed)]
		streamed += len(fresh)
		o.OnText(tk.Decode(fresh))
	}})
	if err != nil {
		return nil, err
	}
	t := (g.PrefillTime + g.DecodeTime).Seconds()
	return &GenerateResult{Backend: dev.spec, PromptIDs: ids, PadTokens: g.PadTokens, IDs: g.Tokens[0], Text: tk.Decode(g.Tokens[0]),
		PrefillS: g.PrefillTime.Seconds(), DecodeS: g.DecodeTime.Seconds(), TokensPerS: float64(o.MaxNewTokens) / t, Sampling: o.Sampling}, nil
}

// fitsMemory refuses a generation at batch B up to length tokens whose estimated memory is more
// than the system has available (before allocating anything).
func fitsMemory(l *loaded, B, length int) error {
	est := bench.Estimate(l.eng.Config, l.eng.Weights.Bytes, l.eng.DType.Size(), B, length)
	if avail := memoryFor(); avail > 0 && est > avail {
		return errs.Option("MaxNewTokens", nil, "batch %d up to %d tokens needs about %s of memory, more than the %s available",
			B, length, humanize.IBytes(uint64(est)), humanize.IBytes(uint64(avail)))
	}
	return nil
}
