// Package formats reads and writes checkpoints: safetensors files, the source layouts btconvert
// understands (official Block Transformer, HF GPT-NeoX), and btconvert's own model directory.
package formats

import (
	"errors"
	"fmt"
)

// InputError is a problem with what the user gave us (a file, a tensor, a flag value). The CLI maps
// it to exit status 2. It always names the file and, where there is one, the tensor.
type InputError struct {
	File   string
	Tensor string
	Msg    string
}

func (e *InputError) Error() string {
	switch {
	case e.File != "" && e.Tensor != "":
		return fmt.Sprintf("%s: tensor %q: %s", e.File, e.Tensor, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Tensor != "":
		return fmt.Sprintf("tensor %q: %s", e.Tensor, e.Msg)
	}
	return e.Msg
}

// badFile builds an InputError about a whole file.
func badFile(file, format string, args ...any) error {
	return &InputError{File: file, Msg: fmt.Sprintf(format, args...)}
}

// badTensor builds an InputError about one tensor of a file.
func badTensor(file, tensor, format string, args ...any) error {
	return &InputError{File: file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// IsInputError reports whether err (or anything it wraps) is an InputError.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}
