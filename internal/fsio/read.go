// Package fsio is btconvert's file system discipline: inputs are read only from regular files and
// within a bound; outputs are written beside their destination under a temp name and renamed into
// place in one step at the end (never replacing what appeared meanwhile unless asked), and temp
// outputs left by a killed run are swept by the next one.
package fsio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/btconvert/btconvert/errs"
)

// OpenRegular opens path for reading if it is a regular file (not a FIFO, device or folder, which
// could block or never end).
func OpenRegular(path string) (*os.File, os.FileInfo, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer before we can look at what it is.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, errs.File(path, "cannot open: %v", Unwrap(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, errs.File(path, "cannot stat: %v", Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		f.Close()
		what := "not a regular file"
		if st.IsDir() {
			what = "a folder"
		}
		return nil, nil, errs.File(path, "is %s (only regular files are read)", what)
	}
	if err := clearNonblock(f); err != nil {
		f.Close()
		return nil, nil, errs.File(path, "cannot open: %v", err)
	}
	return f, st, nil
}

func clearNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// ReadFile reads a regular file of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, st, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, errs.File(path, "is %d bytes, more than the %d this file may have", st.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, errs.File(path, "cannot read: %v", Unwrap(err))
	}
	if int64(len(b)) > limit {
		return nil, errs.File(path, "grew past %d bytes while being read", limit)
	}
	return b, nil
}

// Limits of the small files btconvert reads whole.
const (
	ConfigLimit = 64 << 20  // config.json, config.yaml, manifests, indexes, tokenizers
	TextLimit   = 256 << 20 // evaluation and calibration texts (their tokens take 4 bytes each)
	PromptLimit = 1 << 20   // a prompt: far more than any model's context
)

// Exists reports whether path names a regular file.
func Exists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Unwrap drops the *PathError around an error (its path is already in our messages).
func Unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// IsNoSpace reports a full disk or quota (the message then blames the output, not the input).
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeError words a failure to write an output.
func writeError(path string, err error) error {
	if IsNoSpace(err) {
		return fmt.Errorf("writing %s: no space left on the device", path)
	}
	return fmt.Errorf("writing %s: %v", path, Unwrap(err))
}
