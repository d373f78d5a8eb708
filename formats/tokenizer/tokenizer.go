// Package tokenizer turns text into token ids and back: the byte vocabulary of byte-level models,
// an HF tokenizer.json, or a GPT-2 style vocab.json + merges.txt (byte-level BPE). A text is
// encoded as HF's tokenizer(text) encodes it, with the special tokens its template puts first (a
// Llama BOS), and in a sentencepiece-style vocabulary (Llama 2, Mistral) a character outside the
// vocabulary as its bytes' tokens (byte_fallback).
package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/model/bpe"
	"github.com/sugarme/tokenizer/pretokenizer"
	"github.com/sugarme/tokenizer/pretrained"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/fsio"
)

// The tokenizer files a model folder carries when its source had them (or they were given).
const (
	Name   = "tokenizer.json"
	Vocab  = "vocab.json"
	Merges = "merges.txt"
)

// FileNames are every tokenizer file carried along with a model.
var FileNames = []string{Name, Vocab, Merges, "tokenizer_config.json", "special_tokens_map.json"}

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	Encode(text string) ([]int32, error)
	Decode(ids []int32) string
	Name() string
	MaxID() int32 // the largest id it can produce
}

// ByteTokenizer is the byte-level vocabulary of the fixtures: token id = byte value.
type ByteTokenizer struct{}

// Encode returns the bytes of text.
func (ByteTokenizer) Encode(text string) ([]int32, error) {
	out := make([]int32, len(text))
	for i := 0; i < len(text); i++ {
		out[i] = int32(text[i])
	}
	return out, nil
}

// Decode returns the bytes as a string.
func (ByteTokenizer) Decode(ids []int32) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

// Name describes the tokenizer.
func (ByteTokenizer) Name() string { return "bytes" }

type hfTokenizer struct {
	tk    *tokenizer.Tokenizer
	path  string
	added []addedToken // longest first
	byID  map[int32]string
	// prefix are the special tokens the post-processor's template puts before a text (Llama's
	// BOS): HF's tokenizer(text) adds them, so a prompt or a text to score starts with them here.
	prefix []int32
	// fallback, for a BPE model with byte_fallback (sentencepiece's: Llama 2, Mistral), gives the
	// ids of the <0x00>..<0xFF> tokens a character outside the vocabulary is written as, where the
	// tokenizer library writes the unknown token unk.
	fallback *[256]int32
	unk      int32
	// spaceSplit: the text may be encoded a word at a time (sentencepiece style; see words).
	spaceSplit bool
}

// addedToken is one of tokenizer.json's added_tokens. The tokenizer library drops them from its
// encodings, so they are matched here, as HF's AddedVocabulary does: the text is split at them
// and the pieces between are encoded on their own.
type addedToken struct {
	content string
	id      int32
}

func (h *hfTokenizer) Encode(text string) (ids []int32, err error) {
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, errs.File(h.path, "the tokenizer failed on this text: %v", r)
		}
	}()
	ids = append(ids, h.prefix...)
	for text != "" {
		at, tok := len(text), addedToken{}
		for _, a := range h.added {
			if i := strings.Index(text, a.content); i >= 0 && i < at {
				at, tok = i, a
			}
		}
		segment := []string{text[:at]}
		if h.spaceSplit {
			segment = words(text[:at])
		}
		for _, piece := range cutLongWords(segment, maxWord) {
			enc, err := quietly(func() (*tokenizer.Encoding, error) { return h.tk.EncodeSingle(piece, false) })
			if err != nil {
				return nil, errs.File(h.path, "cannot encode: %v", err)
			}
			offsets := enc.GetOffsets() // byte offsets into piece
			for i, id := range enc.GetIds() {
				if h.fallback != nil && int32(id) == h.unk && i < len(offsets) && offsets[i][0] <= offsets[i][1] && offsets[i][1] <= len(piece) {
					for _, c := range []byte(piece[offsets[i][0]:offsets[i][1]]) {
						ids = append(ids, h.fallback[c])
					}
					continue
				}
				ids = append(ids, int32(id))
			}
		}
		if at == len(text) {
			break
		}
		ids = append(ids, tok.id)
		text = text[at+len(tok.content):]
	}
	return ids, nil
}

// quietly runs f with os.Stdout pointed at /dev/null: the tokenizer library prints a line there
// for each symbol its vocabulary lacks, and stdout is for results. Writers that hold the real
// stdout (the CLI's) are not affected; the lock keeps two encodings from racing on the swap.
func quietly(f func() (*tokenizer.Encoding, error)) (*tokenizer.Encoding, error) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return f()
	}
	saved := os.Stdout
	os.Stdout = null
	defer func() {
		os.Stdout = saved
		null.Close()
	}()
	return f()
}

var stdoutMu sync.Mutex

// maxWord bounds the run of non-space bytes the BPE model sees at once: its merge loop is
// quadratic in a word's length (an 80,000-byte base64 line would take minutes), so longer runs are
// encoded in pieces of this size. Merges across the cuts are lost: the ids of such a word can
// differ at the cuts from the reference tokenizer's, and a sentencepiece-style normalizer puts its
// "▁" before each piece, one more token at each cut. Ordinary words never reach the bound; text
// without spaces (Chinese, Japanese) does, every 256 bytes.
const maxWord = 256

// cutLongWords splits each of texts so that no piece holds a run of more than max non-space bytes,
// cutting only inside such runs and at rune boundaries ("" gives no pieces).
func cutLongWords(texts []string, max int) []string {
	var pieces []string
	for _, s := range texts {
		start, run := 0, 0
		for i, r := range s {
			if unicode.IsSpace(r) {
				run = 0
				continue
			}
			if run >= max {
				pieces = append(pieces, s[start:i])
				start, run = i, 0
			}
			run += utf8.RuneLen(r)
		}
		if start < len(s) {
			pieces = append(pieces, s[start:])
		}
	}
	return pieces
}

// wordsPiece is the fewest bytes words puts in a piece.
const wordsPiece = 256

// words splits a sentencepiece-style text where its words start: before each run of spaces that
// follows a non-space and precedes one, the run's first space left out. The normalizer turns
// spaces into "▁" and puts one before the text, so each word gets back the "▁" it left out; and
// where no token of the vocabulary holds a "▁" after another character (true of sentencepiece
// vocabularies), no merge crosses these points: the ids are those of the whole text, while the
// BPE library, whose merging is quadratic in a word's length, no longer takes the whole text as
// one word (GPL-3 with a 2,000-token vocabulary: minutes as one word, 1.8 s in pieces).
func words(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		// Cut only once a piece has a few hundred bytes: each encoding call has its cost, and
		// merging within such a piece is still quick.
		if s[i] != ' ' || s[i-1] == ' ' || i-start < wordsPiece {
			continue
		}
		j := i
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if j == len(s) {
			break // trailing spaces stay with the last word
		}
		out = append(out, s[start:i])
		start = i + 1
	}
	return append(out, s[start:])
}

func (h *hfTokenizer) Decode(ids []int32) (text string) {
	defer func() {
		if r := recover(); r != nil {
			text = fmt.Sprintf("<undecodable ids %v>", ids)
		}
	}()
	var b strings.Builder
	var run []int
	flush := func() {
		if len(run) > 0 {
			b.WriteString(h.tk.Decode(run, false))
			run = run[:0]
		}
	}
	for _, id := range ids {
		if s, ok := h.byID[id]; ok {
			flush()
			b.WriteString(s)
			continue
		}
		run = append(run, int(id))
	}
	flush()
	return b.String()
}

// tokenizerDoc is what this package reads of a tokenizer.json beyond the tokenizer library:
// parsed once, when the tokenizer is loaded.
type tokenizerDoc struct {
	Added []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	Normalizer *struct {
		Type        string `json:"type"`
		Normalizers []struct {
			Type    string `json:"type"`
			Prepend string `json:"prepend"`
			Pattern struct {
				String *string `json:"String"`
			} `json:"pattern"`
			Content string `json:"content"`
		} `json:"normalizers"`
	} `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Post         *processor      `json:"post_processor"`
	Model        struct {
		Type         string          `json:"type"`
		ByteFallback bool            `json:"byte_fallback"`
		Unk          *string         `json:"unk_token"`
		Vocab        json.RawMessage `json:"vocab"` // a BPE model's: token -> id (bpeVocab)
	} `json:"model"`
	vocab map[string]int32
}

// bpeVocab is a BPE model's vocabulary (nil for another model: a Unigram one's is a list).
func (d *tokenizerDoc) bpeVocab() map[string]int32 {
	if d.vocab == nil && d.Model.Type == "BPE" {
		json.Unmarshal(d.Model.Vocab, &d.vocab) // the tokenizer library has read it
	}
	return d.vocab
}

// readAdded reads the added_tokens of a tokenizer.json.
func readAdded(doc *tokenizerDoc) ([]addedToken, map[int32]string) {
	var out []addedToken
	byID := map[int32]string{}
	for _, a := range doc.Added {
		if a.Content != "" {
			out = append(out, addedToken{a.Content, a.ID})
			byID[a.ID] = a.Content
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].content) > len(out[j].content) })
	return out, byID
}

func (h *hfTokenizer) Name() string { return h.path }

// MaxID is the largest id the tokenizer can produce (its vocabulary and added tokens).
func (h *hfTokenizer) MaxID() int32 {
	top := int32(-1)
	for _, id := range h.tk.GetVocab(true) {
		top = max(top, int32(id))
	}
	for id := range h.byID {
		top = max(top, id)
	}
	for _, id := range h.prefix {
		top = max(top, id)
	}
	return top
}

// MaxID is 255 for bytes.
func (ByteTokenizer) MaxID() int32 { return 255 }

// CheckFits refuses a tokenizer that can produce ids outside a vocabulary of vocab tokens: its
// tokens would index past the model's tables. where names the tokenizer.
func CheckFits(tk Tokenizer, vocab int, where string) error {
	if top := tk.MaxID(); int(top) >= vocab {
		return errs.File(where, "produces ids up to %d, past the model's vocabulary of %d (a tokenizer of another model?)", top, vocab)
	}
	return nil
}

// ReadFunc reads a file that goes with a model by name (nil, nil when it has none): for our folder
// the files its manifest lists, checked against it (formats.Model.File).
type ReadFunc func(name string) ([]byte, error)

// FilesFor reads the tokenizer given as one file (see FilesOf) for a model of vocab tokens,
// refusing one that produces ids past it.
func FilesFor(path string, vocab int) (map[string][]byte, error) {
	tk, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := CheckFits(tk, vocab, path); err != nil {
		return nil, err
	}
	return FilesOf(path)
}

// For returns the model's tokenizer (tokenizer.json, else vocab.json + merges.txt) when it has
// one, else the byte tokenizer for a vocabulary of at most 256; anything else is an error that
// says what is missing. where names the model in messages.
func For(read ReadFunc, where string, vocab int) (Tokenizer, error) {
	for _, n := range []string{Name, Vocab} {
		b, err := read(n)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		p := filepath.Join(where, n)
		var tk Tokenizer
		if n == Name {
			tk, err = fromJSON(p, b)
		} else {
			merges, rerr := read(Merges)
			switch {
			case rerr != nil:
				return nil, rerr
			case merges == nil:
				return nil, errs.File(p, "has no %s beside it", Merges)
			}
			tk, err = fromBPE(p, b, merges)
		}
		if err != nil {
			return nil, err
		}
		if err := CheckFits(tk, vocab, p); err != nil {
			return nil, err
		}
		return tk, nil
	}
	if vocab <= 256 {
		return ByteTokenizer{}, nil
	}
	return nil, &errs.InputError{File: where, Msg: fmt.Sprintf("vocabulary of %d tokens but no %s (or %s + %s) to turn text into tokens: put one in the model folder (import {Tokenizer} carries one)", vocab, Name, Vocab, Merges)}
}

// Load reads a tokenizer.json, or a vocab.json with the merges.txt beside it. A malformed file is
// an error naming it (the parser's panics included).
func Load(p string) (Tokenizer, error) {
	raw, err := fsio.ReadFile(p, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	merges := filepath.Join(filepath.Dir(p), Merges)
	if filepath.Base(p) != Name && fsio.Exists(merges) {
		m, err := fsio.ReadFile(merges, fsio.ConfigLimit)
		if err != nil {
			return nil, err
		}
		return fromBPE(p, raw, m)
	}
	return fromJSON(p, raw)
}

// fromJSON loads a tokenizer.json's bytes (p names it).
func fromJSON(p string, raw []byte) (tk Tokenizer, err error) {
	defer func() {
		if r := recover(); r != nil {
			tk, err = nil, errs.File(p, "cannot load the tokenizer: %v", r)
		}
	}()
	t, err := pretrained.FromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, errs.File(p, "cannot load the tokenizer: %v", err)
	}
	var doc tokenizerDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		// The library took it: a field this package reads has a shape the library ignores.
		return nil, errs.File(p, "cannot load the tokenizer: %v", err)
	}
	added, byID := readAdded(&doc)
	prefix, err := templatePrefix(&doc)
	if err != nil {
		return nil, errs.File(p, "post_processor: %v", err)
	}
	h := &hfTokenizer{tk: t, path: p, added: added, byID: byID, prefix: prefix}
	h.fallback, h.unk = byteFallback(&doc)
	h.spaceSplit = sentencepieceWords(&doc)
	return h, nil
}

// sentencepieceWords reports whether a tokenizer.json may be encoded a word at a time (words): a
// BPE model with no pre-tokenizer behind the normalizer of HF's Llama conversions (put "▁" first,
// spaces to "▁"), whose vocabulary has no token with a "▁" after another character.
func sentencepieceWords(doc *tokenizerDoc) bool {
	if doc.Model.Type != "BPE" || (len(doc.PreTokenizer) > 0 && string(doc.PreTokenizer) != "null") {
		return false
	}
	n := doc.Normalizer
	if n == nil || n.Type != "Sequence" || len(n.Normalizers) != 2 {
		return false
	}
	pre, rep := n.Normalizers[0], n.Normalizers[1]
	if pre.Type != "Prepend" || pre.Prepend != "▁" || rep.Type != "Replace" || rep.Pattern.String == nil || *rep.Pattern.String != " " || rep.Content != "▁" {
		return false
	}
	for tok := range doc.bpeVocab() {
		if strings.Contains(strings.TrimLeft(tok, "▁"), "▁") {
			return false
		}
	}
	return true
}

// byteFallback reads a BPE model's byte_fallback: the ids of its 256 byte tokens and of its
// unknown token; nil when the model has none (or lacks a byte token, which HF would need too).
func byteFallback(doc *tokenizerDoc) (*[256]int32, int32) {
	if doc.Model.Type != "BPE" || !doc.Model.ByteFallback || doc.Model.Unk == nil {
		return nil, 0
	}
	vocab := doc.bpeVocab()
	unk, ok := vocab[*doc.Model.Unk]
	if !ok {
		return nil, 0
	}
	var out [256]int32
	for c := range out {
		id, ok := vocab[fmt.Sprintf("<0x%02X>", c)]
		if !ok {
			return nil, 0
		}
		out[c] = id
	}
	return &out, unk
}

// processor is the part of a tokenizer.json post_processor read here: a TemplateProcessing
// (alone or in a Sequence) and the ids of its special tokens.
type processor struct {
	Type       string      `json:"type"`
	Processors []processor `json:"processors"`
	Single     []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int32 `json:"ids"`
	} `json:"special_tokens"`
}

// templatePrefix is the ids of the special tokens a TemplateProcessing puts before a single text
// (its leading SpecialToken items), none for other post-processors.
func templatePrefix(doc *tokenizerDoc) ([]int32, error) {
	if doc.Post == nil {
		return nil, nil
	}
	procs := []processor{*doc.Post}
	if doc.Post.Type == "Sequence" {
		procs = doc.Post.Processors
	}
	var out []int32
	for _, pr := range procs {
		if pr.Type != "TemplateProcessing" {
			continue
		}
		for _, item := range pr.Single {
			if item.SpecialToken == nil {
				break
			}
			st, ok := pr.SpecialTokens[item.SpecialToken.ID]
			if !ok || len(st.IDs) == 0 {
				return nil, fmt.Errorf("the template's %q is not one of its special_tokens", item.SpecialToken.ID)
			}
			out = append(out, st.IDs...)
		}
	}
	return out, nil
}

// fromBPE loads a vocab.json and merges.txt from their bytes (p names the vocabulary). The
// library reads them from files: the checked bytes are written to a private temp folder first,
// so what is loaded is what was checked.
func fromBPE(p string, vocab, merges []byte) (tk Tokenizer, err error) {
	defer func() {
		if r := recover(); r != nil {
			tk, err = nil, errs.File(p, "cannot load the tokenizer: %v", r)
		}
	}()
	tmp, err := fsio.NewTempDir("tok")
	if err != nil {
		return nil, err
	}
	defer tmp.Abort()
	vp, mp := filepath.Join(tmp.Tmp, Vocab), filepath.Join(tmp.Tmp, Merges)
	if err := os.WriteFile(vp, vocab, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(mp, merges, 0o600); err != nil {
		return nil, err
	}
	model, err := bpe.NewBpeFromFiles(vp, mp)
	if err != nil {
		return nil, errs.File(p, "cannot load the BPE vocabulary with %s: %v", Merges, err)
	}
	t := tokenizer.NewTokenizer(model)
	bl := pretokenizer.NewByteLevel()
	bl.SetAddPrefixSpace(false)
	t.WithPreTokenizer(bl)
	t.WithDecoder(bl)
	return &hfTokenizer{tk: t, path: p}, nil
}

// Files reads the tokenizer files that go with a model, to carry them into a model folder.
func Files(read ReadFunc) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, n := range FileNames {
		b, err := read(n)
		if err != nil {
			return nil, err
		}
		if b != nil {
			out[n] = b
		}
	}
	return out, nil
}

// FilesOf reads the tokenizer given as one file: a tokenizer.json, or a vocab.json (with the
// merges.txt beside it). It is loaded once to check it.
func FilesOf(path string) (map[string][]byte, error) {
	if _, err := Load(path); err != nil {
		return nil, err
	}
	b, err := fsio.ReadFile(path, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	if filepath.Base(path) == Name || !fsio.Exists(filepath.Join(filepath.Dir(path), Merges)) {
		return map[string][]byte{Name: b}, nil
	}
	m, err := fsio.ReadFile(filepath.Join(filepath.Dir(path), Merges), fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{Vocab: b, Merges: m}, nil
}
