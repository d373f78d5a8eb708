package formats

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Manifest is manifest.json of our directory: provenance and the hash of every other file.
type Manifest struct {
	Tool    string         `json:"tool"`
	Version string         `json:"version"`
	Source  ManifestSource `json:"source"`
	Notes   []string       `json:"notes,omitempty"`
	Files   []ManifestFile `json:"files"`
}

// ManifestSource says where the model came from.
type ManifestSource struct {
	Path   string `json:"path"` // the source's file or folder name (no directories)
	Format string `json:"format"`
}

// ManifestFile is one file of the directory.
type ManifestFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// File looks up a file entry.
func (m *Manifest) File(name string) *ManifestFile {
	for i := range m.Files {
		if m.Files[i].Name == name {
			return &m.Files[i]
		}
	}
	return nil
}

// ManifestName and ConfigName are the fixed file names of our directory.
const (
	ManifestName = "manifest.json"
	ConfigName   = "config.json"
	ReportName   = "report.json"
)

// WriteOptions controls WriteModel.
type WriteOptions struct {
	DType    DType // convert float tensors to this ("" keeps each as stored)
	Force    bool  // replace an existing directory
	Progress Progress
	Version  string // tool version for the manifest
	// Extra files to place in the directory (name -> content), e.g. a verification report.
	Extra map[string][]byte
}

// ComponentFile is the safetensors file of a component.
func ComponentFile(component string) string { return component + ".safetensors" }

// CheckOutput refuses an existing output unless force (and then only a directory).
func CheckOutput(dir string, force bool) error {
	if st, err := os.Stat(dir); err == nil {
		if !force {
			return &InputError{File: dir, Msg: "already exists (use --force to replace it)"}
		}
		if !st.IsDir() {
			return &InputError{File: dir, Msg: "exists and is not a directory"}
		}
	}
	return nil
}

// PrepareOutputDir refuses an existing dir unless force, and returns a fresh temp dir beside it.
// Call CommitOutputDir to move it into place; on failure remove the temp dir.
func PrepareOutputDir(dir string, force bool) (string, error) {
	if err := CheckOutput(dir, force); err != nil {
		return "", err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dir))+".tmp-*")
}

// CommitOutputDir replaces dir by tmp (the old dir, if any, is removed only after the swap).
func CommitOutputDir(tmp, dir string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// WriteModel writes m as our directory at dir, atomically: everything goes to a temp dir beside
// it that is renamed into place at the end. Tensors are streamed one at a time.
func WriteModel(m *Model, dir string, o WriteOptions) (err error) {
	tmp, err := PrepareOutputDir(dir, o.Force)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	cfg := *m.Config
	// The source by its name only: the manifest travels, the converting machine's paths do not.
	src := ""
	if m.Path != "" {
		src = filepath.Base(filepath.Clean(m.Path))
	}
	man := &Manifest{Tool: "btconvert", Version: o.Version, Source: ManifestSource{Path: src, Format: m.Format}, Notes: m.Notes}
	for _, comp := range cfg.Components() {
		var wts []WriteTensor
		for _, t := range m.ComponentTensors(comp) {
			wts = append(wts, convertForWrite(t, o.DType, &cfg))
		}
		meta := map[string]string{"format": FormatName, "component": comp}
		w, err := WriteSafetensors(filepath.Join(tmp, ComponentFile(comp)), meta, wts, o.Progress)
		if err != nil {
			return err
		}
		man.Files = append(man.Files, ManifestFile{ComponentFile(comp), w.Size, w.SHA256})
	}
	cj, _ := json.MarshalIndent(&cfg, "", "  ")
	files := map[string][]byte{ConfigName: append(cj, '\n')}
	for k, v := range o.Extra {
		files[k] = v
	}
	// A tokenizer beside the source travels with the model.
	if _, ok := files[TokenizerName]; !ok && m.Path != "" {
		srcDir := m.Path
		if st, err := os.Stat(srcDir); err == nil && !st.IsDir() {
			srcDir = filepath.Dir(srcDir)
		}
		if b, err := os.ReadFile(filepath.Join(srcDir, TokenizerName)); err == nil {
			files[TokenizerName] = b
		}
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		w, err := WriteFileAtomic(filepath.Join(tmp, name), files[name])
		if err != nil {
			return err
		}
		man.Files = append(man.Files, ManifestFile{name, w.Size, w.SHA256})
	}
	mj, _ := json.MarshalIndent(man, "", "  ")
	if _, err := WriteFileAtomic(filepath.Join(tmp, ManifestName), append(mj, '\n')); err != nil {
		return err
	}
	return CommitOutputDir(tmp, dir)
}

// convertForWrite converts a float tensor to dtype (quantized parts are written as they are).
func convertForWrite(t *Tensor, dtype DType, cfg *Config) WriteTensor {
	to := t.DType
	if dtype != "" && t.DType.IsFloat() && !cfg.isQuantPart(t) {
		to = dtype
	}
	return WriteTensor{Name: t.Name, DType: to, Shape: t.Shape, Data: func() ([]byte, error) {
		raw, err := t.Raw()
		if err != nil {
			return nil, err
		}
		return ConvertRaw(t.DType, to, raw)
	}, Done: t.Release}
}

// IsModelDir reports whether path is our directory.
func IsModelDir(path string) bool {
	b, err := os.ReadFile(filepath.Join(path, ConfigName))
	if err != nil {
		return false
	}
	var probe struct {
		Format string `json:"format"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.Format == FormatName
}

// OpenModelDir opens our directory: config, manifest, and the component files (mapped).
func OpenModelDir(dir string) (*Model, error) {
	cfg, err := ReadConfig(filepath.Join(dir, ConfigName))
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatName, Path: dir, Config: cfg}
	mp := filepath.Join(dir, ManifestName)
	if b, err := os.ReadFile(mp); err == nil {
		var man Manifest
		if err := json.Unmarshal(b, &man); err != nil {
			return nil, badFile(mp, "not valid JSON: %v", err)
		}
		m.Manifest = &man
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, badFile(mp, "cannot read: %v", err)
	} else {
		return nil, badFile(mp, "missing (every btconvert model directory has one)")
	}
	var tensors []*Tensor
	for _, comp := range cfg.Components() {
		p := filepath.Join(dir, ComponentFile(comp))
		if mf := m.Manifest.File(ComponentFile(comp)); mf != nil {
			if st, err := os.Stat(p); err == nil && st.Size() != mf.Size {
				m.Close()
				return nil, badFile(p, "truncated or changed: %d bytes, the manifest says %d", st.Size(), mf.Size)
			}
		}
		f, err := OpenSafetensors(p)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.closers = append(m.closers, f)
		for _, ti := range f.Tensors {
			name := ti.Name
			tensors = append(tensors, &Tensor{Component: comp, Name: name, DType: ti.DType, Shape: ti.Shape,
				SrcFile: p, SrcName: name, load: func() ([]byte, error) { return f.Raw(name) }, release: func() { f.Release(name) }})
		}
	}
	if m.Tensors, err = checkStored(dir, cfg, tensors); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// OpenOptions says how to read a checkpoint whose files do not say everything.
type OpenOptions struct {
	Config string // architecture file instead of the one beside the weights (YAML or config.json)
	Heads  int    // attention heads of every decoder whose config does not state them
}

// Open opens anything btconvert reads: our directory, an official Block Transformer checkpoint, or
// an HF GPT-NeoX folder (file or folder; sharded or not). o applies to checkpoints only.
func Open(path string, o OpenOptions) (*Model, error) {
	onlyCheckpoints := ""
	switch {
	case o.Config != "":
		onlyCheckpoints = "--config"
	case o.Heads != 0:
		onlyCheckpoints = "--heads"
	}
	if IsBundle(path) {
		if onlyCheckpoints != "" {
			return nil, &InputError{File: path, Msg: "is a btconvert bundle; " + onlyCheckpoints + " applies to checkpoints only"}
		}
		return openBundle(path)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() && IsModelDir(path) {
		if onlyCheckpoints != "" {
			return nil, &InputError{File: path, Msg: "is a btconvert model directory; " + onlyCheckpoints + " applies to checkpoints only"}
		}
		return OpenModelDir(path)
	}
	c, err := OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	var m *Model
	switch {
	case isOfficial(c):
		m, err = openOfficial(c, o)
	case isNeoX(c):
		m, err = openNeoX(c, o)
	default:
		ex := c.Names
		if len(ex) > 3 {
			ex = ex[:3]
		}
		err = badFile(path, "not a Block Transformer or GPT-NeoX checkpoint (tensors begin %v)", ex)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if m.Path == "" {
		m.Path = path
	}
	return m, nil
}

// Describe is a one-line summary of the architecture.
func (c *Config) Describe() string {
	stack := func(d *DecoderConfig) string {
		return fmt.Sprintf("%d layers D=%d (%d heads x %d, FFN %d)", d.Layers, d.Hidden, d.Heads, d.HeadDim, d.Intermediate)
	}
	if !c.IsBlock() {
		return fmt.Sprintf("vanilla GPT-NeoX: %s, V=%d", stack(c.Decoder), c.VocabSize)
	}
	return fmt.Sprintf("Block Transformer: L_B=%d, %s embedder, block decoder %s, token decoder %s, %s decoding r=%d, V=%d",
		c.BlockLength, c.Embedder.Type, stack(c.BlockDecoder), stack(&c.TokenDecoder.DecoderConfig),
		c.TokenDecoder.Decoding, c.TokenDecoder.ExpansionRatio, c.VocabSize)
}
