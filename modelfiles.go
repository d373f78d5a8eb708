package btconvert

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/modeldir"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/fsio"
)

// tokenizerFiles are the tokenizer files to carry into a model folder: the given one, else the
// source's own. A vocabulary of more than 256 tokens without any gets a warning (generation and
// perplexity would need one).
func tokenizerFiles(m *formats.Model, given string, ui UI) (map[string][]byte, error) {
	if given != "" {
		return tokenizer.FilesFor(given, m.Config.VocabSize)
	}
	files, err := tokenizer.Files(m.File)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		// Carried only if it loads and fits the model: a broken one is refused here, not at the
		// first generate.
		where := m.Path
		if st, err := os.Stat(where); err == nil && !st.IsDir() {
			where = filepath.Dir(where) // a checkpoint given as its file: the tokenizer sits beside it
		}
		if _, err := tokenizer.For(func(name string) ([]byte, error) { return files[name], nil }, where, m.Config.VocabSize); err != nil {
			return nil, err
		}
	}
	if len(files) == 0 && m.Config.VocabSize > 256 {
		ui.Note(fmt.Sprintf("warning: %s has a vocabulary of %d tokens but no %s (or %s + %s) beside it; generate and perplexity will need one (give it with {Tokenizer})",
			m.Name(), m.Config.VocabSize, tokenizer.Name, tokenizer.Vocab, tokenizer.Merges))
	}
	return files, nil
}

// recordedReport is the verification report recorded in a model folder (or bundle), or nil.
func recordedReport(m *formats.Model) (*modeldir.Recorded, []byte, error) {
	if m.Format != modeldir.Format && m.Bundle == "" {
		return nil, nil, nil
	}
	return modeldir.ReadReport(m.Path)
}

// modelName is the name a model is shown by: its folder or file name.
func modelName(p string) string {
	return cmp.Or(filepath.Base(filepath.Clean(p)), p)
}

// readText reads a text file (regular files only, within a bound).
func readText(path string) (string, error) {
	b, err := fsio.ReadFile(path, fsio.TextLimit)
	return string(b), err
}
