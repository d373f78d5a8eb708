package arch

import (
	"fmt"
	"math"
	"strings"
)

// What the HF configs btconvert resolves share (GPTNeoXConfig, RobertaConfig, T5Config): a YAML's
// config section sets their keys one by one on top of the base model's, each value checked for
// its type and range and kept with its origin, and a value is explained with where it came from.

// fields are the keys of one HF config, by the type of their values.
type fields struct {
	ints   map[string]*int     // sizes: positive, at most keyLimit[key] where it has one
	ids    map[string]*int     // token ids: non-negative
	floats map[string]*float64 // non-negative and finite
	strs   map[string]*string
	bools  map[string]*bool
}

// set sets key to v if it is one of the fields (ok false otherwise). Errors name the key, not the
// file.
func (f fields) set(key string, v any) (ok bool, err error) {
	switch {
	case f.ints[key] != nil:
		n, isInt := asInt(v)
		if !isInt || n < 1 {
			return true, fmt.Errorf("%s: %v is not a positive integer", key, v)
		}
		if lim := keyLimit[key]; lim > 0 && n > lim {
			return true, fmt.Errorf("%s: %d is out of range (at most %d)", key, n, lim)
		}
		*f.ints[key] = n
	case f.ids[key] != nil:
		n, isInt := asInt(v)
		if !isInt || n < 0 || n >= MaxVocab {
			return true, fmt.Errorf("%s: %v is not a token id (a non-negative integer below %d)", key, v, MaxVocab)
		}
		*f.ids[key] = n
	case f.floats[key] != nil:
		x, isFloat := asFloat(v)
		if !isFloat || x < 0 || math.IsInf(x, 0) || math.IsNaN(x) {
			return true, fmt.Errorf("%s: %v is not a non-negative number", key, v)
		}
		*f.floats[key] = x
	case f.strs[key] != nil:
		s, isStr := v.(string)
		if !isStr {
			return true, fmt.Errorf("%s: %v is not a string", key, v)
		}
		*f.strs[key] = s
	case f.bools[key] != nil:
		b, isBool := v.(bool)
		if !isBool {
			return true, fmt.Errorf("%s: %v is not true or false", key, v)
		}
		*f.bools[key] = b
	default:
		return false, nil
	}
	return true, nil
}

// value is the current value of key (nil when it is not a field).
func (f fields) value(key string) any {
	switch {
	case f.ints[key] != nil:
		return *f.ints[key]
	case f.ids[key] != nil:
		return *f.ids[key]
	case f.floats[key] != nil:
		return *f.floats[key]
	case f.strs[key] != nil:
		return *f.strs[key]
	case f.bools[key] != nil:
		return *f.bools[key]
	}
	return nil
}

// explainKey says where a key's value came from, e.g. "num_attention_heads 16 from
// EleutherAI/pythia-410m-deduped".
func explainKey(value func(key string) any, origin map[string]Origin, key string) string {
	return fmt.Sprintf("%s %v from %s", key, value(key), origin[key].From)
}

// summarize lists the keys with their values, grouped by origin in the order the origins first
// appear (for the manifest's notes).
func summarize(value func(key string) any, origin map[string]Origin, keys []string) string {
	byOrigin := map[string][]string{}
	var origins []string
	for _, k := range keys {
		o := origin[k].From
		if o == "" {
			continue
		}
		if byOrigin[o] == nil {
			origins = append(origins, o)
		}
		byOrigin[o] = append(byOrigin[o], fmt.Sprintf("%s %v", k, value(k)))
	}
	var parts []string
	for _, o := range origins {
		parts = append(parts, strings.Join(byOrigin[o], ", ")+" from "+o)
	}
	return strings.Join(parts, "; ")
}

// explained is an HF config whose values can be explained (explain, recordHF).
type explained interface {
	Explain(key string) string
	origin(key string) Origin
}

// explain is Explain, saying so when the official code takes the value from the same place (so a
// weight that disagrees with it was not made with this config).
func explain(c explained, key string) string {
	if c.origin(key).official() {
		return c.Explain(key) + ", as the official code resolves this config"
	}
	return c.Explain(key)
}

// recordHF notes where each of a component's HF keys came from in prov, by "component.key".
func recordHF(comp string, c explained, keys []string, prov Provenance) {
	for _, k := range keys {
		if c.origin(k).From != "" {
			prov[comp+"."+k] = comp + "." + explain(c, k)
		}
	}
}
