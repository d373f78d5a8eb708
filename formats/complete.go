package formats

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
)

// Expect says how a source holds a model's tensors, for CheckNames: where its tensors are and
// what its messages call a missing and an unexpected one.
type Expect struct {
	// File is the source a missing tensor is reported against (its folder or file).
	File string
	// FileOf is the file holding a present tensor (nil: File).
	FileOf func(name string) string
	// Missing is the message of a missing tensor: "missing from the checkpoint (the architecture needs it)".
	Missing string
	// Unexpected is the message of a present tensor that no spec names.
	Unexpected string
	// Extra, if set, judges a present tensor that no spec names: accepted with a note for the user
	// (a buffer, a tensor the layout knows the model never reads), or refused with the message
	// given ("" for Unexpected).
	Extra func(name string) (msg string, accepted bool)
}

// shown is how many names an error lists beyond the one it is about.
const shown = 5

// CheckNames checks that the tensors present in a source (by their names there) are exactly
// those of specs (name gives a spec's name there; several specs may share one) and the extras
// e.Extra accepts. It returns the notes on the accepted extras, or one error about the first
// missing tensor (else the first unexpected one) that also counts and names the others.
func CheckNames(specs []arch.TensorSpec, name func(arch.TensorSpec) string, present []string, e Expect) ([]string, error) {
	want := map[string]bool{}
	var missing []string
	has := map[string]bool{}
	for _, n := range present {
		has[n] = true
	}
	for _, s := range specs {
		n := name(s)
		if !want[n] && !has[n] {
			missing = append(missing, n)
		}
		want[n] = true
	}
	type refused struct{ name, msg string }
	var notes []string
	var extra []refused
	for _, n := range present {
		if want[n] {
			continue
		}
		msg, ok := "", false
		if e.Extra != nil {
			msg, ok = e.Extra(n)
		}
		if ok {
			notes = append(notes, msg)
			continue
		}
		extra = append(extra, refused{n, cmp.Or(msg, e.Unexpected)})
	}
	if len(missing) == 0 && len(extra) == 0 {
		return notes, nil
	}
	fileOf := func(n string) string {
		if e.FileOf == nil {
			return e.File
		}
		return e.FileOf(n)
	}
	var first *errs.InputError
	unexpected := "unexpected"
	if len(missing) > 0 {
		first = &errs.InputError{File: e.File, Tensor: missing[0], Msg: e.Missing}
		if len(missing) > 1 {
			first.Msg += fmt.Sprintf("; %d more missing: %s", len(missing)-1, list(missing[1:]))
		}
	} else {
		first = &errs.InputError{File: fileOf(extra[0].name), Tensor: extra[0].name, Msg: extra[0].msg}
		extra, unexpected = extra[1:], "more unexpected"
	}
	if len(extra) > 0 {
		names := make([]string, len(extra))
		for i, x := range extra {
			names[i] = x.name
		}
		first.Msg += fmt.Sprintf("; %d %s: %s", len(extra), unexpected, list(names))
	}
	return nil, first
}

// list is the names quoted, the first few of a long list.
func list(names []string) string {
	q := make([]string, 0, shown)
	for _, n := range names[:min(len(names), shown)] {
		q = append(q, fmt.Sprintf("%q", n))
	}
	if len(names) > shown {
		q = append(q, "...")
	}
	return strings.Join(q, ", ")
}
