package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"
)

// commandGuesses are names other tools give to what a btconvert command does (llama.cpp's
// llama-bench and llama-perplexity, convert_hf_to_gguf, mlx_lm.convert): each is answered with
// the command line that does it, rather than with whatever command is least unlike the name.
var commandGuesses = map[string]string{
	"bench":      "verify MODEL --bench",
	"benchmark":  "verify MODEL --bench",
	"perplexity": "verify MODEL --eval-text FILE",
	"ppl":        "verify MODEL --eval-text FILE",
	"eval":       "verify MODEL --eval-text FILE",
	"convert":    "import",
	"quant":      "quantize",
}

// flagGuesses are flag names other tools use, by command ("" for every command), with the flag
// that does the same here. A guess applies only where the command lacks the guessed flag and has
// the answer.
var flagGuesses = map[string]map[string]string{
	"": {
		"outfile": "output", "out": "output", "outdir": "output", "output-dir": "output", "mlx-path": "output",
		"device": "backend", "benchmark": "bench", "perplexity": "eval-text", "ppl": "eval-text",
		"n-predict": "max-new-tokens", "dtype": "compute-dtype", "outtype": "dtype",
	},
	"quantize": {"dtype": "type", "outtype": "type", "q-mode": "type"},
}

// guessFlag is the flag of cmd that a user typing name most likely meant: a common guess from
// other tools, else a near miss (a typo or two), else "".
func guessFlag(cmd string, flags []cli.Flag, name string) string {
	has := func(n string) bool {
		return slices.ContainsFunc(flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), n) })
	}
	for _, table := range []map[string]string{flagGuesses[cmd], flagGuesses[""]} {
		if to, ok := table[name]; ok && has(to) {
			return "--" + to
		}
	}
	// Suggest only a near miss, not whatever flag is least unlike.
	if s := cli.SuggestFlag(flags, name, true); s != "" && smetrics.WagnerFischer(name, strings.TrimLeft(s, "-"), 1, 1, 1) <= max(2, len(name)/4) {
		return s
	}
	return ""
}

// unknownFlag is the one message of an unknown flag, top-level or a command's (cmd "" is the
// top level): "verify: unknown flag --bnech; did you mean --bench?".
func unknownFlag(cmd string, flags []cli.Flag, typed string) error {
	typed, _, _ = strings.Cut(typed, "=")
	name := strings.TrimLeft(typed, "-")
	msg := "unknown flag " + typed
	if cmd != "" {
		msg = cmd + ": " + msg
	}
	if s := guessFlag(cmd, flags, name); s != "" {
		msg += "; did you mean " + s + "?"
	}
	return usagef("%s", msg)
}

// unknownCommand says what to type instead of an unknown command: the command line other tools'
// name maps to, a near miss, or the list of commands.
func unknownCommand(app *cli.App, name string) error {
	if to, ok := commandGuesses[strings.ToLower(name)]; ok {
		return usagef("unknown command %q; did you mean %q?", name, to)
	}
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Name)
	}
	best, dist := "", 0
	for _, n := range names {
		if d := smetrics.WagnerFischer(strings.ToLower(name), n, 1, 1, 1); best == "" || d < dist {
			best, dist = n, d
		}
	}
	if dist <= max(2, len(name)/4) {
		return usagef("unknown command %q; did you mean %q?", name, best)
	}
	return usagef("unknown command %q (commands: %s)", name, strings.Join(names, ", "))
}

// checkTopFlags checks the flags before the command (btconvert --version): an unknown one gets
// the message every unknown flag gets; one of the command that follows is told to go after it.
func checkTopFlags(app *cli.App, args []string) error {
	flags := append(slices.Clone(app.Flags), cli.HelpFlag, cli.VersionFlag)
	known := map[string]bool{"generate-bash-completion": true}
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for i, a := range args {
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return nil
		}
		base, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if known[base] {
			continue
		}
		if guessFlag("", flags, base) == "" {
			for _, next := range args[i+1:] {
				if c := app.Command(next); c != nil && !strings.HasPrefix(next, "-") {
					if slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), base) }) {
						return usagef("unknown flag %s; did you mean \"btconvert %s ... %s\"?", a, c.Name, a)
					}
					break
				}
			}
		}
		return unknownFlag("", flags, a)
	}
	return nil
}

// quantTypeNames explains the quantization names of llama.cpp and mlx-lm that btconvert does not
// offer (the ones it does are quant.Presets), saying what to use instead.
var quantTypeNames = func() map[string]string {
	m := map[string]string{}
	kquant := "a llama.cpp k-quant (super-blocks of 256 with quantized scales)"
	for _, n := range []string{"q4_k_m", "q4_k_s"} {
		m[n] = "llama.cpp's mix of q4_k with some tensors kept in q5_k or q6_k; use --type q4_k (llama.cpp's 4-bit k-quant) and --tensor-type 'REGEX=q6_k' for the tensors to keep wider"
	}
	for _, n := range []string{"q2_k", "q2_k_s", "q3_k", "q3_k_s", "q3_k_m", "q3_k_l"} {
		m[n] = kquant + " under 4 bits, a GGUF encoding btconvert does not write; btconvert's smallest types are 4 bits: q4_k, q4_0, int4 (with --calib FILE for GPTQ)"
	}
	for _, n := range []string{"q5_k", "q5_k_m", "q5_k_s"} {
		m[n] = kquant + " of 5 bits, a GGUF encoding btconvert does not write; use q6_k (6.56 bits) to stay closer to the original, q4_k (4.5 bits) to be smaller"
	}
	for _, n := range []string{"q5_0", "q5_1"} {
		m[n] = "5 bits in groups of 32 (llama.cpp); btconvert has no 5-bit type: use q6_k or int8 to stay closer to the original, or q4_0 / q4_1 (llama.cpp's 4-bit blocks of 32) to be smaller"
	}
	m["q8_k"] = "llama.cpp's intermediate for dot products, never a model's type; use q8_0 (llama.cpp's blocks of 32) or int8 (per output row)"
	m["q8_1"] = m["q8_k"]
	for _, n := range []string{"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m", "iq4_nl", "iq4_xs"} {
		m[n] = "a llama.cpp i-quant (codebooks chosen with an importance matrix), a GGUF encoding btconvert does not write; use int4 with --calib FILE (GPTQ, or --calib-method imatrix for importance-weighted scales)"
	}
	for _, n := range []string{"tq1_0", "tq2_0"} {
		m[n] = "llama.cpp's ternary type, for models trained ternary (BitNet); use int4 or int8"
	}
	for _, n := range []string{"f32", "f16", "fp16", "bf16", "float16", "bfloat16", "fp32", "float32"} {
		m[n] = "a storage dtype, not a quantization: import --dtype bf16 (or export --format official --dtype bf16) converts the weights; quantize --tensor-type 'REGEX=bf16' keeps chosen tensors in it"
	}
	for _, n := range []string{"4bit", "4-bit", "q4", "i4", "4"} {
		m[n] = "means int4 here (mlx-lm's default 4 bits: groups of 64 with a scale and a bias, as int4 without --sym); use --type int4 or --q-bits 4"
	}
	for _, n := range []string{"8bit", "8-bit", "q8", "i8", "8"} {
		m[n] = "means int8 here (symmetric per output row, not mlx-lm's groups of 64); use --type int8 or --q-bits 8"
	}
	for _, n := range []string{"2bit", "3bit", "5bit", "6bit", "2-bit", "3-bit", "5-bit", "6-bit"} {
		m[n] = "mlx-lm's " + n[:1] + "-bit; btconvert's types of groups with a scale are 4 and 8 bits: use int4 (--q-bits 4) or int8 (--q-bits 8), or llama.cpp's q6_k for 6"
	}
	for _, n := range []string{"mxfp4", "nvfp4", "mxfp8", "fp8", "e4m3", "fp4"} {
		m[n] = "a floating-point format btconvert does not write; use int8 for 8 bits, int4 for 4"
	}
	m["gptq"] = "a method, not a type: --type int4 --calib FILE quantizes with GPTQ"
	m["awq"] = "not offered; --type int4 --calib FILE quantizes with GPTQ (or --calib-method imatrix: importance-weighted scales)"
	return m
}()

// explainQuantType says why a quantization name btconvert does not offer is refused and what to
// use instead ("" for a name it knows nothing about).
func explainQuantType(name string) string { return quantTypeNames[strings.ToLower(name)] }
