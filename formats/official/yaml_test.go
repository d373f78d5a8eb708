package official_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/official"
	"github.com/btconvert/btconvert/internal/testfix"
)

// aliasBomb nests levels of anchors, each a sequence of 9 aliases of the one before, under
// block_decoder.config: a 1 KB file that expands to 9^levels values.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("block_decoder:\n  cls: gpt-neo-x\n  config:\n    l0: &l0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "    l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	return b.String()
}

// keys is a top-level mapping of n keys.
func keys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: %d\n", i, i)
	}
	return b.String()
}

// readYAML writes text as a config.yaml and reads it as the official reader does. It fails the
// test past 10 s or 64 MB allocated: unbounded, the attacks below take minutes or all memory.
func readYAML(t *testing.T, text string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		var y official.YAML
		done <- official.ReadYAML(path, &y)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("still reading after 10 s")
	}
	runtime.ReadMemStats(&after)
	a := after.TotalAlloc - before.TotalAlloc
	if a > 64<<20 {
		t.Fatalf("allocated %d MB", a>>20)
	}
	t.Logf("%d bytes read in %v, %d KB allocated", len(text), time.Since(start).Round(time.Microsecond), a>>10)
	return path, err
}

// Untrusted YAML is read within bounds, checked before any value is built; each breach is one
// error that names the file.
func TestYAMLBounds(t *testing.T) {
	longKey := strings.Repeat("k", 1000)
	var deepLong strings.Builder
	for i := range 60 {
		fmt.Fprintf(&deepLong, "%s%s%d:\n", strings.Repeat(" ", i), longKey, i)
	}
	deepLong.WriteString(strings.Repeat(strings.Repeat(" ", 60)+"- 1\n", 100))
	var deepBlock strings.Builder
	for i := range 65 {
		fmt.Fprintf(&deepBlock, "%sk:\n", strings.Repeat(" ", i))
	}
	huge := keys(100000)
	for _, c := range []struct{ name, text, want string }{
		{"alias bomb", aliasBomb(9), "expands to more than 100000 keys and values (aliases expanded)"},
		{"200 KB of [", "block_length: " + strings.Repeat("[", 200000), "has more than 4096 YAML tokens (keys, values and punctuation)"},
		{"65 [ deep", "a: " + strings.Repeat("[", 65) + strings.Repeat("]", 65) + "\n", "nested deeper than 64 levels"},
		{"65 mappings deep", deepBlock.String(), "nested deeper than 64 levels"},
		{"65 sequences on a line", strings.Repeat("- ", 65) + "x\n", "nested deeper than 64 levels"},
		{"65 deep through an alias", "a: &a " + strings.Repeat("[", 33) + strings.Repeat("]", 33) + "\nb: " + strings.Repeat("[", 32) + "*a" + strings.Repeat("]", 32) + "\n",
			"nested deeper than 64 levels (aliases followed)"},
		{"100k keys", huge, fmt.Sprintf("is %d bytes, more than the 262144 this file may have", len(huge))},
		{"20k keys", keys(20000), "has more than 4096 YAML tokens (keys, values and punctuation)"},
		{"1001 keys", keys(1001), "has a mapping of more than 1000 keys"},
		{"1001 keys split by an empty tag", strings.Replace(keys(1001), "k600: 600\n", "k600: 600\nt: ! !\n", 1), "has a mapping of more than 1000 keys"},
		{"long paths", deepLong.String(), "nests too many keys too deep: the parser would build more than 4194304 bytes of key paths"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, err := readYAML(t, c.text)
			if got, want := fmt.Sprint(err), path+": "+c.want; got != want {
				t.Fatalf("got  %.300s\nwant %s", got, want)
			}
		})
	}
}

// Just within the bounds, the costliest inputs are read in well under 10 s and 64 MB.
func TestYAMLWithinBounds(t *testing.T) {
	var wide, deep, long strings.Builder
	for m := range 2 {
		fmt.Fprintf(&wide, "m%d:\n", m)
		for i := range 1000 {
			fmt.Fprintf(&wide, "  k%d:\n", i)
		}
	}
	for i := range 62 {
		fmt.Fprintf(&deep, "%sk%d:\n", strings.Repeat(" ", i), i)
	}
	deep.WriteString(strings.Repeat(strings.Repeat(" ", 62)+"- 1\n", 1900))
	for i := range 20 {
		fmt.Fprintf(&long, "%s%s%d:\n", strings.Repeat(" ", i), strings.Repeat("k", 1000), i)
	}
	long.WriteString(strings.Repeat(strings.Repeat(" ", 20)+"- 1\n", 90))
	for _, text := range []string{
		wide.String(), deep.String(), long.String(),
		strings.Replace(aliasBomb(5), "    l4:", "    l4: [*l3, *l3, *l3]\n    l5:", 1), // 66,430 + 22,143 values
		"name: " + strings.Repeat("x", 250000) + "\n",
		"block_decoder:\n  config:\n    x: [" + strings.Repeat("1,", 2000) + "1]\n",
	} {
		if _, err := readYAML(t, text); err != nil {
			t.Fatalf("%.200v", err)
		}
	}
}

// Values are read as the official loader (OmegaConf on PyYAML, YAML 1.1) reads them, or refused.
func TestYAMLAsTheOfficialLoaderReads(t *testing.T) {
	both := "to the official loader (OmegaConf on PyYAML, YAML 1.1)"
	for _, c := range []struct{ name, text, want string }{
		{"two documents", "block_length: 4\n---\nblock_length: 8\n", "holds more than one YAML document (the official loader reads a single one)"},
		{"0o4", "block_length: 0o4\n", `block_length: 0o4 is the string "0o4" ` + both + " but the integer 4 in YAML 1.2; spell it so both read it alike"},
		{"yes", "block_decoder:\n  config:\n    use_parallel_residual: yes\n",
			`block_decoder.config.use_parallel_residual: yes is the boolean true ` + both + ` but the string "yes" in YAML 1.2; spell it so both read it alike`},
		{"sexagesimal", "max_length: 1:20\n", `max_length: 1:20 is the integer 80 ` + both + ` but the string "1:20" in YAML 1.2; spell it so both read it alike`},
		{"1e-5", "embedder:\n  config:\n    layer_norm_eps: 1e-5\n",
			`embedder.config.layer_norm_eps: 1e-5 is the float 1e-05 ` + both + ` but the string "1e-5" in YAML 1.2; spell it so both read it alike`},
		{"a float for an integer", "block_length: 4.5\n", "block_length: 4.5 is a float, not an integer"},
		{"a string for an integer", "block_length: \"4\"\n", `block_length: "4" is a string, not an integer`},
		{"a number for a string", "token_decoder:\n  decoding_strategy: 0x10\n", "token_decoder.decoding_strategy: 0x10 is an integer, not a string"},
		{"interpolation", "name: ${oc.env:USER}\n", "name: ${oc.env:USER} is an OmegaConf interpolation, which is not supported"},
		{"missing", "precision: ???\n", "precision: ??? is OmegaConf's missing value"},
		{"tag", "block_length: !!int 4\n", "block_length: tags (!!int) are not supported"},
		{"merge", "base: &b {cls: lookup}\nembedder:\n  <<: *b\n", "embedder: merge keys (<<) are not supported"},
		{"recursive alias", "embedder: &e\n  config: *e\n", "alias *e is inside its own anchor"},
		{"anchor twice", "a: &x 1\nb: &x 2\n", "anchor &x is defined twice"},
		{"directive", "%YAML 1.1\n---\nblock_length: 4\n", "has a YAML directive (%YAML), which is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, err := readYAML(t, c.text)
			if got, want := fmt.Sprint(err), path+": "+c.want; got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}

	// What neither reader reads differently is taken, and what is not read is not checked.
	path := filepath.Join(t.TempDir(), "config.yaml")
	text := "block_length: 0b100\nmax_length: 2_048\nlearning_rate: 6e-4\nwandb: off\nstarted: 2024-06-01\nnote: ${x}\n" +
		"embedder:\n  config: &c\n    hidden_size: 010\n    vocab_size: 256\ntoken_decoder:\n  config: {vocab_size: 256, layer_norm_eps: 1.0e-05, act: gelu}\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var y official.YAML
	if err := official.ReadYAML(path, &y); err != nil {
		t.Fatal(err)
	}
	if y.BlockLength != 4 || y.MaxLength != 2048 || fmt.Sprint(y.Embedder.Config) != "[{hidden_size 8} {vocab_size 256}]" ||
		fmt.Sprint(y.TokenDecoder.Config) != "[{vocab_size 256} {layer_norm_eps 1e-05} {act gelu}]" {
		t.Fatalf("%+v", y)
	}
}

// The fixtures' configs read as the plain decoder reads them.
func TestYAMLFixturesRead(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(testfix.Dir(), "*", "config.yaml"))
	if len(paths) == 0 {
		t.Fatal("no fixture configs")
	}
	for _, p := range paths {
		var got, want official.YAML
		if err := official.ReadYAML(p, &got); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v\nwant %+v", p, got, want)
		}
	}
}

// A checkpoint whose config.yaml is an alias bomb is refused when opened, naming the file: here
// the anchors stand under a key nothing reads and the last is the value of hidden_size.
func TestOpenAliasBomb(t *testing.T) {
	dir := testfix.Copy(t, "bt-tiny")
	path := filepath.Join(dir, "config.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var defs strings.Builder
	defs.WriteString("defs:\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&defs, "  l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	text := defs.String() + strings.Replace(string(b), "    hidden_size: 128\n", "    hidden_size: *l8\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = open(t, dir, formats.OpenOptions{})
	if want := path + ": expands to more than 100000 keys and values (aliases expanded)"; testfix.ErrText(err) != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
