package arch

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// A decoder stack's family is its layer's math and tensors, registered from the family's own
// package (families/gptneox, families/llama): its tensor table and checks here, its graph in
// package graph. A DecoderConfig names its family (none: GPT-NeoX, the official code's), and
// nothing else branches on it.

// StackFamily is what this package needs of a decoder family.
type StackFamily struct {
	Name string // as DecoderConfig.Family and our config.json say it ("llama")
	// Title is the family in a sentence ("Llama-family").
	Title string
	// Tensors lists a stack's tensors inside component comp: every layer's, then the final norm.
	// The token table and the output head are the model's (Tensors adds them).
	Tensors func(comp string, d *DecoderConfig) []TensorSpec
	// Validate checks what the common checks of a stack leave to the family (activation, options);
	// name is the stack's component in messages.
	Validate func(name string, d *DecoderConfig) error
	// TiedHead, if set, reports whether a model with this stack reads its output head from its
	// token table (tie_word_embeddings): then there is no embed_out tensor, stored or on a device.
	TiedHead func(d *DecoderConfig) bool
}

var families = struct {
	sync.RWMutex
	m map[string]*StackFamily
}{m: map[string]*StackFamily{}}

// knownStacks are btconvert's decoder families: a program built without one is told which,
// instead of reading the name as unknown.
var knownStacks = map[string]struct{ title, pkg string }{
	FamilyNeoX: {"GPT-NeoX", "families/gptneox"},
	"llama":    {"Llama", "families/llama"},
}

// RegisterStack makes a decoder family known. A family registers once, from its package's init.
func RegisterStack(f *StackFamily) {
	families.Lock()
	defer families.Unlock()
	if f.Name == "" || families.m[f.Name] != nil {
		panic(fmt.Sprintf("arch: decoder family %q registered twice", f.Name))
	}
	families.m[f.Name] = f
}

// Family is the registered family of that name, nil if unknown (or not in this build).
func Family(name string) *StackFamily {
	families.RLock()
	defer families.RUnlock()
	return families.m[name]
}

// Families lists the registered family names, sorted.
func Families() []string {
	families.RLock()
	defer families.RUnlock()
	var out []string
	for n := range families.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// FamilyNeoX is GPT-NeoX's name (families/gptneox): a DecoderConfig with no family is one, as the
// official code's decoders and the folders written before families were named.
const FamilyNeoX = "gpt-neox"

// FamilyOf is d's family name.
func (d *DecoderConfig) FamilyOf() string {
	if d.Family == "" {
		return FamilyNeoX
	}
	return d.Family
}

// IsNeoX reports whether d is a GPT-NeoX stack (no family named, or "gpt-neox" named).
func (d *DecoderConfig) IsNeoX() bool { return d.FamilyOf() == FamilyNeoX }

// Tied reports whether the output head of a model with stack d is its token table (see
// StackFamily.TiedHead).
func (d *DecoderConfig) Tied() bool {
	f := Family(d.FamilyOf())
	return f != nil && f.TiedHead != nil && f.TiedHead(d)
}

// HeadName is the module whose weight is the output head of a model with stack d: embed_out, or
// embed_in when the head is tied to the token table.
func (d *DecoderConfig) HeadName() string {
	if d.Tied() {
		return EmbedIn
	}
	return EmbedOut
}

// KVHeadCount is the number of key/value heads (grouped-query attention when under Heads).
func (d *DecoderConfig) KVHeadCount() int {
	if d.KVHeads > 0 {
		return d.KVHeads
	}
	return d.Heads
}

// DecodeOptions reads the family's options of d into v (a pointer to the family's own struct).
func (d *DecoderConfig) DecodeOptions(v any) error {
	if len(d.Options) == 0 {
		return nil
	}
	return json.Unmarshal(d.Options, v)
}

// SetOptions stores the family's options of d.
func (d *DecoderConfig) SetOptions(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	d.Options = b
	return nil
}

// The helpers a family's tensor table is built with.

// NewSpec is the spec of tensor id with its shape, the config keys of each dimension (for
// messages) and, for a Linear, the norm whose output it reads ("" if none: see Feeder).
func NewSpec(id ID, shape []int, dims [][]string, fedBy string) TensorSpec {
	return newSpec(id, shape, dims, fedBy)
}

// Feeder is the FedBy of a Linear that reads the output of the norm whose weight is ln.
func Feeder(ln ID) string { return feeder(ln) }

// PartKind is how a registered part is used: a lookup table, a Linear or a norm.
type PartKind int

// The kinds of part.
const (
	TablePart PartKind = iota
	LinearPart
	NormPart
)

// RegisterPart adds a module to the table of parts (a family's own Linear, such as a gated MLP's
// gate) and returns its Part. short names it in plans and messages, module in tensor names.
func RegisterPart(short, module string, k PartKind, inLayer bool) Part {
	families.Lock()
	defer families.Unlock()
	for _, p := range partInfo {
		if p.short == short || (p.module == module && module != "") {
			panic(fmt.Sprintf("arch: part %q (%s) registered twice", short, module))
		}
	}
	kinds := map[PartKind]kind{TablePart: kindEmbedding, LinearPart: kindLinear, NormPart: kindNorm}
	partInfo = append(partInfo, partEntry{short: short, module: module, kind: kinds[k], inLayer: inLayer})
	return Part(len(partInfo) - 1)
}
