package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// The classes of embedder and token decoder beyond the lookup table and the decoder-family stacks
// (an Encoder, a TokenStack) register here by their key in our config.json, from their own file,
// so that a config.json names them and nothing else branches on their type.

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

// unmarshalPart decodes the one registered part object b names (nil if none); two are an error.
func unmarshalPart(b []byte, kinds map[string]func() any) (any, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, err
	}
	partKinds.RLock()
	defer partKinds.RUnlock()
	var found any
	var foundKey string
	for k, raw := range keys {
		newPart := kinds[k]
		if newPart == nil || string(raw) == "null" {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("both %q and %q are given (one at most)", foundKey, k)
		}
		v := newPart()
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		found, foundKey = v, k
	}
	return found, nil
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
