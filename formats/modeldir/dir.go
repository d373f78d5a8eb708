// Package modeldir is btconvert's own model folder: one safetensors file per component, the
// complete config.json, and manifest.json with the provenance and sha256 of every other file; its
// single-file form, the .btz bundle; and the verification report recorded in it.
package modeldir

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/formats/tokenizer"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/internal/fsio"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Format is Model.Format of a model read from our folder (and the "format" of its config.json).
const Format = arch.FormatName

// Fixed file names of our folder.
const (
	ManifestName = "manifest.json"
	ConfigName   = "config.json"
	ReportName   = "report.json"
)

// ComponentFile is the safetensors file of a component.
func ComponentFile(component string) string { return component + ".safetensors" }

// Manifest is manifest.json: provenance and the hash of every other file.
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
	// Fingerprint identifies the source's weights (formats.Model.Fingerprint): for a quantized
	// model, the base a recorded quality check must compare against.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// ManifestFile is one file of the folder.
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

// WriteOptions controls Write.
type WriteOptions struct {
	DType    safetensors.DType // convert float tensors to this ("" keeps each as stored)
	Force    bool              // replace an existing folder
	Progress safetensors.Progress
	Version  string            // tool version for the manifest
	Extra    map[string][]byte // more files for the folder (tokenizer, report), listed in the manifest
}

// Write writes m as our folder at dir, atomically: everything goes to a temp folder beside it that
// is renamed into place at the end. Tensors are streamed one at a time.
func Write(m *formats.Model, dir string, o WriteOptions) error {
	out, err := fsio.NewDir(dir, o.Force)
	if err != nil {
		return err
	}
	err = WriteInto(m, out.Tmp, o)
	if err == nil {
		err = m.Finish() // what was read was what its manifest says, before anything is put in place
	}
	if err != nil {
		out.Abort()
		return err
	}
	return out.Commit()
}

// WriteInto writes m as our folder into tmp, an empty folder the caller owns (o.Force unused).
func WriteInto(m *formats.Model, tmp string, o WriteOptions) error {
	cfg := *m.Config
	// The source by its name only: the manifest travels, the converting machine's paths do not.
	src := ""
	if m.Path != "" {
		src = filepath.Base(filepath.Clean(m.Path))
	}
	if m.Bundle != "" {
		src = filepath.Base(m.Bundle)
	}
	// What every reader of the folder will check, checked before anything is written: a folder
	// that btconvert would refuse to read is never written.
	cfg.FormatVersion = cfg.Version() // older builds keep reading what they can run
	cj, _ := json.MarshalIndent(&cfg, "", "  ")
	if _, err := parseConfig(m.Name(), cj); err != nil {
		return err
	}
	man := &Manifest{Tool: "btconvert", Version: o.Version, Source: ManifestSource{Path: src, Format: m.Format}, Notes: m.Notes}
	for _, comp := range cfg.Components() {
		var wts []safetensors.WriteTensor
		for _, t := range m.ComponentTensors(comp) {
			to := o.DType
			if !t.DType.IsFloat() || cfg.IsQuantPart(t.Component, t.Name) {
				to = "" // quantized parts are written as they are
			}
			wts = append(wts, t.ToWrite(t.Name, t.Shape, to, nil))
		}
		meta := map[string]string{"format": Format, "component": comp}
		w, err := safetensors.Write(filepath.Join(tmp, ComponentFile(comp)), meta, wts, o.Progress)
		if err != nil {
			return err
		}
		man.Files = append(man.Files, ManifestFile{ComponentFile(comp), w.Size, w.SHA256})
	}
	files := map[string][]byte{ConfigName: append(cj, '\n')}
	for k, v := range o.Extra {
		files[k] = v
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		w, err := fsio.WriteFile(filepath.Join(tmp, name), files[name])
		if err != nil {
			return err
		}
		man.Files = append(man.Files, ManifestFile{name, w.Size, w.SHA256})
	}
	man.Source.Fingerprint = m.Fingerprint() // every tensor has been read by now
	mj, _ := json.MarshalIndent(man, "", "  ")
	_, err := fsio.WriteFile(filepath.Join(tmp, ManifestName), append(mj, '\n'))
	return err
}

// IsDir reports whether path is our folder.
func IsDir(path string) bool {
	b, err := fsio.ReadFile(filepath.Join(path, ConfigName), fsio.ConfigLimit)
	if err != nil {
		return false
	}
	var probe struct {
		Format string `json:"format"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.Format == Format
}

// ReadConfig reads and validates our config.json, quantization records included.
func ReadConfig(path string) (*arch.Config, error) {
	b, err := fsio.ReadFile(path, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	return parseConfig(path, b)
}

// parseConfig validates the bytes of our config.json read from path.
func parseConfig(path string, b []byte) (*arch.Config, error) {
	var c arch.Config
	if err := json.Unmarshal(b, &c); err != nil {
		var mf *arch.MissingFamilyError
		if errors.As(err, &mf) {
			return nil, errs.File(path, "%v", mf)
		}
		return nil, errs.File(path, "not valid JSON: %v", err)
	}
	if c.Format != Format {
		return nil, errs.File(path, "not a btconvert config (format %q)", c.Format)
	}
	if c.FormatVersion < 1 || c.FormatVersion > arch.FormatVersion {
		return nil, errs.File(path, "format_version %d is not supported (this btconvert reads 1 to %d)", c.FormatVersion, arch.FormatVersion)
	}
	if v := c.Version(); c.FormatVersion < v {
		return nil, errs.File(path, "format_version %d, but the config uses what version %d added (decoder families, key/value heads, stop ids)", c.FormatVersion, v)
	}
	if err := c.Validate(); err != nil {
		return nil, errs.File(path, "%v", err)
	}
	if err := validateQuantization(&c); err != nil {
		return nil, errs.File(path, "%v", err)
	}
	return &c, nil
}

// validateQuantization checks every quantization record: it names a 2-D weight of the
// architecture and is consistent with its shape.
func validateQuantization(c *arch.Config) error {
	if len(c.Quantization) == 0 {
		return nil
	}
	specs := map[string]arch.TensorSpec{}
	for _, s := range arch.Tensors(c) {
		specs[s.Key()] = s
	}
	keys := make([]string, 0, len(c.Quantization))
	for k := range c.Quantization {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := specs[k]
		if !ok {
			return fmt.Errorf("quantization[%q]: no such tensor in this architecture", k)
		}
		if s.Role != arch.RoleLinear && s.Role != arch.RoleEmbedding {
			return fmt.Errorf("quantization[%q]: a LayerNorm or bias is never quantized", k)
		}
		q := c.Quantization[k]
		if err := q.Validate(s.Shape); err != nil {
			return fmt.Errorf("quantization[%q]: %v", k, err)
		}
	}
	return nil
}

// ReadManifest reads manifest.json of our folder (parsed, and its bytes).
func ReadManifest(dir string) (*Manifest, []byte, error) {
	mp := filepath.Join(dir, ManifestName)
	if _, err := os.Lstat(mp); os.IsNotExist(err) {
		return nil, nil, errs.File(mp, "missing (every btconvert model folder has one)")
	}
	mb, err := fsio.ReadFile(mp, fsio.ConfigLimit)
	if err != nil {
		return nil, nil, err
	}
	var man Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, nil, errs.File(mp, "not valid JSON: %v", err)
	}
	// Names are checked as a bundle's are: a folder's manifest must not reach out of the folder
	// (export would pack what it names into a bundle).
	if msg := man.invalid(); msg != "" {
		return nil, nil, errs.File(mp, "%s", msg)
	}
	return &man, mb, nil
}

// Open opens our folder: config, manifest, and the component files. Every file it reads is
// checked against the manifest: config.json at once, each component file as its tensors are read
// (the read that completes a file fails if its sha256 differs; Model.Finish checks what was not
// read), and the files beside them (tokenizer, report) through Model.ReadFile.
func Open(dir string) (*formats.Model, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, errs.File(dir, "cannot open: %v", fsio.Unwrap(err))
	} else if !st.IsDir() {
		return nil, errs.File(dir, "is not a folder")
	}
	man, _, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	cb, err := ReadListed(dir, man, ConfigName)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(filepath.Join(dir, ConfigName), cb)
	if err != nil {
		return nil, err
	}
	components := map[string]bool{}
	for _, comp := range cfg.Components() {
		components[ComponentFile(comp)] = true
		if err := CheckFile(dir, man, ComponentFile(comp), false); err != nil {
			return nil, err
		}
	}
	// The small files (tokenizer, report) are hashed now, whether or not this command reads them:
	// a command that passes must not have passed over a changed file. The weights are hashed as
	// they stream (Finish completes that).
	for _, f := range man.Files {
		if !components[f.Name] && f.Name != ConfigName {
			if err := CheckFile(dir, man, f.Name, true); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range append([]string{ReportName}, tokenizer.FileNames...) {
		if man.File(name) != nil {
			continue
		}
		if _, err := readBeside(dir, man, name); err != nil { // one added since: refused
			return nil, err
		}
	}
	m := &formats.Model{Format: Format, Path: dir, Config: cfg, Notes: man.Notes, MadeFrom: man.Source.Fingerprint,
		ReadFile: func(name string) ([]byte, error) { return readBeside(dir, man, name) }}
	var tensors []*formats.Tensor
	for _, comp := range cfg.Components() {
		p := filepath.Join(dir, ComponentFile(comp))
		f, err := safetensors.Open(p)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.OnClose(f)
		m.OnFinish(f.Finish)
		if err := f.Expect(man.File(ComponentFile(comp)).SHA256, ManifestName); err != nil {
			m.Close()
			return nil, err
		}
		for _, ti := range f.Tensors {
			name, dt := ti.Name, ti.DType
			load := func() ([]byte, error) { return f.Raw(name) }
			base, codes := strings.CutSuffix(name, scheme.QWeightSuffix)
			switch q := cfg.QuantOf(comp, base); {
			case cfg.IsQuantPart(comp, name) && !codes:
				load = func() ([]byte, error) { return checkedScales(p, name, dt, f) }
			case codes && q != nil && q.Scheme() != nil && q.Scheme().GGML != nil:
				load = func() ([]byte, error) { return checkedBlocks(p, name, q, f) }
			}
			tensors = append(tensors, formats.NewTensor(comp, name, dt, ti.Shape, p, name, load))
		}
	}
	specs := arch.StoredTensors(cfg)
	keys, fileOf := make([]string, len(tensors)), map[string]string{}
	for i, t := range tensors {
		keys[i], fileOf[t.Key()] = t.Key(), t.SrcFile
	}
	_, err = formats.CheckNames(specs, arch.TensorSpec.Key, keys, formats.Expect{File: dir, FileOf: func(k string) string { return fileOf[k] },
		Missing: "missing (the architecture needs it)", Unexpected: "not used by the architecture in " + ConfigName})
	if err == nil {
		m.Tensors, err = formats.Match(dir, specs, nil, tensors)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// checkedScales reads a quantized tensor's scales or minimums and refuses any that is not finite
// or past scheme.MaxScale, naming the file, the tensor and the row.
func checkedScales(file, name string, dt safetensors.DType, f *safetensors.File) ([]byte, error) {
	raw, err := f.Raw(name)
	if err != nil {
		return nil, err
	}
	v, err := safetensors.ToFloat32(dt, raw)
	if err != nil {
		return nil, errs.Tensor(file, name, "%v", err)
	}
	for i, x := range v {
		if scheme.BadScale(x) {
			return nil, errs.Tensor(file, name, "value %d is %g: a quantization scale or minimum must be finite and at most %g in size", i, x, scheme.MaxScale)
		}
	}
	return raw, nil
}

// checkedBlocks reads a tensor in llama.cpp's blocks and refuses a block whose f16 scale or
// minimum checkedScales would refuse, naming the file, the tensor and the block.
func checkedBlocks(file, name string, q *scheme.Quantization, f *safetensors.File) ([]byte, error) {
	raw, err := f.Raw(name)
	if err != nil {
		return nil, err
	}
	var bad error
	q.Scheme().GGML.Scales(raw, func(block int, x float32) bool {
		if scheme.BadScale(x) {
			bad = errs.Tensor(file, name, "block %d's scale or minimum is %g: a quantization scale or minimum must be finite and at most %g in size", block, x, scheme.MaxScale)
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	return raw, nil
}

// ReadListed reads one file of the folder that the manifest must list, checked against its size
// and sha256 (the bytes returned are the bytes checked).
func ReadListed(dir string, man *Manifest, name string) ([]byte, error) {
	p := filepath.Join(dir, name)
	mf := man.File(name)
	if mf == nil {
		return nil, errs.File(p, "not listed in %s (added after the folder was written?)", ManifestName)
	}
	b, err := fsio.ReadFile(p, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != mf.Size {
		return nil, errs.File(p, "truncated or changed: %d bytes, the manifest says %d", len(b), mf.Size)
	}
	if sum := digest.Sum256(b); hex.EncodeToString(sum[:]) != mf.SHA256 {
		return nil, errs.File(p, "does not match its sha256 in %s (changed after it was written)", ManifestName)
	}
	return b, nil
}

// readBeside is Model.ReadFile of our folder: a file the manifest lists, checked; nil, nil for one
// that is neither listed nor present; an error for one that is present but not listed (nothing
// btconvert wrote, so nothing it uses).
func readBeside(dir string, man *Manifest, name string) ([]byte, error) {
	if man.File(name) == nil {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return nil, errs.File(filepath.Join(dir, name), "not listed in %s (added after the folder was written?); not used", ManifestName)
		}
		return nil, nil
	}
	return ReadListed(dir, man, name)
}

// CheckFile checks one file of the folder against its manifest entry: listed, same size, and
// (withHash) the same sha256.
func CheckFile(dir string, man *Manifest, name string, withHash bool) error {
	p := filepath.Join(dir, name)
	mf := man.File(name)
	if mf == nil {
		return errs.File(p, "not listed in %s", ManifestName)
	}
	f, st, err := fsio.OpenRegular(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if st.Size() != mf.Size {
		return errs.File(p, "truncated or changed: %d bytes, the manifest says %d", st.Size(), mf.Size)
	}
	if !withHash {
		return nil
	}
	h := digest.New()
	if _, err := io.Copy(h, f); err != nil {
		return errs.File(p, "cannot read: %v", fsio.Unwrap(err))
	}
	if hex.EncodeToString(h.Sum(nil)) != mf.SHA256 {
		return errs.File(p, "does not match its sha256 in %s (changed after it was written)", ManifestName)
	}
	return nil
}
