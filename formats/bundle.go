package formats

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// BundleExt is the extension of a bundle: our directory as one zstd-compressed tar.
const BundleExt = ".btz"

// maxManifest bounds the manifest read from a bundle before anything else is trusted.
const maxManifest = 16 << 20

// IsBundle reports whether path names a bundle.
func IsBundle(path string) bool { return strings.HasSuffix(path, BundleExt) }

// WriteBundle packs our directory dir into path: manifest.json first, then every file the
// manifest lists, each checked against its sha256 as it is read. Written to a temp file and
// renamed at the end.
func WriteBundle(dir, path string, force bool, progress Progress) (err error) {
	if err := CheckOutput(path, force); err != nil {
		return err
	}
	man, mb, err := readManifest(dir)
	if err != nil {
		return err
	}
	hf, err := createAtomic(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			hf.abort()
		}
	}()
	zw, err := zstd.NewWriter(hf, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := add(ManifestName, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return err
	}
	for _, f := range man.Files {
		p := filepath.Join(dir, f.Name)
		fh, err := os.Open(p)
		if err != nil {
			return badFile(p, "listed in the manifest but cannot be read: %v", unwrapPathErr(err))
		}
		h := sha256.New()
		err = add(f.Name, f.Size, io.TeeReader(io.LimitReader(fh, f.Size+1), h))
		fh.Close()
		if err != nil {
			return badFile(p, "does not match the manifest (size %d): %v", f.Size, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return badFile(p, "does not match its sha256 in the manifest (changed after it was written?)")
		}
		if progress != nil {
			progress(f.Name, f.Size)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	_, err = hf.commit(path)
	return err
}

// safeName accepts a plain relative file name of the bundle (no folders, links or escapes).
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`) && path.Clean(name) == name && !filepath.IsAbs(name)
}

// ExtractBundle unpacks a bundle into a new temp folder (removed again on any error), checking
// every entry against the manifest: names must be plain file names it lists, sizes and sha256
// must match, nothing may be missing. It returns the folder.
func ExtractBundle(bundle string) (dir string, err error) {
	f, err := os.Open(bundle)
	if err != nil {
		return "", badFile(bundle, "cannot open: %v", unwrapPathErr(err))
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return "", badFile(bundle, "not a btconvert bundle: %v", err)
	}
	defer zr.Close()
	tmp, err := os.MkdirTemp("", "btconvert-bundle-*")
	if err != nil {
		return "", err
	}
	dir = tmp
	defer func() {
		if err != nil {
			os.RemoveAll(tmp) // dir is "" by now
		}
	}()
	bad := func(format string, args ...any) error { return badFile(bundle, format, args...) }
	readErr := func(e error) error {
		if errors.Is(e, io.ErrUnexpectedEOF) || errors.Is(e, io.EOF) {
			return bad("truncated: the bundle ends in the middle of an entry")
		}
		return bad("corrupt: %v", e)
	}
	tr := tar.NewReader(zr)
	var man *Manifest
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", readErr(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return "", bad("entry %q is not a regular file (links and folders are refused)", hdr.Name)
		}
		if !safeName(hdr.Name) {
			return "", bad("entry %q has an unsafe path", hdr.Name)
		}
		if seen[hdr.Name] {
			return "", bad("entry %q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if man == nil {
			if hdr.Name != ManifestName {
				return "", bad("first entry is %q, want %s", hdr.Name, ManifestName)
			}
			if hdr.Size > maxManifest {
				return "", bad("manifest of %d bytes is too large", hdr.Size)
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxManifest))
			if err != nil {
				return "", readErr(err)
			}
			man = &Manifest{}
			if err := json.Unmarshal(b, man); err != nil {
				return "", bad("manifest is not valid JSON: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
				return "", err
			}
			continue
		}
		mf := man.File(hdr.Name)
		if mf == nil {
			return "", bad("entry %q is not in the manifest", hdr.Name)
		}
		if hdr.Size != mf.Size {
			return "", bad("entry %q is %d bytes, the manifest says %d", hdr.Name, hdr.Size, mf.Size)
		}
		out, err := os.OpenFile(filepath.Join(dir, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(tr, mf.Size))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", readErr(err)
		}
		if n != mf.Size {
			return "", bad("truncated: entry %q has %d of its %d bytes", hdr.Name, n, mf.Size)
		}
		if hex.EncodeToString(h.Sum(nil)) != mf.SHA256 {
			return "", bad("entry %q does not match its sha256 in the manifest", hdr.Name)
		}
	}
	if man == nil {
		return "", bad("empty bundle (no %s)", ManifestName)
	}
	for _, mf := range man.Files {
		if !seen[mf.Name] {
			return "", bad("file %q listed in the manifest is missing", mf.Name)
		}
	}
	return dir, nil
}

// removeDir is a Closer that deletes an extracted bundle.
type removeDir string

func (r removeDir) Close() error { return os.RemoveAll(string(r)) }

// openBundle extracts and opens a bundle; closing the model removes the extracted files.
func openBundle(bundle string) (*Model, error) {
	dir, err := ExtractBundle(bundle)
	if err != nil {
		return nil, err
	}
	m, err := OpenModelDir(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %w", bundle, err)
	}
	m.closers = append(m.closers, removeDir(dir))
	m.Format = "btconvert-bundle"
	m.Bundle = bundle
	return m, nil
}

// Report is the verification report recorded in a model directory (report.json), as JSON.
type Report struct {
	Pass bool `json:"pass"`
}

// ReadReport returns the recorded report of our directory, or nil if it has none.
func ReadReport(dir string) (*Report, []byte, error) {
	p := filepath.Join(dir, ReportName)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, badFile(p, "cannot read: %v", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, badFile(p, "not valid JSON: %v", err)
	}
	return &r, b, nil
}

// RecordReport writes report.json into our directory and updates manifest.json to list it.
func RecordReport(dir string, report []byte) error {
	man, _, err := readManifest(dir)
	if err != nil {
		return err
	}
	w, err := WriteFileAtomic(filepath.Join(dir, ReportName), report)
	if err != nil {
		return err
	}
	entry := ManifestFile{ReportName, w.Size, w.SHA256}
	if f := man.File(ReportName); f != nil {
		*f = entry
	} else {
		man.Files = append(man.Files, entry)
	}
	js, _ := json.MarshalIndent(man, "", "  ")
	_, err = WriteFileAtomic(filepath.Join(dir, ManifestName), append(js, '\n'))
	return err
}

// readManifest reads our directory's manifest.json (parsed, and its bytes).
func readManifest(dir string) (*Manifest, []byte, error) {
	mp := filepath.Join(dir, ManifestName)
	mb, err := os.ReadFile(mp)
	if err != nil {
		return nil, nil, badFile(mp, "cannot read: %v", unwrapPathErr(err))
	}
	var man Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, nil, badFile(mp, "not valid JSON: %v", err)
	}
	return &man, mb, nil
}
