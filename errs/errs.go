// Package errs holds the two kinds of error btconvert's library packages return for something the
// caller gave them: InputError (a file or tensor is wrong) and OptionError (an option value is
// wrong). Front ends map both to "bad input"; everything else is a failure of the run.
//
// Messages name options by their Go field ({GroupSize} in a message template). Error() prints the
// field name; a front end prints its own spelling with Render (the CLI: --group-size).
package errs

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// InputError is a problem with what the user gave: a file, a tensor in it, or a value it holds. It
// names the file and, where there is one, the tensor.
type InputError struct {
	File   string
	Tensor string
	Msg    string // may name options as {Field}
}

func (e *InputError) Error() string { return e.render(plain) }

func (e *InputError) render(spell func(string) string) string {
	msg := spellOptions(e.Msg, spell)
	switch {
	case e.File != "" && e.Tensor != "":
		return fmt.Sprintf("%s: tensor %q: %s", e.File, e.Tensor, msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, msg)
	case e.Tensor != "":
		return fmt.Sprintf("tensor %q: %s", e.Tensor, msg)
	}
	return msg
}

// File builds an InputError about a whole file.
func File(file, format string, args ...any) error {
	return &InputError{File: file, Msg: fmt.Sprintf(format, args...)}
}

// Tensor builds an InputError about one tensor of a file.
func Tensor(file, tensor, format string, args ...any) error {
	return &InputError{File: file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// OptionError is an option value the library cannot use. Option is the options struct's field
// (e.g. "GroupSize"); Value is what was given (nil when the message says it all).
type OptionError struct {
	Option string
	Value  any
	Msg    string // may name other options as {Field}
}

func (e *OptionError) Error() string { return e.render(plain) }

func (e *OptionError) render(spell func(string) string) string {
	msg := spellOptions(e.Msg, spell)
	if e.Value == nil {
		return spell(e.Option) + ": " + msg
	}
	v := fmt.Sprint(e.Value)
	if s, ok := e.Value.(string); ok {
		v = fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%s %s: %s", spell(e.Option), v, msg)
}

// Option builds an OptionError.
func Option(option string, value any, format string, args ...any) error {
	return &OptionError{Option: option, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// IsInput reports whether err (or what it wraps) is bad input: an InputError or an OptionError.
func IsInput(err error) bool {
	var ie *InputError
	var oe *OptionError
	return errors.As(err, &ie) || errors.As(err, &oe)
}

var optionRef = regexp.MustCompile(`\{([A-Z][A-Za-z0-9]*)\}`)

func plain(field string) string { return field }

func spellOptions(msg string, spell func(string) string) string {
	return optionRef.ReplaceAllStringFunc(msg, func(m string) string { return spell(m[1 : len(m)-1]) })
}

// Spell is msg with its {Field} option references spelled by spell (a front end uses it for
// notes and warnings that name options).
func Spell(msg string, spell func(field string) string) string { return spellOptions(msg, spell) }

// Render is err's message with options spelled by spell (a front end's names for them). Text that
// wraps an InputError or OptionError (fmt.Errorf("...: %w", err)) is kept.
func Render(err error, spell func(field string) string) string {
	var ie *InputError
	var oe *OptionError
	var inner interface {
		error
		render(func(string) string) string
	}
	switch {
	case errors.As(err, &oe):
		inner = oe
	case errors.As(err, &ie):
		inner = ie
	default:
		return err.Error()
	}
	full := err.Error()
	if prefix, ok := strings.CutSuffix(full, inner.Error()); ok {
		return prefix + inner.render(spell)
	}
	return full
}
