package official

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/btconvert/btconvert/errs"
)

// What OmegaConf 2.3's loader (PyYAML 6 SafeLoader) makes of each plain scalar, as
// yaml.load("v: " + s, Loader=omegaconf._utils.get_yaml_loader())["v"] returns it ("err": it
// raises).
var pyYAMLReads = []struct{ in, want string }{
	{`4`, `int:4`},
	{`0o4`, `str:0o4`},
	{`0o17`, `str:0o17`},
	{`0777`, `int:511`},
	{`07`, `int:7`},
	{`08`, `str:08`},
	{`0`, `int:0`},
	{`00`, `int:0`},
	{`-0`, `int:0`},
	{`+1`, `int:1`},
	{`1_000`, `int:1000`},
	{`1:20`, `int:80`},
	{`1:20.5`, `float:80.5`},
	{`190:20:30`, `int:685230`},
	{`0b101`, `int:5`},
	{`-0b101`, `int:-5`},
	{`0x1F`, `int:31`},
	{`0X1F`, `str:0X1F`},
	{`-0x1F`, `int:-31`},
	{`0x_1F`, `int:31`},
	{`1.5`, `float:1.5`},
	{`1.`, `float:1.0`},
	{`.5`, `float:0.5`},
	{`-.5`, `str:-.5`},
	{`1e5`, `float:100000.0`},
	{`1E5`, `float:100000.0`},
	{`1e+5`, `float:100000.0`},
	{`1.0e-05`, `float:1e-05`},
	{`1.0e5`, `float:100000.0`},
	{`6e-4`, `float:0.0006`},
	{`1_0.5`, `float:10.5`},
	{`.inf`, `float:inf`},
	{`-.inf`, `float:-inf`},
	{`+.inf`, `float:inf`},
	{`.Inf`, `float:inf`},
	{`.INF`, `float:inf`},
	{`.nan`, `float:nan`},
	{`.NaN`, `float:nan`},
	{`.NAN`, `float:nan`},
	{`inf`, `str:inf`},
	{`nan`, `str:nan`},
	{`yes`, `bool:true`},
	{`Yes`, `bool:true`},
	{`YES`, `bool:true`},
	{`no`, `bool:false`},
	{`No`, `bool:false`},
	{`on`, `bool:true`},
	{`On`, `bool:true`},
	{`off`, `bool:false`},
	{`OFF`, `bool:false`},
	{`y`, `str:y`},
	{`n`, `str:n`},
	{`true`, `bool:true`},
	{`True`, `bool:true`},
	{`TRUE`, `bool:true`},
	{`tRUE`, `str:tRUE`},
	{`false`, `bool:false`},
	{`null`, `null`},
	{`Null`, `null`},
	{`NULL`, `null`},
	{`nULL`, `str:nULL`},
	{`~`, `null`},
	{`2001-12-14`, `str:2001-12-14`},
	{`2001-12-14t21:59:43.10-05:00`, `str:2001-12-14t21:59:43.10-05:00`},
	{`<<`, `err`},
	{`=`, `err`},
	{`1__0`, `int:10`},
	{`_1`, `str:_1`},
	{`1_`, `int:1`},
	{`0.1_5`, `float:0.15`},
	{`9223372036854775808`, `int:9223372036854775808`},
	{`99999999999999999999`, `int:99999999999999999999`},
	{`-9223372036854775809`, `int:-9223372036854775809`},
	{`0x8000000000000000`, `int:9223372036854775808`},
	{`0xFFFFFFFFFFFFFFFF`, `int:18446744073709551615`},
	{`0x10000000000000000`, `int:18446744073709551616`},
	{`1e400`, `float:inf`},
	{`0b`, `str:0b`},
	{`0b_`, `err`},
	{`0x`, `str:0x`},
	{`0x_`, `err`},
	{`0_`, `int:0`},
	{`0_7`, `int:7`},
	{`-0o4`, `str:-0o4`},
	{`+0x1F`, `int:31`},
	{`1:2:3`, `int:3723`},
	{`1:60`, `str:1:60`},
	{`1:5:07`, `int:3907`},
	{`-1:20`, `int:-80`},
	{`0:20`, `str:0:20`},
	{`01:20`, `str:01:20`},
	{`1:20.`, `float:80.0`},
	{`1:20.5e3`, `str:1:20.5e3`},
	{`1_0:20.5`, `float:620.5`},
	{`+1.5`, `float:1.5`},
	{`1.5e3`, `float:1500.0`},
	{`1.5E+3`, `float:1500.0`},
	{`1.5e+03`, `float:1500.0`},
	{`1.0e-05`, `float:1e-05`},
	{`1e-05`, `float:1e-05`},
	{`-1e-05`, `float:-1e-05`},
	{`1E-5`, `float:1e-05`},
	{`.5e+3`, `float:500.0`},
	{`.5e3`, `str:.5e3`},
	{`1._5`, `float:1.5`},
	{`1.__`, `float:1.0`},
	{`._5`, `str:._5`},
	{`1e5_0`, `str:1e5_0`},
	{`1_0e5`, `float:1000000.0`},
	{`+.INF`, `float:inf`},
	{`-.Inf`, `float:-inf`},
	{`+.nan`, `str:+.nan`},
	{`.NaN`, `float:nan`},
	{`-1`, `int:-1`},
	{`+0`, `int:0`},
	{`-0.0`, `float:-0.0`},
	{`0.`, `float:0.0`},
	{`00.5`, `float:0.5`},
	{`1__2.3`, `float:12.3`},
	{`2001-12-14 21:59:43.10 -5`, `str:2001-12-14 21:59:43.10 -5`},
	{`2001-12-14T21:59:43Z`, `str:2001-12-14T21:59:43Z`},
	{`gelu`, `str:gelu`},
	{`EleutherAI/pythia-410m-deduped`, `str:EleutherAI/pythia-410m-deduped`},
	{`bf16`, `str:bf16`},
	{`0o`, `str:0o`},
	{`0O4`, `str:0O4`},
	{`0B1`, `str:0B1`},
	{`1,000`, `str:1,000`},
	{`12e`, `str:12e`},
	{`1e`, `str:1e`},
	{`e5`, `str:e5`},
	{`1.2.3`, `str:1.2.3`},
	{`0xG`, `str:0xG`},
	{`08.5`, `float:8.5`},
	{`09`, `str:09`},
	{`0009`, `str:0009`},
	{`0.1e10000`, `float:inf`},
	{`1e400`, `float:inf`},
	{`-1e400`, `float:-inf`},
	{`2.2250738585072011e-308`, `float:2.225073858507201e-308`},
	{`0.1`, `float:0.1`},
	{`0.30000000000000004`, `float:0.30000000000000004`},
	{`123456789012345678901234567890`, `int:123456789012345678901234567890`},
	{`-0b11`, `int:-3`},
	{`0b1_0`, `int:2`},
}

func TestPyResolve(t *testing.T) {
	for _, c := range pyYAMLReads {
		v := pyResolve(c.in)
		var got string
		switch v.kind {
		case pyNull:
			got = "null"
		case pyBool:
			got = fmt.Sprintf("bool:%t", v.b)
		case pyInt:
			got = "int:" + v.i.String()
		case pyFloat:
			got = "float:" + strconv.FormatFloat(v.f, 'g', -1, 64)
		case pyStr:
			got = "str:" + v.s
		case pyBad:
			got = "err"
		}
		want := c.want
		if f, ok := strings.CutPrefix(want, "float:"); ok && v.kind == pyFloat {
			// Python's repr and Go's formatting differ in spelling only.
			x, err := strconv.ParseFloat(strings.NewReplacer("inf", "Inf", "nan", "NaN").Replace(f), 64)
			if err == nil && (x == v.f || math.IsNaN(x) && math.IsNaN(v.f)) && math.Signbit(x) == math.Signbit(v.f) {
				continue
			}
		}
		if got != want {
			t.Errorf("%q: %s, PyYAML reads %s", c.in, got, want)
		}
	}
}

// fuzzTarget is what the official YAML reader decodes into, in small.
type fuzzTarget struct {
	Name        string `yaml:"name,omitempty"`
	BlockLength int    `yaml:"block_length"`
	BlockSplit  *struct {
		Distribution string  `yaml:"distribution"`
		Scale        float64 `yaml:"scale"`
	} `yaml:"block_split,omitempty"`
	Decoder struct {
		StackYAML `yaml:",inline"`
		Flag      bool `yaml:"flag"`
	} `yaml:"block_decoder"`
}

// The bounded read never panics, answers within 2 s, refuses with an InputError, and its estimates
// hold: the lexer makes no more tokens than tokenStarts counts, and the parser nests no deeper,
// builds no more path bytes and no larger block mapping than shape reckons.
func FuzzDecodeYAML(f *testing.F) {
	fixtures, _ := filepath.Glob("../../fixtures/*/config.yaml")
	for _, p := range fixtures {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"a: &a [1, 2]\nb: *a\nc: [*a, *a]\n", "a: &a\n  b: *a\n", "- - - [a: [b: {c: d}]]\n", "a:\n- b: 1\n  c: [1, {d: e}]\n- f\ng: h\n",
		"&x k: v\n!!str t: u\n", "block_length: 0o4\n", "x: yes\n", "a: 1\n---\nb: 2\n", "%YAML 1.1\n---\na: 1\n", "? a\n: b\n",
		"a: |\n  [[[\n  ]\nb: >-\n  x: y\n", "'a\n b': 1\n", "\"k\":\n  - 1\n  - [2, 3]\n", "<<: {a: 1}\n", "a: !!binary aGk=\n",
		"k: !t\n  x\nj: 1\nl: 2\n", "a:\n  b: !t\nc: 1\nd: 2\n", "a: &x\nb: 1\nc: 2\n", "-\nk: 1\nj: 2\n", "- !t\n- 1\n",
		strings.Repeat("[", 70), strings.Repeat("- ", 70) + "x\n", strings.Repeat("{a: ", 40) + strings.Repeat("}", 40),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v fuzzTarget
		start := time.Now()
		err := decodeYAML("f.yaml", b, &v)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
		var ie *errs.InputError
		if err != nil && !errors.As(err, &ie) {
			t.Fatalf("%T %v", err, err)
		}
		if len(b) > yamlMaxBytes || tokenStarts(b) > yamlMaxTokens {
			return
		}
		tokens := lexer.Tokenize(string(b))
		real := 0 // the lexer adds an empty token where it fails
		for _, tk := range tokens {
			if tk.Type != token.InvalidType {
				real++
			}
		}
		if real > tokenStarts(b) {
			t.Fatalf("%d tokens, counted %d", real, tokenStarts(b))
		}
		est, msg := shape(tokens)
		if msg != "" {
			return
		}
		file, err := parser.Parse(tokens, 0)
		if err != nil {
			return
		}
		if got := pathBytes(file); got > est.paths {
			t.Fatalf("the parser built %d bytes of paths, reckoned %d", got, est.paths)
		}
		for _, d := range file.Docs {
			if got := depth(d.Body); got > est.depth {
				t.Fatalf("nested %d deep, reckoned %d", got, est.depth)
			}
			if got := mostKeys(d.Body); got > est.keys {
				t.Fatalf("a mapping of %d keys, reckoned %d", got, est.keys)
			}
		}
	})
}

// pathBytes is what the parser allocated for paths: two for each key, one for each item.
func pathBytes(f *ast.File) int {
	n := 0
	var walk func(ast.Node)
	walk = func(node ast.Node) {
		switch x := node.(type) {
		case *ast.MappingNode:
			for _, kv := range x.Values {
				walk(kv)
			}
		case *ast.MappingValueNode:
			n += 2 * len(x.Key.GetPath())
			walk(x.Value)
		case *ast.SequenceNode:
			for _, v := range x.Values {
				if v != nil {
					n += len(v.GetPath())
				}
				walk(v)
			}
		case *ast.AnchorNode:
			walk(x.Value)
		case *ast.TagNode:
			walk(x.Value)
		}
	}
	for _, d := range f.Docs {
		walk(d.Body)
	}
	return n
}

// depth is how deep mappings and sequences nest in n as written.
func depth(n ast.Node) int {
	switch x := n.(type) {
	case *ast.MappingNode:
		d := 0
		for _, kv := range x.Values {
			d = max(d, depth(kv.Value))
		}
		return d + 1
	case *ast.MappingValueNode:
		return depth(x.Value) + 1
	case *ast.SequenceNode:
		d := 0
		for _, v := range x.Values {
			d = max(d, depth(v))
		}
		return d + 1
	case *ast.AnchorNode:
		return depth(x.Value)
	case *ast.TagNode:
		return depth(x.Value)
	}
	return 0
}

// mostKeys is the most keys of a block mapping in n.
func mostKeys(n ast.Node) int {
	k := 0
	switch x := n.(type) {
	case *ast.MappingNode:
		if !x.IsFlowStyle {
			k = len(x.Values)
		}
		for _, kv := range x.Values {
			k = max(k, mostKeys(kv.Value))
		}
	case *ast.MappingValueNode:
		k = mostKeys(x.Value)
	case *ast.SequenceNode:
		for _, v := range x.Values {
			k = max(k, mostKeys(v))
		}
	case *ast.AnchorNode:
		k = mostKeys(x.Value)
	case *ast.TagNode:
		k = mostKeys(x.Value)
	}
	return k
}
