package main

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/btconvert/btconvert"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/graph"
	"github.com/btconvert/btconvert/quant"
)

// Every option a library error can name has a flag spelling here (errors name options as Go
// fields; flagNames turns them into this command's flags), and every spelling is a real flag of
// some command, so neither side can drift.
func TestEveryOptionHasAFlag(t *testing.T) {
	// Fields that are not flags: callbacks, the UI, what the command line fills in itself.
	noFlag := map[string]bool{"UI": true, "OnText": true, "OnResult": true, "Version": true, "Split": true}
	var missing []string
	var walk func(ty reflect.Type)
	walk = func(ty reflect.Type) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			if !f.IsExported() || noFlag[f.Name] {
				continue
			}
			// Option groups (Runtime, OpenOptions, Settings, Sampling, ...) are walked into.
			if f.Type.Kind() == reflect.Struct && strings.HasPrefix(f.Type.PkgPath(), "github.com/btconvert/") {
				walk(f.Type)
				continue
			}
			if _, ok := flagNames[f.Name]; !ok {
				missing = append(missing, ty.Name()+"."+f.Name)
			}
		}
	}
	for _, opts := range []any{btconvert.ImportOptions{}, btconvert.QuantizeOptions{}, btconvert.VerifyOptions{}, btconvert.BenchOptions{},
		btconvert.GenerateOptions{}, btconvert.ExportOptions{}, btconvert.InitOptions{}, formats.OpenOptions{}, quant.Settings{}, graph.Sampling{}} {
		walk(reflect.TypeOf(opts))
	}
	if len(missing) > 0 {
		t.Errorf("options without a flag spelling in flagNames: %s", strings.Join(missing, ", "))
	}
	flags := map[string]bool{}
	for _, c := range newApp(io.Discard, io.Discard).Commands {
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				flags["--"+n] = true
			}
		}
	}
	for field, spelling := range flagNames {
		if strings.HasPrefix(spelling, "--") && !flags[spelling] {
			t.Errorf("flagNames[%s] = %s, which no command has", field, spelling)
		}
	}
}
