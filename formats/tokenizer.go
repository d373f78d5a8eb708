package formats

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// TokenizerName is the HF tokenizer file import copies into our directory when the source has one.
const TokenizerName = "tokenizer.json"

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	Encode(text string) ([]int32, error)
	Decode(ids []int32) string
	Name() string
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
	tk   *tokenizer.Tokenizer
	path string
}

func (h *hfTokenizer) Encode(text string) ([]int32, error) {
	enc, err := h.tk.EncodeSingle(text, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.path, err)
	}
	ids := enc.GetIds()
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out, nil
}

func (h *hfTokenizer) Decode(ids []int32) string {
	in := make([]int, len(ids))
	for i, id := range ids {
		in[i] = int(id)
	}
	return h.tk.Decode(in, false)
}

func (h *hfTokenizer) Name() string { return h.path }

// TokenizerFor returns the model folder's tokenizer.json when it has one, else the byte tokenizer
// for a vocabulary of at most 256; anything else is an error that says what is missing.
func TokenizerFor(m *Model) (Tokenizer, error) {
	dir := m.Path
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	p := filepath.Join(dir, TokenizerName)
	if fileExists(p) {
		tk, err := pretrained.FromFile(p)
		if err != nil {
			return nil, badFile(p, "cannot load tokenizer: %v", err)
		}
		return &hfTokenizer{tk, p}, nil
	}
	if m.Config.VocabSize <= 256 {
		return ByteTokenizer{}, nil
	}
	return nil, badFile(m.Path, "vocabulary of %d tokens but no %s beside the weights to turn text into tokens", m.Config.VocabSize, TokenizerName)
}
