package formats_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
)

func TestCheckNames(t *testing.T) {
	id := func(p arch.Part, layer int, param arch.Param) arch.ID {
		return arch.ID{Component: arch.Decoder, Part: p, Layer: layer, Param: param}
	}
	var specs []arch.TensorSpec
	for _, i := range []arch.ID{id(arch.PartEmbedIn, arch.NoLayer, arch.Weight), id(arch.PartLN1, 0, arch.Weight), id(arch.PartLN1, 0, arch.Bias),
		id(arch.PartAttnQKV, 0, arch.Weight), id(arch.PartAttnQKV, 0, arch.Bias), id(arch.PartAttnOut, 0, arch.Weight), id(arch.PartAttnOut, 0, arch.Bias),
		id(arch.PartEmbedOut, arch.NoLayer, arch.Weight)} {
		specs = append(specs, arch.TensorSpec{Component: i.Component, Name: i.Name(), Part: i.Part, Layer: i.Layer, Param: i.Param})
	}
	// As a checkpoint whose output head is its embed_in: two specs, one tensor.
	tied := func(s arch.TensorSpec) string {
		if s.Part == arch.PartEmbedOut {
			return "m.embed_in.weight"
		}
		return "m." + s.Name
	}
	all := []string{"m.embed_in.weight", "m.layers.0.input_layernorm.weight", "m.layers.0.input_layernorm.bias",
		"m.layers.0.attention.query_key_value.weight", "m.layers.0.attention.query_key_value.bias",
		"m.layers.0.attention.dense.weight", "m.layers.0.attention.dense.bias"}
	without := func(drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(drop, n) })
	}
	e := formats.Expect{File: "/ckpt", FileOf: func(n string) string { return "/ckpt/" + n[:1] + ".safetensors" },
		Missing: "missing (needed)", Unexpected: "not used",
		Extra: func(n string) (string, bool) {
			switch n {
			case "m.buffer":
				return "ignored m.buffer", true
			case "m.head":
				return "a second head", false
			}
			return "", false
		}}
	for _, c := range []struct {
		name    string
		present []string
		notes   []string
		err     string
	}{
		{"exact", all, nil, ""},
		{"accepted extra", append(without(), "m.buffer"), []string{"ignored m.buffer"}, ""},
		{"one missing", without("m.layers.0.attention.dense.bias"), nil,
			`/ckpt: tensor "m.layers.0.attention.dense.bias": missing (needed)`},
		{"one unexpected", append(without(), "m.layers.1.input_layernorm.bias"), nil,
			`/ckpt/m.safetensors: tensor "m.layers.1.input_layernorm.bias": not used`},
		{"refused with a message", append(without(), "m.head"), nil,
			`/ckpt/m.safetensors: tensor "m.head": a second head`},
		{"several unexpected", append(without(), "m.x", "m.head", "m.buffer"), nil,
			`/ckpt/m.safetensors: tensor "m.x": not used; 1 more unexpected: "m.head"`},
		{"missing and unexpected", append(without("m.embed_in.weight", "m.layers.0.input_layernorm.bias"), "m.x", "m.y"), nil,
			`/ckpt: tensor "m.embed_in.weight": missing (needed); 1 more missing: "m.layers.0.input_layernorm.bias"; 2 unexpected: "m.x", "m.y"`},
		{"many missing", []string{"m.embed_in.weight"}, nil,
			`/ckpt: tensor "m.layers.0.input_layernorm.weight": missing (needed); 5 more missing: "m.layers.0.input_layernorm.bias", "m.layers.0.attention.query_key_value.weight", "m.layers.0.attention.query_key_value.bias", "m.layers.0.attention.dense.weight", "m.layers.0.attention.dense.bias"`},
		{"more than are shown", nil, nil,
			`/ckpt: tensor "m.embed_in.weight": missing (needed); 6 more missing: "m.layers.0.input_layernorm.weight", "m.layers.0.input_layernorm.bias", "m.layers.0.attention.query_key_value.weight", "m.layers.0.attention.query_key_value.bias", "m.layers.0.attention.dense.weight", ...`},
	} {
		t.Run(c.name, func(t *testing.T) {
			notes, err := formats.CheckNames(specs, tied, c.present, e)
			if c.err == "" {
				if err != nil || fmt.Sprint(notes) != fmt.Sprint(c.notes) {
					t.Fatalf("notes %q, error %v; want %q", notes, err, c.notes)
				}
				return
			}
			if err == nil || err.Error() != c.err || !errs.IsInput(err) {
				t.Fatalf("got  %v\nwant %s", err, c.err)
			}
		})
	}
	// Without FileOf, an unexpected tensor is reported against File.
	e.FileOf = nil
	if _, err := formats.CheckNames(specs, tied, append(without(), "m.x"), e); err == nil || err.Error() != `/ckpt: tensor "m.x": not used` {
		t.Fatalf("got %v", err)
	}
}
