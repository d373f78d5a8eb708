package errs_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/btconvert/btconvert/errs"
)

// flag spells a field as the command line does (GroupSize -> --groupsize is enough here).
func flag(field string) string { return "--" + strings.ToLower(field) }

func TestMessages(t *testing.T) {
	for _, c := range []struct {
		err          error
		plain, flags string
	}{
		{errs.Tensor("/m/model.safetensors", "embed_in.weight", "dtype %s is not a float type", "I16"),
			`/m/model.safetensors: tensor "embed_in.weight": dtype I16 is not a float type`, ""},
		{errs.File("/m", "no config.yaml: give {Config} or {Heads}"),
			"/m: no config.yaml: give Config or Heads", "/m: no config.yaml: give --config or --heads"},
		{&errs.InputError{Tensor: "x", Msg: "bad"}, `tensor "x": bad`, ""},
		{&errs.InputError{Msg: "bad {Decoding}"}, "bad Decoding", "bad --decoding"},
		{errs.Option("GroupSize", 3, "must be even"), "GroupSize 3: must be even", "--groupsize 3: must be even"},
		{errs.Option("Method", "shuffle", "want partition or {Skip}"), `Method "shuffle": want partition or Skip`, `--method "shuffle": want partition or --skip`},
		{errs.Option("Config", nil, "the Block config does not fit"), "Config: the Block config does not fit", "--config: the Block config does not fit"},
		// Text around a wrapped error is kept; only the error's own options are spelled.
		{fmt.Errorf("import {Config}: %w", errs.File("/m", "give {Heads}")), "import {Config}: /m: give Heads", "import {Config}: /m: give --heads"},
		{errors.New("disk full {Config}"), "disk full {Config}", ""},
	} {
		if got := c.err.Error(); got != c.plain {
			t.Errorf("Error() %q, want %q", got, c.plain)
		}
		want := c.flags
		if want == "" {
			want = c.plain
		}
		if got := errs.Render(c.err, flag); got != want {
			t.Errorf("Render %q, want %q", got, want)
		}
	}
}

func TestIsInput(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errs.File("/m", "bad"), true},
		{errs.Option("Heads", 3, "bad"), true},
		{fmt.Errorf("reading: %w", errs.Tensor("/m", "t", "bad")), true},
		{errors.New("disk full"), false},
		{nil, false},
	} {
		if got := errs.IsInput(c.err); got != c.want {
			t.Errorf("IsInput(%v) = %v", c.err, got)
		}
	}
	if got := errs.Spell("see {GroupSize} and {x}", flag); got != "see --groupsize and {x}" {
		t.Errorf("Spell: %q", got)
	}
}
