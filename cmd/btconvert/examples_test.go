package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Flags by what their value is: a file or folder read, one written, or neither. Every string flag
// of every command is in one of them (checked below), so a new path flag cannot escape the check.
var (
	inputFlags  = []string{"against", "calib", "calib-stats", "config", "eval-text", "reference", "tokenizer", "prompt-file"}
	outputFlags = []string{"output", "calib-out", "json-file", "plot"}
	valueFlags  = []string{"backend", "base", "batch", "calib-method", "compare-backend", "compute-dtype", "decoding", "dtype", "format",
		"gen-len", "heads", "mem-budget", "method", "output-format", "pg", "preset", "prompt-len", "scale-dtype", "shard-size", "type",
		"prompt", "stop", "tensor-type"}
)

// Every example in every --help runs as written from the repository root once the README's build
// and tour have run (the top-level help's after the build alone): it is ./btconvert as the README builds it, it parses,
// every file it reads exists (in the repository, on the machine, or written by the README or by an
// earlier example of the same help), every folder it writes into exists, and nothing it writes
// exists already (no two examples write one path). The README's own commands are held to the same
// rules as they set the stage.
func TestHelpExamplesRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	app := newApp(io.Discard, io.Discard)
	for _, c := range app.Commands {
		for _, f := range c.Flags {
			_, isString := f.(*cli.StringFlag)
			_, isSlice := f.(*cli.StringSliceFlag)
			if n := f.Names()[0]; (isString || isSlice) && !slices.Contains(inputFlags, n) && !slices.Contains(outputFlags, n) && !slices.Contains(valueFlags, n) {
				t.Errorf("%s --%s: say whether it reads, writes or neither (inputFlags, outputFlags, valueFlags)", c.Name, n)
			}
		}
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{} // every path any README command or example writes
	s := &exampleState{t: t, have: map[string]bool{}, written: written}
	for _, words := range shellCommands(string(readme)) {
		s.run("README", words)
	}
	if !s.have["out/bt-tiny"] || !s.have["out/gpl2.calib"] {
		t.Fatalf("the README's tour was not followed: %v", s.have)
	}
	tour := s.have

	helps := map[string]string{"btconvert --help": app.Description}
	for _, c := range app.Commands {
		helps["btconvert "+c.Name+" --help"] = c.Description
	}
	n := 0
	for _, name := range slices.Sorted(maps.Keys(helps)) {
		lines := helpExamples(helps[name])
		if len(lines) == 0 {
			t.Errorf("%s has no examples", name)
		}
		s.have = maps.Clone(tour) // each help from the README's state: a reader runs one help's examples
		if name == "btconvert --help" {
			s.have = map[string]bool{} // these need the build alone, as that help says
		}
		for _, l := range lines {
			n++
			if !regexp.MustCompile(`(^|[|(] *)\./btconvert `).MatchString(l) || regexp.MustCompile(`(^|[^/_])btconvert `).MatchString(l) {
				t.Errorf("%s: %q: call ./btconvert, as the README's build leaves it", name, l)
			}
			cmds := shellCommands("```sh\n" + strings.TrimSuffix(strings.TrimPrefix(l, "source <("), ")") + "\n```\n")
			ran := 0
			for _, words := range cmds {
				if s.run(name, words) {
					ran++
				}
			}
			if ran != 1 {
				t.Errorf("%s: %q: %d btconvert commands, want 1", name, l, ran)
			}
		}
	}
	if n < 25 {
		t.Fatalf("only %d examples found: the extraction is broken", n)
	}
}

// helpExamples are the lines of a help text's examples block: after the line starting
// "Examples", up to a blank line.
func helpExamples(desc string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(desc, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "Examples"):
			in = true
		case in && l == "":
			in = false
		case in:
			out = append(out, l)
		}
	}
	return out
}

// exampleState is the repository root as a reader's commands leave it: paths made, by name.
type exampleState struct {
	t       *testing.T
	have    map[string]bool
	written map[string]bool
}

// exists reports a path the commands so far made, an absolute path on this machine, or a file or
// folder of the repository (not out/, which only the README's commands fill).
func (s *exampleState) exists(p string) bool {
	p = filepath.Clean(p)
	if s.have[p] {
		return true
	}
	if filepath.IsAbs(p) {
		_, err := os.Stat(p)
		return err == nil
	}
	if p == "out" || strings.HasPrefix(p, "out/") || p == "btconvert" {
		return false
	}
	_, err := os.Stat(filepath.Join("../..", p))
	return err == nil
}

// run applies one command: mkdir makes folders; btconvert is parsed and its inputs and outputs
// checked, its outputs then exist. It reports whether the command was btconvert.
func (s *exampleState) run(where string, words []string) bool {
	t := s.t
	if words[0] == "mkdir" {
		for _, w := range words[1:] {
			if !strings.HasPrefix(w, "-") {
				s.have[filepath.Clean(w)] = true
			}
		}
		return false
	}
	args, ok := btconvertArgs(words)
	if !ok {
		return false
	}
	line := "btconvert " + strings.Join(args, " ")
	p, code, stderr := parseLine(args)
	if code != 0 {
		t.Errorf("%s: %s: exit %d: %s", where, line, code, stderr)
		return true
	}
	if p == nil { // --help
		return true
	}
	var in []string
	if slices.Contains([]string{"import", "inspect", "verify", "generate", "quantize", "export"}, p.cmd) {
		in = append(in, p.args...)
	}
	for _, f := range inputFlags {
		for _, v := range p.flags[f] {
			if v != "-" && (f != "config" || strings.ContainsAny(v, "/.")) { // a config by name is no file
				in = append(in, v)
			}
		}
	}
	for _, f := range in {
		if !s.exists(f) {
			t.Errorf("%s: %s: reads %s, which does not exist there", where, line, f)
		}
	}
	for _, f := range outputFlags {
		for _, v := range p.flags[f] {
			v = filepath.Clean(v)
			if dir := filepath.Dir(v); dir != "." && !s.exists(dir) {
				t.Errorf("%s: %s: writes %s, whose folder %s does not exist there", where, line, v, dir)
			}
			if _, force := p.flags["force"]; (s.exists(v) || s.written[v]) && !force {
				t.Errorf("%s: %s: writes %s, which exists already", where, line, v)
			}
			if _, dry := p.flags["dry-run"]; !dry {
				s.have[v] = true
				s.written[v] = true
				if f == "output" && filepath.Ext(v) != ".btz" { // a model folder
					s.have[filepath.Join(v, "model.safetensors")] = true
				}
			}
		}
	}
	return true
}
