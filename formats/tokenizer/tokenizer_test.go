package tokenizer_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/testfix"
)

// neoxJSON is a small byte-level BPE tokenizer in the GPT-NeoX tokenizer.json format: ByteLevel
// pre-tokenizer and decoder, an added <|endoftext|> token, merges in the old "a b" string form or
// (pairs) the newer ["a", "b"] form.
func neoxJSON(pairs bool) string {
	merges := []string{"h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "Ġ t", "Ġt he", "c a", "ca t"}
	var m any = merges
	if pairs {
		var p [][]string
		for _, s := range merges {
			p = append(p, strings.Split(s, " "))
		}
		m = p
	}
	vocab := map[string]int{"<|endoftext|>": 0, "h": 1, "e": 2, "l": 3, "o": 4, "Ġ": 5, "w": 6, "r": 7, "d": 8, "t": 9, "c": 10, "a": 11,
		"he": 12, "ll": 13, "llo": 14, "hello": 15, "Ġw": 16, "or": 17, "Ġwor": 18, "Ġworl": 19, "Ġworld": 20, "Ġt": 21, "Ġthe": 22,
		"ca": 23, "cat": 24}
	bl := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	doc := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{map[string]any{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
		"normalizer":   map[string]any{"type": "NFC"}, "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": false, "vocab": vocab, "merges": m},
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

// loadJSON writes a tokenizer.json document (a string or a decoded map) into a temp folder and
// loads it; it returns the tokenizer and the file's path.
func loadJSON(t *testing.T, doc any) (tokenizer.Tokenizer, string) {
	t.Helper()
	b, ok := doc.(string)
	if !ok {
		raw, _ := json.Marshal(doc)
		b = string(raw)
	}
	p := filepath.Join(t.TempDir(), tokenizer.Name)
	if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := tokenizer.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return tk, p
}

// The expected ids are worked out by hand from the merges above (lowest rank first, within each
// pre-token; Ġ is the byte-level form of a space):
//
//	"hello"  h e l l o -> (h e) he l l o -> (l l) he ll o -> (ll o) he llo -> (he llo) hello = 15
//	" world" Ġ w o r l d -> Ġw o r l d -> Ġw or l d -> Ġwor l d -> Ġworl d -> Ġworld = 20
//	" the"   Ġ t h e -> (h e) Ġ t he -> (Ġ t) Ġt he -> (Ġt he) Ġthe = 22
//	"the"    t h e -> t he: no merge "t he", so t = 9, he = 12
//	" cat"   Ġ c a t -> Ġ ca t -> Ġ cat: Ġ = 5, cat = 24
func TestByteLevelBPE(t *testing.T) {
	for _, pairs := range []bool{false, true} {
		dir := t.TempDir()
		p := filepath.Join(dir, tokenizer.Name)
		os.WriteFile(p, []byte(neoxJSON(pairs)), 0o644)
		tk, err := tokenizer.Load(p)
		if err != nil {
			t.Fatalf("pairs=%v: %v", pairs, err)
		}
		for text, want := range map[string][]int32{
			"hello world":         {15, 20},
			"hello the world":     {15, 22, 20},
			"the cat":             {9, 12, 5, 24},
			"hello<|endoftext|>":  {15, 0},
			"the cat hello world": {9, 12, 5, 24, 5, 15, 20},
		} {
			ids, err := tk.Encode(text)
			if err != nil || !slices.Equal(ids, want) {
				t.Errorf("pairs=%v %q: ids %v %v, want %v", pairs, text, ids, err, want)
			}
			if got := tk.Decode(want); got != text {
				t.Errorf("pairs=%v: decode %v = %q, want %q", pairs, want, got, text)
			}
		}
	}
}

// A template post-processor's leading special tokens (Llama's BOS, alone or in a Sequence as Llama
// 3 writes it) start every encoded text, as HF's tokenizer(text) does; GPT-NeoX's ByteLevel
// post-processor adds nothing (TestByteLevelBPE).
func TestTemplateBOS(t *testing.T) {
	tmpl := map[string]any{"type": "TemplateProcessing",
		"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|endoftext|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"pair":           []any{map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"special_tokens": map[string]any{"<|endoftext|>": map[string]any{"id": "<|endoftext|>", "ids": []int{0}, "tokens": []string{"<|endoftext|>"}}}}
	for _, post := range []any{tmpl, map[string]any{"type": "Sequence", "processors": []any{map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}, tmpl}}} {
		var doc map[string]any
		json.Unmarshal([]byte(neoxJSON(false)), &doc)
		doc["post_processor"] = post
		tk, _ := loadJSON(t, doc)
		if ids, err := tk.Encode("hello world"); err != nil || !slices.Equal(ids, []int32{0, 15, 20}) {
			t.Errorf("%v: ids %v %v, want [0 15 20]", post, ids, err)
		}
	}
	// The template's ids count among those the tokenizer produces: one past the model's vocabulary
	// is refused where the tokenizer is checked (CheckFits), not found later in a prompt.
	var doc map[string]any
	json.Unmarshal([]byte(neoxJSON(false)), &doc)
	tmpl["special_tokens"] = map[string]any{"<|endoftext|>": map[string]any{"id": "<|endoftext|>", "ids": []int{300}, "tokens": []string{"<|endoftext|>"}}}
	doc["post_processor"] = tmpl
	tk, p := loadJSON(t, doc)
	if err := tokenizer.CheckFits(tk, 256, p); err == nil || err.Error() != p+": produces ids up to 300, past the model's vocabulary of 256 (a tokenizer of another model?)" {
		t.Errorf("CheckFits: %v", err)
	}
}

// spJSON is a small sentencepiece-style tokenizer.json (Llama 2, Mistral): BPE with byte_fallback
// and the 256 byte tokens <0x00>..<0xFF> at ids 3..258, a normalizer that puts "▁" for spaces and
// before the text, a BOS template, and the decoder that turns byte tokens back into bytes.
func spJSON() string {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for i := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", i)] = 3 + i
	}
	for _, tok := range []string{"▁", "h", "i", "▁h", "▁hi"} {
		vocab[tok] = len(vocab)
	}
	special := func(id int, s string) map[string]any {
		return map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	str := func(s string) map[string]any { return map[string]any{"String": s} }
	doc := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "pre_tokenizer": nil,
		"added_tokens": []any{special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"}, map[string]any{"type": "Replace", "pattern": str(" "), "content": "▁"}}},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":           []any{map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": str("▁"), "content": " "}, map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"}, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": "<unk>", "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": true, "byte_fallback": true, "vocab": vocab, "merges": []string{"▁ h", "▁h i"}},
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

// A character outside a sentencepiece-style vocabulary is written as its bytes' tokens, as HF's
// tokenizers writes it (the ids below are what tokenizers 0.15.2 gives for this file), and the
// text starts with the template's BOS.
func TestByteFallback(t *testing.T) {
	tk, _ := loadJSON(t, spJSON())
	for text, want := range map[string][]int32{
		"hi ©":  {1, 263, 259, 197, 172},
		"hi":    {1, 263},
		"h ié€": {1, 262, 259, 261, 198, 172, 229, 133, 175},
		// Encoded a word at a time (no token of this vocabulary holds a "▁" after another
		// character): spaces runs, leading and trailing ones, a newline.
		"hi hi  hi h": {1, 263, 263, 259, 263, 262},
		" hi":         {1, 259, 263},
		"hi\nhi":      {1, 263, 13, 260, 261},
		"h   i":       {1, 262, 259, 259, 259, 261},
		"  hi":        {1, 259, 259, 263},
		"hi  ":        {1, 263, 259, 259},
		"hi hi ©":     {1, 263, 263, 259, 197, 172},
	} {
		ids, err := tk.Encode(text)
		if err != nil || !slices.Equal(ids, want) {
			t.Errorf("%q: ids %v %v, want %v", text, ids, err, want)
		}
		if got := tk.Decode(want[1:]); got != text && strings.TrimLeft(text, " ") == text {
			t.Errorf("decode %v = %q, want %q", want[1:], got, text)
		}
	}
}

// A sentencepiece-style text encoded a word at a time gives the ids of the whole text at once: the
// same tokenizer with one more normalizer that changes nothing here (NFC of ASCII text), which
// turns the word split off, gives the same ids for the first 3 KiB of GPL-3.
func TestWordSplitKeepsIDs(t *testing.T) {
	b, err := os.ReadFile(testfix.GPL3)
	if err != nil {
		t.Skip(err)
	}
	text := string(b[:3072])
	var doc map[string]any
	json.Unmarshal([]byte(spJSON()), &doc)
	tk, _ := loadJSON(t, doc)
	split, err := tk.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	n := doc["normalizer"].(map[string]any)
	n["normalizers"] = append(n["normalizers"].([]any), map[string]any{"type": "NFC"})
	tk, _ = loadJSON(t, doc)
	whole, err := tk.Encode(text)
	if err != nil || !slices.Equal(split, whole) || len(split) < 1000 {
		t.Errorf("%d ids a word at a time, %d at once (%v)", len(split), len(whole), err)
	}
}

// Streamed one id at a time, a sentencepiece-style generation keeps its spaces: its decoder strips
// the leading space of the first token it decodes, which must be the generation's first only.
func TestStreamKeepsSentencepieceSpaces(t *testing.T) {
	tk, _ := loadJSON(t, spJSON())
	ids := []int32{263, 263, 262, 259, 261, 198, 172, 229, 133, 175, 263} // hi hi h ié€ hi
	want := tk.Decode(ids)
	st := tokenizer.NewStream(tk, nil)
	var got strings.Builder
	for n := 1; n <= len(ids); n++ {
		fresh, _ := st.Update(ids[:n])
		got.WriteString(fresh)
	}
	got.WriteString(st.Flush())
	if want != "hi hi h ié€ hi" || got.String() != want {
		t.Errorf("streamed %q, decoded %q, want %q", got.String(), want, "hi hi h ié€ hi")
	}
}

func TestWordLevelAndBytes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, tokenizer.Name), []byte(`{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
 "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
 "model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2,"the":3},"unk_token":"[UNK]"}}`), 0o644)
	tk, err := tokenizer.For(readDir(dir), dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tk.Encode("hello the world foo")
	if err != nil || !slices.Equal(ids, []int32{1, 3, 2, 0}) {
		t.Fatalf("ids %v %v", ids, err)
	}
	if got := tk.Decode([]int32{1, 3, 2}); got != "hello the world" {
		t.Fatalf("decode %q", got)
	}
	// Without one, a byte vocabulary uses bytes, and a large vocabulary is an error.
	if tk, _ := tokenizer.For(readDir(t.TempDir()), "m", 256); tk.Name() != "bytes" {
		t.Fatalf("byte model got %s", tk.Name())
	}
	empty := t.TempDir()
	if _, err := tokenizer.For(readDir(empty), empty, 50304); err == nil || err.Error() != empty+": vocabulary of 50304 tokens but no tokenizer.json (or vocab.json + merges.txt) to turn text into tokens: put one in the model folder (import Tokenizer carries one)" {
		t.Fatalf("got %v", err)
	}
}

// Malformed files are errors that name the file, never a panic of the parser.
func TestMalformedTokenizers(t *testing.T) {
	for name, body := range map[string]string{
		"not json":      `{"model": `,
		"wrong shape":   `{"model": [1, 2, 3]}`,
		"bpe no merges": `{"model": {"type": "BPE", "vocab": {"a": 0}}}`,
		"bpe no unk":    `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, "pre_tokenizer": null}`,
	} {
		p := filepath.Join(t.TempDir(), tokenizer.Name)
		os.WriteFile(p, []byte(body), 0o644)
		tk, err := tokenizer.Load(p)
		if err == nil {
			// Loaded: encoding what it cannot handle must not panic either.
			if _, err = tk.Encode("abc xyz"); err == nil {
				continue
			}
		}
		if !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("%s: %v does not name the file", name, err)
		}
	}
}

// readDir reads the files of a folder by name, as a checkpoint's files are read.
func readDir(dir string) tokenizer.ReadFunc {
	return func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
}

// A long word (80,000 characters, as a base64 line) is encoded in pieces: time linear in its
// length (the BPE merge loop is quadratic in a word: this took minutes whole), and it decodes back
// to the same text.
func TestLongWord(t *testing.T) {
	p := filepath.Join(t.TempDir(), tokenizer.Name)
	os.WriteFile(p, []byte(neoxJSON(false)), 0o644)
	tk, err := tokenizer.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	// A word of the test vocabulary's letters only (it has no others), in an order that exercises
	// the merges.
	letters := "helowrdtca"
	var b strings.Builder
	for i := 0; b.Len() < 80000; i++ {
		b.WriteByte(letters[(i*7+i/3)%len(letters)])
	}
	line := b.String()
	ids, err := tk.Encode("hello " + line + " world")
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Decode(ids); got != "hello "+line+" world" {
		t.Fatalf("round trip changed the text (%d bytes back)", len(got))
	}
	// Words below the bound are untouched: the same ids as encoded alone.
	short, _ := tk.Encode("hello the world")
	if !slices.Equal(short, []int32{15, 22, 20}) {
		t.Fatalf("short text %v", short)
	}
}

// BenchmarkLongWord times one word of 80,000 bytes.
//
//	go test ./formats/tokenizer -run XXX -bench LongWord
func BenchmarkLongWord(b *testing.B) {
	p := filepath.Join(b.TempDir(), tokenizer.Name)
	os.WriteFile(p, []byte(neoxJSON(false)), 0o644)
	tk, _ := tokenizer.Load(p)
	word := strings.Repeat("hellocat", 10000)
	for i := 0; i < b.N; i++ {
		tk.Encode(word)
	}
}

// The library's prints for symbols missing from the vocabulary never reach stdout.
func TestNothingOnStdout(t *testing.T) {
	p := filepath.Join(t.TempDir(), tokenizer.Name)
	os.WriteFile(p, []byte(neoxJSON(false)), 0o644)
	tk, _ := tokenizer.Load(p)
	r, w, _ := os.Pipe()
	saved := os.Stdout
	os.Stdout = w
	_, err := tk.Encode("GATTACA")
	os.Stdout = saved
	w.Close()
	out, _ := io.ReadAll(r)
	if err == nil || len(out) != 0 {
		t.Fatalf("error %v, stdout %q", err, out)
	}
}
