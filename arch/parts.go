package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// The classes of embedder and token decoder with a part of their own in our config.json (an
// Encoder, a TokenStack) register here by its key, from their own package, so that a config.json
// names them and nothing else branches on their type. (The lookup embedder and the stack token
// decoders have no such part: an embedder without an Encoder is the lookup one.)

var (
	partKinds       sync.RWMutex
	encoderKinds    = map[string]func() any{}
	tokenStackKinds = map[string]func() any{}
)

// RegisterEncoder makes an encoder class readable from config.json under key (newEncoder returns
// an empty one to decode into).
func RegisterEncoder(key string, newEncoder func() Encoder) {
	registerPart(encoderKinds, key, func() any { return newEncoder() })
}

// RegisterTokenStack makes a token decoder class with a stack of its own readable from
// config.json under key.
func RegisterTokenStack(key string, newStack func() TokenStack) {
	registerPart(tokenStackKinds, key, func() any { return newStack() })
}

func registerPart(m map[string]func() any, key string, f func() any) {
	partKinds.Lock()
	defer partKinds.Unlock()
	if key == "" || m[key] != nil {
		panic(fmt.Sprintf("arch: part %q registered twice", key))
	}
	m[key] = f
}

// officialFamilies are the families of the official code's part classes, by config.json key: a
// program built without one is told which, instead of reading the part as absent.
var officialFamilies = map[string]struct{ title, pkg string }{
	"roberta": {"RoBERTa", "families/roberta"},
	"t5":      {"T5", "families/t5"},
}

// lookupFamily is the lookup embedder's family (it has no config.json key: no encoder is it).
var lookupFamily = struct{ title, pkg string }{"lookup embedder", "families/lookup"}

// lookupClass is the lookup embedder's registered class; where names what needs it, in the error
// of a program built without its family.
func lookupClass(where string) (*EncoderClass, error) {
	if c := encoderClass(ClassLookup); c != nil {
		return c, nil
	}
	return nil, &MissingFamilyError{Where: where, Title: lookupFamily.title, Package: lookupFamily.pkg}
}

// MissingFamilyError is a config naming a part class of the official code whose family this
// program was built without.
type MissingFamilyError struct{ Where, Title, Package string }

func (e *MissingFamilyError) Error() string {
	return fmt.Sprintf("%s: this program was built without the %s family (package %s)", e.Where, e.Title, e.Package)
}

// missingFamily is the error, located at where, for name (an official class or config.json key)
// when it belongs to an official part class (nil when it does not).
func missingFamily(where, name string) error {
	f, ok := officialFamilies[strings.ToLower(name)]
	if !ok {
		return nil
	}
	return &MissingFamilyError{Where: where, Title: f.title, Package: f.pkg}
}

// registeredKey reports whether key is a registered part's, for either part (partKinds held).
func registeredKey(key string) bool {
	for _, kinds := range []map[string]func() any{encoderKinds, tokenStackKinds} {
		for kind := range kinds {
			if strings.EqualFold(kind, key) {
				return true
			}
		}
	}
	return false
}

// unmarshalPart decodes the one registered part object b names, its key matched without regard
// to case as encoding/json matches fields: present reports whether a key was there (null: a nil
// part); two parts are an error, and so is the key of an official part class whose family this
// program was built without. comp names the object in messages.
func unmarshalPart(b []byte, comp string, kinds map[string]func() any) (part any, present bool, err error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, false, err
	}
	partKinds.RLock()
	defer partKinds.RUnlock()
	var foundKey string
	for k, raw := range keys {
		if string(bytes.TrimSpace(raw)) != "null" && !registeredKey(k) {
			if err := missingFamily(comp+"."+k, k); err != nil {
				return nil, true, err
			}
		}
		for kind, newPart := range kinds {
			if !strings.EqualFold(k, kind) {
				continue
			}
			present = true
			if string(bytes.TrimSpace(raw)) == "null" {
				continue
			}
			if part != nil {
				return nil, true, fmt.Errorf("both %q and %q are given (one at most)", foundKey, k)
			}
			v := newPart()
			if err := json.Unmarshal(raw, v); err != nil {
				return nil, true, fmt.Errorf("%s: %v", k, err)
			}
			part, foundKey = v, k
		}
	}
	return part, present, nil
}

// marshalWithPart is v's JSON object with part under its key, first or last (nil: v alone).
func marshalWithPart(v any, part interface{ Key() string }, first bool) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || part == nil {
		return b, err
	}
	pb, err := json.Marshal(part)
	if err != nil {
		return nil, err
	}
	kb, _ := json.Marshal(part.Key())
	field := append(append(kb, ':'), pb...)
	rest := bytes.TrimSpace(b)
	body := rest[1 : len(rest)-1] // v's fields, without the braces
	var out []byte
	switch {
	case len(body) == 0:
		out = append(append([]byte{'{'}, field...), '}')
	case first:
		out = append(append(append([]byte{'{'}, field...), ','), rest[1:]...)
	default:
		out = append(append(append(append([]byte{}, rest[:len(rest)-1]...), ','), field...), '}')
	}
	return out, nil
}

// How the classes with an encoder or a stack of their own resolve from an official YAML's section,
// registered by official class from their own file.

// EncoderClass is how an embedder class resolves from the embedder section of a YAML: an encoder
// class, or the lookup embedder (families/lookup), the class with no network of its own.
type EncoderClass struct {
	// Projection is the class's projection_method when the YAML leaves it null.
	Projection EmbedderType
	// Resolve resolves the section e (its keys under sec) into p: p.Encoder (the lookup
	// embedder: p.Embedder.Dim), and what else of p the class sets (its CLS tokens).
	Resolve func(e EmbedderSpec, sec Section, p *BlockParts) error
	// Table is the tensors of the lookup embedder, which has no Encoder to ask (nil for an
	// encoder class).
	Table func(c *Config) EmbedderTable
}

// TokenStackClass is how a token decoder class with a stack of its own resolves from the
// token_decoder section of a YAML.
type TokenStackClass struct {
	// CheckDecoding refuses a decoding_strategy the class does not run, saying why.
	CheckDecoding func(d Decoding) error
	// Resolve resolves the section's stack (its keys under sec); heads > 0 is a head count the
	// caller gives, which must agree.
	Resolve func(st StackSpec, sec Section, heads int) (PartHF, error)
}

var (
	encoderClasses    = map[string]*EncoderClass{}
	tokenStackClasses = map[string]*TokenStackClass{}
)

// RegisterEncoderClass makes an embedder class resolvable from YAML by its official name.
func RegisterEncoderClass(class string, c *EncoderClass) {
	if c.Resolve == nil || (c.Projection != Concat && c.Projection != ProjectionLayer) {
		panic(fmt.Sprintf("arch: embedder class %q registered without its Resolve or default projection", class))
	}
	partKinds.Lock()
	defer partKinds.Unlock()
	if encoderClasses[class] != nil {
		panic(fmt.Sprintf("arch: embedder class %q registered twice", class))
	}
	encoderClasses[class] = c
}

// RegisterTokenStackClass makes a token decoder class with a stack of its own resolvable from YAML
// by its official name.
func RegisterTokenStackClass(class string, c *TokenStackClass) {
	partKinds.Lock()
	defer partKinds.Unlock()
	if tokenStackClasses[class] != nil {
		panic(fmt.Sprintf("arch: token decoder class %q registered twice", class))
	}
	tokenStackClasses[class] = c
}

// encoderClass is the registered embedder class of that name (nil: none in this build).
func encoderClass(class string) *EncoderClass {
	partKinds.RLock()
	defer partKinds.RUnlock()
	return encoderClasses[class]
}

// tokenStackClass is the registered token decoder class with a stack of its own of that name (nil:
// none, as gpt-neo-x).
func tokenStackClass(class string) *TokenStackClass {
	partKinds.RLock()
	defer partKinds.RUnlock()
	return tokenStackClasses[class]
}
