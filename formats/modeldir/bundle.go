package modeldir

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/klauspost/compress/zstd"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/digest"
	"github.com/btconvert/btconvert/internal/fsio"
)

// BundleExt is the extension of a bundle: our folder as one zstd-compressed tar.
const BundleExt = ".btz"

// maxManifest bounds the manifest read from a bundle before anything else is trusted.
const maxManifest = 16 << 20

// IsBundle reports whether path names a bundle.
func IsBundle(path string) bool { return strings.HasSuffix(path, BundleExt) }

// readError marks a failure to read an input while writing an output.
type readError struct{ err error }

func (r readError) Error() string { return r.err.Error() }

type taggedReader struct{ r io.Reader }

func (t taggedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// BundleFile is the kind of file WriteBundle writes, so that --force replaces bundles only: a
// zstd stream whose tar starts with the manifest.
var BundleFile = fsio.FileKind("btconvert bundle", func(f *os.File) bool {
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(bundleMaxWindow))
	if err != nil {
		return false
	}
	defer zr.Close()
	hdr, err := tar.NewReader(zr).Next()
	return err == nil && hdr.Name == ManifestName
})

// WriteBundle packs our folder dir into path: manifest.json first, then every file the manifest
// lists, each checked against its size and sha256 as it is read. Written under a temp name and
// renamed at the end.
func WriteBundle(dir, path string, force bool, progress safetensors.Progress) (fsio.Written, error) {
	man, mb, err := ReadManifest(dir)
	if err != nil {
		return fsio.Written{}, err
	}
	out, err := fsio.CreateOutput(path, force, BundleFile)
	if err != nil {
		return fsio.Written{}, err
	}
	if err := writeBundle(out, dir, man, mb, progress); err != nil {
		out.Abort()
		return fsio.Written{}, err
	}
	return out.Commit()
}

func writeBundle(out io.Writer, dir string, man *Manifest, mb []byte, progress safetensors.Progress) error {
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.Copy(tw, taggedReader{r})
		return err
	}
	if err := add(ManifestName, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return err
	}
	for _, f := range man.Files {
		p := filepath.Join(dir, f.Name)
		fh, st, err := fsio.OpenRegular(p)
		if err != nil {
			return err
		}
		if st.Size() != f.Size {
			fh.Close()
			return errs.File(p, "is %d bytes, the manifest says %d (changed after it was written?)", st.Size(), f.Size)
		}
		h := digest.New()
		err = add(f.Name, f.Size, io.TeeReader(io.LimitReader(fh, f.Size), h))
		fh.Close()
		var re readError
		switch {
		case errors.As(err, &re):
			return errs.File(p, "cannot read: %v", fsio.Unwrap(re.err))
		case errors.Is(err, tar.ErrWriteTooLong), errors.Is(err, io.ErrShortWrite):
			return errs.File(p, "does not match the manifest (size %d)", f.Size)
		case err != nil:
			return writeErr(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return errs.File(p, "does not match its sha256 in the manifest (changed after it was written?)")
		}
		if progress != nil {
			progress(f.Name, f.Size)
		}
	}
	if err := tw.Close(); err != nil {
		return writeErr(err)
	}
	return writeErr(zw.Close())
}

func writeErr(err error) error {
	if err == nil {
		return nil
	}
	if fsio.IsNoSpace(err) {
		return fmt.Errorf("no space left on the device")
	}
	return err
}

// safeName accepts a plain file name of the bundle (no folders, links or escapes).
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`) && path.Clean(name) == name && !filepath.IsAbs(name) &&
		strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

// ExtractBundle unpacks a bundle into a new temp folder (removed again on any error), checking
// every entry against the manifest: names must be plain file names it lists, sizes and sha256
// must match, nothing may be missing, and nothing may follow the archive's end. The manifest's
// sizes are checked against the free space first, and no entry is written past its declared
// size. It returns the folder, locked against other runs' sweeps until Abort (which removes it).
func ExtractBundle(bundle string) (*fsio.Output, error) {
	f, st, err := fsio.OpenRegular(bundle)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := oneFrame(bundle, f, st.Size()); err != nil {
		return nil, err
	}
	// oneFrame has checked the window the frame declares against bundleMaxWindow: the decoder
	// allocates what it declares.
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(bundleMaxWindow))
	if err != nil {
		return nil, errs.File(bundle, "not a btconvert bundle: %v", err)
	}
	defer zr.Close()
	fsio.Sweep(os.TempDir())
	out, err := fsio.NewTempDir("extract")
	if err != nil {
		return nil, err
	}
	if err := extract(bundle, zr, out.Tmp, st.Size()); err != nil {
		out.Abort()
		return nil, err
	}
	return out, nil
}

func extract(bundle string, zr io.Reader, dir string, packed int64) error {
	bad := func(format string, args ...any) error { return errs.File(bundle, format, args...) }
	readErr := func(e error) error {
		switch {
		case errors.Is(e, io.ErrUnexpectedEOF) || errors.Is(e, io.EOF):
			return bad("truncated: the bundle ends in the middle of an entry")
		case fsio.IsNoSpace(e):
			return fmt.Errorf("extracting %s: no space left on the device", bundle)
		}
		return bad("corrupt: %v", e)
	}
	tr := tar.NewReader(zr)
	var man *Manifest
	var extracted int64
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return readErr(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return bad("entry %q is not a regular file (links and folders are refused)", hdr.Name)
		}
		if !safeName(hdr.Name) {
			return bad("entry %q has an unsafe path", hdr.Name)
		}
		if seen[hdr.Name] {
			return bad("entry %q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if man == nil {
			if hdr.Name != ManifestName {
				return bad("first entry is %q, want %s", hdr.Name, ManifestName)
			}
			if hdr.Size > maxManifest {
				return bad("manifest of %d bytes is too large", hdr.Size)
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxManifest))
			if err != nil {
				return readErr(err)
			}
			man = &Manifest{}
			if err := json.Unmarshal(b, man); err != nil {
				return bad("manifest is not valid JSON: %v", err)
			}
			if err := checkManifest(bundle, man, dir); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
				return readErr(err)
			}
			continue
		}
		mf := man.File(hdr.Name)
		if mf == nil {
			return bad("entry %q is not in the manifest", hdr.Name)
		}
		if hdr.Size != mf.Size {
			return bad("entry %q is %d bytes, the manifest says %d", hdr.Name, hdr.Size, mf.Size)
		}
		// Bounded before a byte is written: a tiny bundle of compressed zeros would otherwise fill
		// the disk before the entry's hash could refuse it.
		if extracted += mf.Size; extracted > maxRatio*max(packed, 1) {
			return bad("its entries hold %s in a bundle of %s: more than %dx compression, which no model reaches; not extracted",
				humanize.IBytes(uint64(extracted)), humanize.IBytes(uint64(packed)), maxRatio)
		}
		w, err := os.OpenFile(filepath.Join(dir, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return readErr(err)
		}
		h := digest.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(tr, mf.Size))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return readErr(err)
		}
		if n != mf.Size {
			return bad("truncated: entry %q has %d of its %d bytes", hdr.Name, n, mf.Size)
		}
		if hex.EncodeToString(h.Sum(nil)) != mf.SHA256 {
			return bad("entry %q does not match its sha256 in the manifest", hdr.Name)
		}
	}
	if man == nil {
		return bad("empty bundle (no %s)", ManifestName)
	}
	for _, mf := range man.Files {
		if !seen[mf.Name] {
			return bad("file %q listed in the manifest is missing", mf.Name)
		}
	}
	// Past the tar's end only its zero padding may follow (tar writers pad to at most a 10 KiB
	// record; more is refused, so a stream of compressed zeros cannot keep us reading); reading to
	// the end of the zstd stream also checks the frame checksum and refuses bytes after the frame.
	rest, err := io.Copy(zeroOnly{}, io.LimitReader(zr, maxTarPadding+1))
	switch {
	case errors.Is(err, errNotZero):
		return bad("data after the end of the archive")
	case err != nil:
		return bad("corrupt after the archive's end: %v", err)
	case rest > maxTarPadding:
		return bad("data after the end of the archive (more than %d bytes of padding)", maxTarPadding)
	}
	return nil
}

var errNotZero = errors.New("non-zero byte")

// maxTarPadding is the most zero padding accepted after the tar's end.
const maxTarPadding = 64 << 10

// zeroOnly accepts zero bytes only.
type zeroOnly struct{}

func (zeroOnly) Write(p []byte) (int, error) {
	for i, b := range p {
		if b != 0 {
			return i, errNotZero
		}
	}
	return len(p), nil
}

// bundleMaxWindow is the largest zstd window a bundle may declare: the zstd tool's own default
// decoding limit (--long=27). btconvert writes 8 MiB windows.
const bundleMaxWindow = 128 << 20

// maxEntries bounds the files of a bundle (a model folder has its components, config, manifest,
// tokenizer and report files: about ten).
const maxEntries = 256

// maxRatio bounds how much larger than the bundle its extracted files may be. Weights compress
// little (float weights about 1.1x, quantized ones not at all) and the text files of a folder
// about 5x; zstd itself reaches about 30,000x on zeros, which is how a tiny bundle would fill the
// disk before any hash could refuse it.
const maxRatio = 1000

// invalid says what is wrong with the manifest's entries, "" if nothing: too many, a name that is
// not a plain file name of the folder (a path out of it, a folder, control characters), itself,
// a name listed twice, an impossible size. The one rule for a folder's manifest and a bundle's.
func (man *Manifest) invalid() string {
	if len(man.Files) > maxEntries {
		return fmt.Sprintf("lists %d files; a model folder has at most %d", len(man.Files), maxEntries)
	}
	names := map[string]bool{}
	for _, mf := range man.Files {
		switch {
		case !safeName(mf.Name):
			return fmt.Sprintf("lists an unsafe file name %q", mf.Name)
		case mf.Name == ManifestName:
			return "lists itself"
		case names[mf.Name]:
			return fmt.Sprintf("lists %q twice", mf.Name)
		case mf.Size < 0 || mf.Size > 1<<50:
			return fmt.Sprintf("gives %q an impossible size %d", mf.Name, mf.Size)
		}
		names[mf.Name] = true
	}
	return ""
}

// checkManifest refuses a manifest whose entries could not be extracted safely (invalid), or
// that needs more bytes than the disk has free.
func checkManifest(bundle string, man *Manifest, dir string) error {
	if msg := man.invalid(); msg != "" {
		return errs.File(bundle, "manifest %s", msg)
	}
	var total int64
	for _, mf := range man.Files {
		// Only weights are large: the small files are read whole, within fsio.ConfigLimit, and one
		// past it would be extracted in full before a reader refused it.
		if !strings.HasSuffix(mf.Name, ".safetensors") && mf.Size > fsio.ConfigLimit {
			return errs.File(bundle, "manifest gives %q %s, more than the %s a model folder's small file may have", mf.Name,
				humanize.IBytes(uint64(mf.Size)), humanize.IBytes(fsio.ConfigLimit))
		}
		total += mf.Size // at most maxEntries x 2^50 (invalid): no overflow
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil {
		if free := int64(st.Bavail) * int64(st.Bsize); total > free {
			return errs.File(bundle, "extracting needs %s but %s has %s free (set TMPDIR to a larger disk)", humanize.IBytes(uint64(total)), filepath.Dir(dir), humanize.IBytes(uint64(free)))
		}
	}
	return nil
}

// OpenBundle extracts and opens a bundle; closing the model removes the extracted files. Errors
// name the bundle, not the temp folder.
func OpenBundle(bundle string) (*formats.Model, error) {
	out, err := ExtractBundle(bundle)
	if err != nil {
		return nil, err
	}
	dir := out.Tmp
	m, err := Open(dir) // the extraction checked every hash (and reading checks them again)
	if err != nil {
		out.Abort()
		return nil, renamePath(err, dir, bundle)
	}
	m.OnClose(removeDir{out})
	m.Format = Format + "-bundle"
	m.Bundle = bundle
	// Errors name the bundle and its entry, never the temp folder it was extracted to.
	rename := func(err error) error {
		if err == nil {
			return nil
		}
		return renamePath(err, dir, bundle)
	}
	for i, t := range m.Tensors {
		orig := t
		m.Tensors[i] = t.WithLoad(t.Component, t.Name, t.Shape, func() ([]byte, error) {
			b, err := orig.Raw()
			return b, rename(err)
		})
		m.Tensors[i].SrcFile = bundle + ": " + filepath.Base(t.SrcFile)
	}
	read := m.ReadFile
	m.ReadFile = func(name string) ([]byte, error) {
		b, err := read(name)
		return b, rename(err)
	}
	m.WrapFinishError(rename)
	return m, nil
}

// renamePath rewrites a bad-input error about a file in dir as one about that entry of the
// bundle.
func renamePath(err error, dir, bundle string) error {
	var ie *errs.InputError
	if errors.As(err, &ie) && strings.HasPrefix(ie.File, dir) {
		c := *ie
		c.File = bundle + ": " + strings.TrimPrefix(strings.TrimPrefix(ie.File, dir), "/")
		if ie.File == dir {
			c.File = bundle
		}
		return &c
	}
	return fmt.Errorf("%s: %w", bundle, err)
}

// removeDir is a Closer that deletes an extracted bundle.
type removeDir struct{ out *fsio.Output }

func (r removeDir) Close() error {
	r.out.Abort()
	return nil
}

// oneFrame checks that the file is exactly one standard zstd frame, as btconvert writes a bundle:
// the decoder would pass over skippable frames (anything, of any size) before or after it, and
// read further frames after it, so the frame's structure is walked first (block headers only, no
// decompression) and must end where the file ends.
func oneFrame(bundle string, f io.ReaderAt, size int64) error {
	bad := func(format string, args ...any) error {
		return errs.File(bundle, "not a btconvert bundle: "+format, args...)
	}
	var b [18]byte // magic, frame header, window, dictionary id and content size at their largest
	if n, _ := f.ReadAt(b[:], 0); n < 6 {
		return bad("too short")
	}
	if m := binary.LittleEndian.Uint32(b[:4]); m != 0xFD2FB528 {
		if m&0xFFFFFFF0 == 0x184D2A50 {
			return bad("it starts with a skippable zstd frame (a bundle is one zstd frame and nothing else)")
		}
		return bad("no zstd frame at the start")
	}
	fhd := b[4]
	if fhd&0x08 != 0 {
		return bad("reserved bit of the frame header set")
	}
	single := fhd&0x20 != 0
	off := int64(5)
	var window uint64
	if !single {
		wd := b[5] // window descriptor: exponent and eighths
		window = 1 << (10 + wd>>3)
		window += window / 8 * uint64(wd&7)
		off++
	}
	off += []int64{0, 1, 2, 4}[fhd&3] // dictionary id
	fcs := []int64{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	if single { // the window is the content size
		var c [8]byte
		copy(c[:], b[off:off+fcs])
		window = binary.LittleEndian.Uint64(c[:])
		if fcs == 2 {
			window += 256
		}
	}
	if window > bundleMaxWindow {
		return bad("its zstd frame declares a window of %s; btconvert decodes windows of up to %s, as the zstd tool does by default (recompress with zstd --long=27 or less)",
			humanize.IBytes(window), humanize.IBytes(bundleMaxWindow))
	}
	off += fcs
	for {
		var h [3]byte
		if n, _ := f.ReadAt(h[:], off); n < 3 {
			return bad("truncated: the zstd frame ends in the middle of a block")
		}
		v := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		last, typ, n := v&1 == 1, (v>>1)&3, int64(v>>3)
		off += 3
		switch typ {
		case 1: // RLE: one byte repeated
			off++
		case 3:
			return bad("reserved zstd block type")
		default: // raw or compressed: n bytes
			off += n
		}
		if off > size {
			return bad("truncated: the zstd frame ends in the middle of a block")
		}
		if last {
			break
		}
	}
	if fhd&0x04 != 0 {
		off += 4 // content checksum
	}
	switch {
	case off > size:
		return bad("truncated: the zstd frame's checksum is missing")
	case off < size:
		return bad("%d bytes after the zstd frame (a bundle is one zstd frame and nothing else)", size-off)
	}
	return nil
}
