package official

import (
	"fmt"
	"slices"
	"sync"

	"github.com/goccy/go-yaml"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats/safetensors"
)

// What the official layout knows of the embedder and token decoder classes that are neither the
// lookup table nor a GPT-NeoX stack: each class's module names in the official checkpoint and its
// section of config.yaml. The rest of the layout asks this table by class.

// Class is what the official layout knows of one class with modules of its own.
type Class struct {
	Layer   string               // a layer's modules under this, %d its index
	Modules map[arch.Part]string // each part's module
	Table   arch.ID              // its token table (which tells the layout it is there)
	// TableCopies are further names the official state_dict gives its token table (tied).
	TableCopies []string
	Base        string // the base model the released configs name
	// Buffers are the full names of buffers older transformers saved with it (not weights).
	Buffers []string
	// YAML states every key of its config section in a model of config c, and its n_cls_tokens.
	YAML func(c *arch.Config) (yaml.MapSlice, int)
}

var classes = struct {
	sync.RWMutex
	m map[string]*Class
}{m: map[string]*Class{}}

// RegisterClass makes an official embedder or token decoder class known to the layout by its
// official name; a class registers once, from its package's init.
func RegisterClass(name string, k *Class) {
	classes.Lock()
	defer classes.Unlock()
	if classes.m[name] != nil {
		panic(fmt.Sprintf("official: class %q registered twice", name))
	}
	classes.m[name] = k
}

// classNamed is the registered class of that name (nil: the lookup embedder or a GPT-NeoX stack).
func classNamed(name string) *Class {
	classes.RLock()
	defer classes.RUnlock()
	return classes.m[name]
}

// classOf is the class of modules of its own that tensor id belongs to in a model of config cfg
// (nil: the lookup embedder's, a GPT-NeoX stack's, or the projection or expansion layer).
func classOf(cfg *arch.Config, id arch.ID) *Class {
	switch {
	case id.Component == arch.Embedder && id.Part != arch.PartProjection:
		return classNamed(cfg.Embedder.Class())
	case id.Component == arch.TokenDecoder && id.Part != arch.PartExpansion:
		return classNamed(cfg.TokenDecoder.Class())
	}
	return nil
}

// classBuffer reports a buffer a registered class's older checkpoints hold (not a weight).
func classBuffer(name string) bool {
	classes.RLock()
	defer classes.RUnlock()
	for _, k := range classes.m {
		if slices.Contains(k.Buffers, name) {
			return true
		}
	}
	return false
}

// hasClassTable reports whether a checkpoint holds the token table of a registered class.
func hasClassTable(c *safetensors.Checkpoint) bool {
	classes.RLock()
	defer classes.RUnlock()
	for _, k := range classes.m {
		if c.Has(k.Table.Component + "." + familyName(k.Modules, "", k.Table)) {
			return true
		}
	}
	return false
}
