package backend

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/gomlx/go-xla/pjrt"
	"k8s.io/klog/v2"

	"github.com/btconvert/btconvert/errs"
)

// notPlugin names a file type that cannot be a PJRT plugin.
func notPlugin(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// elfMachine is the ELF machine each architecture's shared libraries are built for.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "ppc64": elf.EM_PPC64, "s390x": elf.EM_S390,
	"loong64": elf.EM_LOONGARCH,
}

// CheckPlugin says, without loading it, whether path can be a PJRT plugin; the error is an
// errs.InputError naming path. It runs before anything hands the file to dlopen, which cannot be
// made safe from the outside: dlopen blocks forever on a named pipe, dies of SIGBUS on a shared
// library cut short (it maps segments past the end of the file), and GoMLX calls whatever
// GetPjrtApi resolves to, even a null weak symbol. So: a regular file (symlinks followed), an ELF
// shared library for this machine whose loadable segments lie within the file, defining the
// function GetPjrtApi.
func CheckPlugin(path string) error {
	fi, err := os.Stat(path) // before any open: opening a named pipe blocks
	if err != nil {
		return statError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return errs.File(path, "%s, not a PJRT plugin", notPlugin(fi.Mode()))
	}
	// O_NONBLOCK: should a named pipe take the file's place after the Stat, the open still returns.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return statError(path, err)
	}
	defer f.Close()
	if now, err := f.Stat(); err != nil || !now.Mode().IsRegular() || !os.SameFile(fi, now) {
		return errs.File(path, "changed while it was being read; try again")
	}
	size := fi.Size()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != elf.ELFMAG {
		if size == 0 {
			return errs.File(path, "empty, not a PJRT plugin")
		}
		return errs.File(path, "no ELF header, so not a shared library or PJRT plugin")
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return damaged(path, err)
	}
	if ef.Type != elf.ET_DYN {
		return errs.File(path, "an ELF file of type %s, not a shared library, so not a PJRT plugin", ef.Type)
	}
	if want, ok := elfMachine[runtime.GOARCH]; ok && ef.Machine != want {
		return errs.File(path, "a shared library for %s, not for this machine (%s, %s)", ef.Machine, runtime.GOARCH, want)
	}
	for _, p := range ef.Progs {
		if end := p.Off + p.Filesz; p.Type == elf.PT_LOAD && (end < p.Off || end > uint64(size)) {
			return errs.File(path, "truncated: %d bytes, but its code and data run to byte %d", size, end)
		}
	}
	syms, err := ef.DynamicSymbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return errs.File(path, "a shared library without GetPjrtApi (it exports no symbols), so not a PJRT plugin")
	}
	if err != nil {
		return damaged(path, err)
	}
	for _, s := range syms {
		if s.Name == pjrt.GetPJRTApiFunctionName && s.Section != elf.SHN_UNDEF && s.Value != 0 &&
			(elf.ST_TYPE(s.Info) == elf.STT_FUNC || elf.ST_TYPE(s.Info) == elf.STT_GNU_IFUNC) {
			return nil
		}
	}
	return errs.File(path, "a shared library without GetPjrtApi, so not a PJRT plugin")
}

func statError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errs.File(path, "no such file")
	case errors.Is(err, fs.ErrPermission):
		return errs.File(path, "cannot be read (permission denied)")
	}
	return errs.File(path, "cannot be read (%v)", err)
}

func damaged(path string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errs.File(path, "truncated: the file ends inside its ELF headers")
	}
	return errs.File(path, "a damaged shared library: %v", err)
}

var dlopenError = regexp.MustCompile(`failed to dynamically load PJRT plugin from "(.*)": "`)

// loadPlugin checks path (CheckPlugin) and loads it through GoMLX, which keeps it loaded for the
// backend started from it. The error is an errs.InputError naming path.
func loadPlugin(path string) (p *pjrt.Plugin, err error) {
	if err := CheckPlugin(path); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, errs.File(path, "not a working PJRT plugin: loading it failed with %v", r)
		}
	}()
	klog.SetLogger(logr.Discard()) // GoMLX logs the failure to stderr as well; the error says it
	p, err = pjrt.GetPlugin(path)
	if err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if m := dlopenError.FindStringSubmatch(msg); m != nil {
			return nil, errs.File(path, "dlopen: %s", m[1]) // the loader's own words, e.g. a missing library
		}
		msg = strings.TrimPrefix(msg, fmt.Sprintf("failed to load PJRT plugin for name %q: ", path))
		return nil, errs.File(path, "not a working PJRT plugin: %s", msg)
	}
	if p == nil {
		// GoMLX returns neither plugin nor error when GetPjrtApi returns NULL.
		return nil, errs.File(path, "not a working PJRT plugin: GetPjrtApi returned no API")
	}
	quick.Lock()
	quick.loaded = true // XLA_FLAGS changed from now on would not be read
	quick.Unlock()
	return p, nil
}

// failure is what is wrong with a plugin, without its path (the caller names it).
func failure(err error) string {
	var ie *errs.InputError
	if errors.As(err, &ie) && ie.Tensor == "" {
		return ie.Msg
	}
	return err.Error()
}
