package btconvert

import (
	"fmt"
	"runtime"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/internal/runner"
	"github.com/btconvert/btconvert/internal/sysmem"
)

// MaxTokens bounds prompt plus generation (and benchmark lengths): far past any model's context,
// small enough that sizes computed from it cannot overflow.
const MaxTokens = 1 << 24

// Stop strings are checked against the end of every row's text after each step: bounded so that
// the check stays small.
const (
	MaxStops     = 64
	MaxStopBytes = 4096
)

// GenerateOptions controls Generate.
type GenerateOptions struct {
	Model string
	Open  formats.OpenOptions
	Runtime
	// Prompts are continued together, as one batch; their lengths may differ (they are
	// left-padded, see graph.Engine.Generate).
	Prompts      []string
	MaxNewTokens int
	Sampling     graph.Sampling
	// Stop ends a row before the first of these strings it generates.
	Stop []string
	// IgnoreEOS generates past the model's end-of-sequence id (else a row ends there).
	IgnoreEOS bool
	// OfficialGenerate reproduces the official code's generate rather than its forward (see
	// graph.GenerateOptions.OfficialPositions); refused for a T5 token decoder, which the official
	// generate cannot run.
	OfficialGenerate bool
	// OnText, if set, receives each row's continuation as it is generated: whole characters, and
	// never part of a stop string.
	OnText func(row int, text string)
	UI     UI
}

// GenerateResult is a generation.
type GenerateResult struct {
	Backend string          `json:"backend"`
	Threads int             `json:"threads"`
	Rows    []GeneratedText `json:"rows"`
	// PromptTokens counts every row's prompt tokens (padding not included), GeneratedTokens what
	// the rows kept.
	PromptTokens    int `json:"prompt_tokens"`
	GeneratedTokens int `json:"generated_tokens"`
	// PrefillS is the prompt's forward pass and the first block (vanilla: token); DecodeS the
	// steps after it. PromptTokS is PromptTokens over PrefillS; GenerationTokS the tokens the
	// steps produced (every row, to its last step) over DecodeS (0 when there were none).
	PrefillS       float64        `json:"prefill_s"`
	DecodeS        float64        `json:"decode_s"`
	CompileS       float64        `json:"compile_s"` // compiling the graphs: in neither rate
	PromptTokS     float64        `json:"prompt_tokens_per_s"`
	GenerationTokS float64        `json:"generation_tokens_per_s"`
	PeakMemBytes   int64          `json:"peak_mem_bytes"`
	Sampling       graph.Sampling `json:"sampling"`
	Stop           []string       `json:"stop,omitempty"`
}

// GeneratedText is one row of a generation.
type GeneratedText struct {
	PromptIDs []int32      `json:"prompt_ids"`
	PadTokens int          `json:"pad_tokens"` // pad ids put before the prompt
	IDs       []int32      `json:"ids"`
	Text      string       `json:"text"`
	Finish    graph.Finish `json:"finish"` // length, eos or stop
}

// Generate continues prompts.
func Generate(o GenerateOptions) (*GenerateResult, error) {
	ui := orSilent(o.UI)
	if len(o.Prompts) == 0 {
		return nil, errs.Option("Prompts", nil, "give at least one prompt")
	}
	for i, p := range o.Prompts {
		if p == "" {
			return nil, errs.Option("Prompts", nil, "prompt %d is empty", i+1)
		}
	}
	if o.MaxNewTokens < 1 || o.MaxNewTokens > MaxTokens {
		return nil, errs.Option("MaxNewTokens", o.MaxNewTokens, "must be between 1 and %d", MaxTokens)
	}
	if err := o.Sampling.Validate(); err != nil {
		return nil, err
	}
	if len(o.Stop) > MaxStops {
		return nil, errs.Option("Stop", len(o.Stop), "at most %d stop strings", MaxStops)
	}
	for _, st := range o.Stop {
		if st == "" {
			return nil, errs.Option("Stop", st, "is empty: a stop string is text that ends a row where it is generated")
		}
		if len(st) > MaxStopBytes {
			return nil, errs.Option("Stop", st[:16]+"...", "a stop string may have at most %d bytes", MaxStopBytes)
		}
	}
	var promptBytes int64
	for _, p := range o.Prompts {
		promptBytes += int64(len(p))
	}
	// A decode step counts once whatever the batch: it reads the weights once.
	work := backend.Work{WeightBytes: runner.WeightsOnDisk(o.Model), Tokens: int64(o.MaxNewTokens) + promptBytes/2, Graphs: 2}
	dev, l, err := o.Runtime.open(o.Model, o.Open, ui, work)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if td := l.Eng.Config.TokenDecoder; o.OfficialGenerate && td != nil && td.Class() == arch.ClassT5 {
		return nil, errs.Option("OfficialGenerate", nil, "the official code cannot generate with a T5 cross-attention token decoder (its generate fails: the decoder's encoder is None); btconvert generates it as the forward computes")
	}
	tk, err := l.Tokenizer()
	if err != nil {
		return nil, err
	}
	prompts := make([][]int32, len(o.Prompts))
	longest, total := 0, 0
	for i, p := range o.Prompts {
		if prompts[i], err = tk.Encode(p); err != nil {
			return nil, err
		}
		if len(prompts[i]) == 0 {
			return nil, errs.Option("Prompts", p, "prompt %d encodes to no tokens", i+1)
		}
		longest, total = max(longest, len(prompts[i])), total+len(prompts[i])
	}
	n := longest + o.MaxNewTokens
	if mt := l.Eng.Config.MaxTokens(); mt > 0 && n > mt {
		ui.Note(fmt.Sprintf("warning: prompt plus generation is %d tokens, past the %d the model was built for (max_length / max_position_embeddings)", n, mt))
	}
	if err := runner.FitsMemory(l, len(prompts), n); err != nil {
		return nil, err
	}
	streams := make([]*tokenizer.Stream, len(prompts))
	for i := range streams {
		streams[i] = tokenizer.NewStream(tk, o.Stop)
	}
	// Until the first text shows (the prefill compiles and runs before it), or to the end when
	// nothing streams.
	what := "generate"
	if o.OnText != nil {
		what = "prefill"
	}
	bar := runner.Phase(ui, what, runner.Compiling(dev))
	defer bar.Done()
	show := func(row int, text string) {
		if text != "" && o.OnText != nil {
			bar.Done()
			o.OnText(row, text)
		}
	}
	sysmem.ResetPeakRSS()
	g, err := l.Eng.Generate(prompts, graph.GenerateOptions{MaxNewTokens: o.MaxNewTokens, Sampling: o.Sampling, StopAtEOS: !o.IgnoreEOS, OfficialPositions: o.OfficialGenerate,
		Stop: func(row int, ids []int32) int {
			text, keep := streams[row].Update(ids)
			show(row, text)
			return keep
		}})
	if err != nil {
		return nil, err
	}
	res := &GenerateResult{Backend: dev.Spec, Threads: runtime.GOMAXPROCS(0), PromptTokens: total,
		PrefillS: g.PrefillTime.Seconds(), DecodeS: g.DecodeTime.Seconds(), CompileS: g.CompileTime.Seconds(), PeakMemBytes: sysmem.PeakRSS(), Sampling: o.Sampling, Stop: o.Stop}
	for i, s := range streams {
		show(i, s.Flush())
		res.Rows = append(res.Rows, GeneratedText{PromptIDs: prompts[i], PadTokens: g.Pad[i], IDs: g.Tokens[i], Text: s.Text(), Finish: g.Finish[i]})
		res.GeneratedTokens += len(g.Tokens[i])
	}
	res.PromptTokS = float64(total) / res.PrefillS
	if g.Steps > 0 {
		perStep := 1
		if l.Eng.Config.IsBlock() {
			perStep = l.Eng.Config.BlockLength
		}
		res.GenerationTokS = float64(g.Steps*perStep*len(prompts)) / res.DecodeS
	}
	return res, nil
}
