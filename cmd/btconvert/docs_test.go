package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Every btconvert command the README and docs/ show parses with the CLI's own flag parser, so the
// docs cannot drift from the flags (a renamed flag, a command that no longer exists).
func TestDocsCommandsParse(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // -t N in a command sets it
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../fixtures/README.md")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range docCommands(string(b)) {
			n++
			if _, code, stderr := parseLine(c); code != 0 {
				t.Errorf("%s: btconvert %s: exit %d: %s", filepath.Base(f), strings.Join(c, " "), code, stderr)
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d commands found in the docs: the extraction is broken", n)
	}
}

// parsed is a command line as the CLI parsed it: the command, its arguments and the flags set
// (by their first name).
type parsed struct {
	cmd   string
	args  []string
	flags map[string][]string
}

// parseLine runs args through the CLI with every command's action replaced, so the command does
// nothing; it returns what the action would have got (nil for --help), the exit status and stderr.
func parseLine(args []string) (*parsed, int, string) {
	var out, errb bytes.Buffer
	w := &checkedWriter{w: &out}
	app := newApp(w, &errb)
	var p *parsed
	for _, cmd := range app.Commands {
		cmd.Action = func(c *cli.Context) error {
			p = &parsed{cmd: c.Command.Name, args: c.Args().Slice(), flags: map[string][]string{}}
			for _, f := range c.Command.Flags {
				n := f.Names()[0]
				switch {
				case !c.IsSet(n):
				case slices.Contains([]string{"prompt", "prompt-file", "stop", "tensor-type"}, n):
					p.flags[n] = c.StringSlice(n)
				default:
					p.flags[n] = []string{fmt.Sprint(c.Value(n))}
				}
			}
			return nil
		}
	}
	code := runApp(app, w, append([]string{"btconvert"}, args...), &errb)
	return p, code, errb.String()
}

var (
	fence      = regexp.MustCompile("(?s)```([a-z]*)\n(.*?)```") // a block in any language, paired right
	inlineCode = regexp.MustCompile("`((?:\\./)?btconvert [^`]+)`")
)

// docCommands extracts the argument lists of the btconvert invocations in a markdown text (see
// shellCommands).
func docCommands(md string) [][]string {
	var out [][]string
	for _, words := range shellCommands(md) {
		if args, ok := btconvertArgs(words); ok {
			out = append(out, args)
		}
	}
	return out
}

// shellCommands extracts the commands in a markdown text, each as its words: in fenced shell
// blocks (lines joined at a trailing backslash, chains split at &&, ; and |, comments dropped) and
// in inline code spans naming btconvert; variable assignments before a command and a time prefix
// are dropped.
func shellCommands(md string) [][]string {
	var lines []string
	for _, m := range fence.FindAllStringSubmatch(md, -1) {
		if m[1] == "" || m[1] == "sh" || m[1] == "bash" { // shell, not Go or JSON
			lines = append(lines, strings.Split(strings.ReplaceAll(m[2], "\\\n", " "), "\n")...)
		}
	}
	for _, m := range inlineCode.FindAllStringSubmatch(md, -1) {
		lines = append(lines, m[1])
	}
	var out [][]string
	for _, l := range lines {
		for _, part := range regexp.MustCompile(`&&|;|\|`).Split(l, -1) {
			words := shellWords(part)
			for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
				words = words[1:] // VAR=value
			}
			if len(words) > 2 && (words[0] == "/usr/bin/time" || words[0] == "time") && words[1] == "-f" {
				words = words[3:]
			}
			if len(words) > 0 {
				out = append(out, words)
			}
		}
	}
	return out
}

// btconvertArgs is the argument list of a btconvert invocation (./btconvert, btconvert or go run
// ./cmd/btconvert), and false for another command or a placeholder ("btconvert ...",
// "btconvert CMD").
func btconvertArgs(words []string) ([]string, bool) {
	switch {
	case len(words) > 1 && (words[0] == "btconvert" || words[0] == "./btconvert"):
		words = words[1:]
	case len(words) > 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/btconvert":
		words = words[3:]
	default:
		return nil, false
	}
	if strings.HasPrefix(words[0], "...") || strings.ToUpper(words[0]) == words[0] {
		return nil, false
	}
	return words, true
}

// shellWords splits a command line as sh does for these docs: quotes, a comment to the end of
// the line, and output redirection dropped.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(ch)
		case ch == '\'' || ch == '"':
			quote, in = ch, true
		case ch == '#' && !in:
			i = len(s)
		case ch == ' ' || ch == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	for i, w := range words {
		if w == ">" || w == "2>" || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") {
			return words[:i]
		}
	}
	return words
}

// The README's package table names every Go package of the repository, and nothing else.
func TestReadmePackageTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| ((?:`[^`]+`(?: \\([a-z]+\\))?(?:, )?)+) \\|").FindAllStringSubmatch(string(b), -1) {
		for _, p := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(m[1], -1) {
			inTable[p[1]] = true
		}
	}
	onDisk := map[string]bool{}
	filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "../.." || d.Name() == "testdata" || d.Name() == "fixtures") {
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			dir, _ := filepath.Rel("../..", filepath.Dir(p))
			if dir == "." {
				dir = "btconvert"
			}
			onDisk[dir] = true
		}
		return nil
	})
	for p := range onDisk {
		if !inTable[p] {
			t.Errorf("package %s is not in the README's table", p)
		}
	}
	for p := range inTable {
		if st, err := os.Stat(filepath.Join("../..", p)); (err != nil || !st.IsDir()) && p != "btconvert" {
			t.Errorf("the README's table names %s, which is not a folder", p)
		}
	}
	if len(onDisk) < 20 {
		t.Fatalf("only %d packages found: the walk is broken", len(onDisk))
	}
}

// importMatrix says which of the module's packages each may import (outside tests): the layers
// of the README's layout, from the CLI down to the file formats. A key or an allowed entry ending
// in "/..." covers a folder and everything under it.
var importMatrix = map[string][]string{
	"cmd/btconvert":    {"btconvert", "verify/...", "graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"},
	"btconvert":        {"internal/runner", "internal/outputs", "families/...", "verify/...", "graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"},
	"families/...":     {"graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"}, // each registers itself below
	"verify/...":       {"verify/...", "graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"},
	"graph/...":        {"graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"},
	"quant":            {"quant/scheme", "arch", "formats/...", "errs", "internal/digest", "internal/fsio", "internal/sysmem"},
	"formats/...":      {"formats/...", "arch", "quant/scheme", "errs", "internal/digest", "internal/fsio"},
	"arch":             {"quant/scheme", "formats/safetensors", "errs"},                                               // the domain model: configs, the family registry, the tensor table
	"internal/testfix": {"graph/...", "quant/...", "arch", "formats/...", "errs", "internal/digest", "internal/fsio"}, // the tests' fixtures
	"quant/scheme":     {"formats/safetensors"},                                                                       // the quantization schemes: a leaf
	"internal/runner":  {"graph/...", "quant/scheme", "formats/...", "errs", "internal/sysmem"},                       // the pipeline's services: backend and model loading, memory checks
	"internal/outputs": {"formats/...", "errs", "internal/fsio", "internal/sysmem"},                                   // what a command reads and writes around a model
	"internal/fsio":    {"errs", "internal/digest"},
	"internal/digest":  {},
	"internal/sysmem":  {},
	"errs":             {},
	"bench/...":        {}, // standalone: they import no btconvert package
	"scripts":          {},
}

// Every package imports only what importMatrix allows it, and every package has a row.
func TestImportMatrix(t *testing.T) {
	const module = "github.com/btconvert/btconvert"
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(p string) string {
		if p == module {
			return "btconvert"
		}
		return strings.TrimPrefix(p, module+"/")
	}
	covers := func(pattern, p string) bool {
		if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
			return p == dir || strings.HasPrefix(p, dir+"/")
		}
		return p == pattern
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, imports, _ := strings.Cut(line, ":")
		pkg := rel(name)
		// Its row: its own, else the deepest folder row that covers it.
		row := ""
		for k := range importMatrix {
			if covers(k, pkg) && (row == "" || k == pkg || row != pkg && len(k) > len(row)) {
				row = k
			}
		}
		allowed := importMatrix[row]
		if row == "" {
			t.Errorf("package %s has no row in importMatrix", pkg)
			continue
		}
		n++
		for _, imp := range strings.Fields(imports) {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if !slices.ContainsFunc(allowed, func(a string) bool { return covers(a, rel(imp)) }) {
				t.Errorf("%s imports %s, which importMatrix does not allow", pkg, rel(imp))
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d packages listed: go list is broken", n)
	}
}

// No file of the root package shares its name with a package folder (verify.go beside verify/
// would read as that package's code).
func TestRootFileNames(t *testing.T) {
	files, _ := filepath.Glob("../../*.go")
	if len(files) < 5 {
		t.Fatalf("only %d root files found", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".go"), "_test")
		if st, err := os.Stat(filepath.Join("../..", name)); err == nil && st.IsDir() {
			t.Errorf("%s shares its name with the folder %s/", filepath.Base(f), name)
		}
	}
}

// Blocks in other languages are skipped and do not pair the fences wrongly: prose between two
// blocks is never read as commands.
func TestDocCommandsFences(t *testing.T) {
	md := "```go\nfmt.Println()\n```\n\nbtconvert meets it\n\n```sh\nbtconvert inspect m --json\n```\n"
	if got := fmt.Sprint(docCommands(md)); got != "[[inspect m --json]]" {
		t.Fatalf("got %s", got)
	}
}
