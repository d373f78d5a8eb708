package main

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/graph/backend"
	"github.com/btconvert/btconvert/verify"
)

// flagNames spell the library's option names (errs messages name them as Go fields) as this
// command's flags.
var flagNames = map[string]string{
	"Against": "--against", "Backend": "--backend", "Base": "--base", "Bits": "--q-bits", "Batches": "--batch", "BlockLayers": "--block-layers",
	"Block": "--block-layers", "BlockLength": "--block-length", "Calib": "--calib", "CalibMethod": "--calib-method", "CalibOut": "--calib-out",
	"CalibStats": "--calib-stats", "CalibBatch": "the calibration batch (16)", "CalibWindow": "--calib-window", "CompareBackend": "--compare-backend", "Chunks": "--chunks", "ComputeDType": "--compute-dtype", "Config": "--config", "Decoding": "--decoding",
	"DType": "--dtype", "DryRun": "--dry-run", "EmbedderDim": "--embedder-dim", "EvalText": "--eval-text", "ExpansionRatio": "--expansion-ratio", "FFN": "--ffn", "Force": "--force",
	"Format": "--format", "GenLens": "--gen-len", "JSONFile": "--json-file", "GroupSize": "--group-size", "Heads": "--heads", "Hidden": "--hidden", "IgnoreEOS": "--ignore-eos",
	"Layers": "--layers", "MaxBatch": "--max-batch", "MaxCacheErr": "--max-cache-err", "MaxNewTokens": "--max-new-tokens", "OfficialGenerate": "--official-generate", "MaxPPLRatio": "--max-ppl-ratio", "MaxRelErr": "--max-rel-err", "Model": "MODEL", "MemBudget": "--mem-budget",
	"Method": "--method", "MinP": "--min-p", "MinTop1": "--min-top1", "Output": "--output", "Overrides": "--tensor-type", "Pairs": "--pg", "Plot": "--plot", "Preset": "--preset",
	"Prompt": "--prompt", "Prompts": "--prompt", "PromptLens": "--prompt-len", "Record": "--record", "Reference": "--reference", "RepeatPenalty": "--repeat-penalty", "Reps": "--reps", "Search": "--no-search", "Seed": "--seed", "Source": "SOURCE", "F16Scales": "--scale-dtype", "Uptrain": "--from-vanilla", "ShardSize": "--shard-size",
	"SkipVerify": "--skip-verify", "Stop": "--stop", "Symmetric": "--sym", "Temperature": "--temperature", "TensorType": "--tensor-type", "Tokenizer": "--tokenizer",
	"Threads": "--threads", "TokenLayers": "--token-layers", "TopK": "--top-k", "TopP": "--top-p", "Type": "--type", "Vocab": "--vocab",
	"Warmup": "--warmup", "Window": "--window", "WindowBatch": "--window-batch", "Models": "MODEL", "Length": "the length",
}

func flagName(field string) string {
	if f, ok := flagNames[field]; ok {
		return f
	}
	return field
}

var quietFlag = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output or notes"}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print the result as JSON (snake_case keys) instead of text"}

// Flags that complete what a checkpoint's own files say (every command that reads a checkpoint).
var (
	configFlag = &cli.StringFlag{Name: "config", Usage: "architecture of a checkpoint: an official config by name (block_main_b4_85, vanilla_160, ...; see import --help) or a file (official config.yaml, Block or vanilla, or HF config.json)"}
	headsFlag  = &cli.StringFlag{Name: "heads", Usage: "attention heads where no config gives them (a checkpoint without a config, or on a base model btconvert does not know): N, or BLOCK,TOKEN for decoders of different widths; must agree with a config that gives them"}
	// decodingFlag completes a Block checkpoint without a config whose weights fit two strategies.
	decodingFlag = &cli.StringFlag{Name: "decoding", Usage: "token decoder strategy of a Block checkpoint without a config, where its weights fit both: prefix or summation"}
)

// threadsFlag sets how many threads compute: Go's scheduler (GOMAXPROCS), which sizes the go
// backend's workers and btconvert's own parallel work.
var threadsFlag = &cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "threads to compute with (default: every core; XLA's CPU plugin keeps its own thread pool)"}

// maxThreads bounds --threads far past any machine.
const maxThreads = 1 << 12

// checkFlags checks the flags every command may share before the command runs: no number flag
// is NaN or infinite (a NaN limit would silently disable its check); --threads is applied.
func checkFlags(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		if ff, ok := f.(*cli.Float64Flag); ok && c.IsSet(ff.Name) {
			if v := c.Float64(ff.Name); math.IsNaN(v) || math.IsInf(v, 0) {
				return usagef("--%s %v: must be a finite number", ff.Name, v)
			}
		}
	}
	if c.IsSet("threads") {
		n := c.Int("threads")
		if n < 1 || n > maxThreads {
			return usagef("--threads %d: want 1 to %d", n, maxThreads)
		}
		runtime.GOMAXPROCS(n)
	}
	if c.IsSet("heads") {
		if _, err := parseHeads(c.String("heads")); err != nil {
			return err
		}
	}
	if d := c.String("decoding"); c.IsSet("decoding") && d != string(arch.Prefix) && d != string(arch.Summation) {
		return usagef("--decoding %q: want prefix or summation", d)
	}
	return nil
}

// parseHeads reads --heads: N, or BLOCK,TOKEN.
func parseHeads(s string) (arch.Heads, error) {
	if s == "" {
		return nil, nil
	}
	var h arch.Heads
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 1<<16 {
			return nil, usagef("--heads %q: want a head count N (1 to %d), or BLOCK,TOKEN", s, 1<<16)
		}
		h = append(h, n)
	}
	if len(h) > 2 {
		return nil, usagef("--heads %q: want N, or BLOCK,TOKEN", s)
	}
	return h, nil
}

// openOptions are the --config / --heads / --decoding flags (checked by checkFlags).
func openOptions(c *cli.Context) formats.OpenOptions {
	h, _ := parseHeads(c.String("heads"))
	return formats.OpenOptions{Config: c.String("config"), Heads: h, Decoding: arch.Decoding(c.String("decoding"))}
}

// verboseFlag adds detail to the notes: the PJRT plugins' paths after the backend line.
var verboseFlag = &cli.BoolFlag{Name: "verbose", Usage: "also print the PJRT plugins' paths after the backend line"}

// Flags of the commands that run a model.
var runFlags = []cli.Flag{
	&cli.StringFlag{Name: "backend", Usage: "auto (default: XLA's CUDA or CPU plugin when installed, else go), go, xla:cpu, xla:cuda or xla:/path/to/pjrt_plugin.so; env " + backend.Env},
	&cli.StringFlag{Name: "compute-dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
	configFlag, headsFlag, decodingFlag, threadsFlag, verboseFlag,
}

func runtimeOf(c *cli.Context) btconvert.Runtime {
	return btconvert.Runtime{Backend: c.String("backend"), ComputeDType: c.String("compute-dtype")}
}

// storageDType reads --dtype (storage): "" or "keep" keeps each tensor's dtype.
func storageDType(c *cli.Context, allowed ...safetensors.DType) (safetensors.DType, error) {
	s := c.String("dtype")
	if s == "" || s == "keep" {
		return "", nil
	}
	d, err := safetensors.ParseDType(s)
	for _, a := range allowed {
		if err == nil && d == a {
			return d, nil
		}
	}
	names := []string{"keep"}
	for _, a := range allowed {
		names = append(names, a.Lower())
	}
	return "", usagef("--dtype %q: want %s or %s", s, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// parseSize reads 2GB, 500MiB, 1000000 (bytes); "" is 0.
func parseSize(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n < 1 {
		return 0, usagef("--%s %q: want a size like 2GB or 500MiB", flag, s)
	}
	if n > maxSize {
		return 0, usagef("--%s %q: more than %s, which no machine has", flag, s, humanize.IBytes(maxSize))
	}
	return int64(n), nil
}

// pairList reads llama-bench -pg pairs: "P,G", several separated by ";".
func pairList(flag, s string) ([][2]int, error) {
	if s == "" {
		return nil, nil
	}
	var out [][2]int
	for _, p := range strings.Split(s, ";") {
		v, err := intList(flag, p)
		if err != nil || len(v) != 2 {
			return nil, usagef("--%s %q: want PROMPT,GEN (several separated by ;)", flag, s)
		}
		out = append(out, [2]int{v[0], v[1]})
	}
	return out, nil
}

// maxSize bounds sizes given as flags.
const maxSize = 1 << 50

// intList reads a comma-separated list of positive integers (llama-bench style: 1,4,16).
func intList(flag, s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > btconvert.MaxTokens {
			return nil, usagef("--%s %q: want a comma-separated list of numbers between 1 and %d", flag, s, btconvert.MaxTokens)
		}
		out = append(out, n)
	}
	return out, nil
}

// needArgs checks the positional argument count.
func needArgs(c *cli.Context, n int, what string) error {
	if c.NArg() != n {
		return usagef("%s: expected %s (see btconvert %s --help)", c.Command.Name, what, c.Command.Name)
	}
	return nil
}

// say prints an informational line to stderr unless --quiet.
func say(c *cli.Context, format string, args ...any) {
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, format+"\n", args...)
	}
}

// printJSON prints v as JSON on stdout (snake_case keys, no HTML escaping, NaN as null).
func printJSON(c *cli.Context, v any) error {
	b, err := verify.EncodeJSON(v)
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(b)
	return err
}
