package arch

import (
	"fmt"
	"math"
	"strings"
)

// What the HF configs btconvert resolves share (GPTNeoXConfig, RobertaConfig, T5Config): a YAML's
// config section sets their keys one by one on top of the base model's, each value checked for
// its type and range and kept with its origin, and a value is explained with where it came from.

// Keys of the encoder and token decoder configs beyond the shared ones (KeyLayers, KeyHidden, ...).
const (
	KeyTypeVocab    = "type_vocab_size"
	KeyPadID        = "pad_token_id"
	KeyBOSID        = "bos_token_id"
	KeyEOSID        = "eos_token_id"
	KeyPositionType = "position_embedding_type"
)

// The T5Config keys.
const (
	KeyDModel        = "d_model"
	KeyDKV           = "d_kv"
	KeyDFF           = "d_ff"
	KeyT5Layers      = "num_layers"
	KeyDecoderLayers = "num_decoder_layers"
	KeyT5Heads       = "num_heads"
	KeyBuckets       = "relative_attention_num_buckets"
	KeyMaxDistance   = "relative_attention_max_distance"
	KeyT5Eps         = "layer_norm_epsilon"
	KeyFeedForward   = "feed_forward_proj"
	KeyTied          = "tie_word_embeddings"
)

// Fields are the keys of one HF config, by the type of their values.
type Fields struct {
	Ints   map[string]*int     // sizes: positive, at most the key's limit where it has one
	IDs    map[string]*int     // token ids: non-negative
	Floats map[string]*float64 // non-negative and finite
	Strs   map[string]*string
	Bools  map[string]*bool
}

// SetKey sets one key of an HF config (class names it in messages) as a config section does: a
// key of f is checked for its type and range and its origin recorded in origins; a key in inert
// does not change inference, and check (nil: none) refuses the values of it that would; any other
// key is unknown. Errors name the key, not the file.
func SetKey(f Fields, origins map[string]Origin, class, key string, v any, origin Origin, inert map[string]bool, check func(key string, v any) error) error {
	ok, err := f.Set(key, v)
	switch {
	case err != nil:
		return err
	case !ok && inert[key] && check != nil:
		return check(key, v)
	case !ok && inert[key]:
		return nil
	case !ok:
		return fmt.Errorf("unknown key %q (not a %s setting)", key, class)
	}
	origins[key] = origin
	return nil
}

// Set sets key to v if it is one of the fields (ok false otherwise). Errors name the key, not the
// file.
func (f Fields) Set(key string, v any) (ok bool, err error) {
	switch {
	case f.Ints[key] != nil:
		n, isInt := asInt(v)
		if !isInt || n < 1 {
			return true, fmt.Errorf("%s: %v is not a positive integer", key, v)
		}
		if lim := keyLimit[key]; lim > 0 && n > lim {
			return true, fmt.Errorf("%s: %d is out of range (at most %d)", key, n, lim)
		}
		*f.Ints[key] = n
	case f.IDs[key] != nil:
		n, isInt := asInt(v)
		if !isInt || n < 0 || n >= MaxVocab {
			return true, fmt.Errorf("%s: %v is not a token id (a non-negative integer below %d)", key, v, MaxVocab)
		}
		*f.IDs[key] = n
	case f.Floats[key] != nil:
		x, isFloat := asFloat(v)
		if !isFloat || x < 0 || math.IsInf(x, 0) || math.IsNaN(x) {
			return true, fmt.Errorf("%s: %v is not a non-negative number", key, v)
		}
		*f.Floats[key] = x
	case f.Strs[key] != nil:
		s, isStr := v.(string)
		if !isStr {
			return true, fmt.Errorf("%s: %v is not a string", key, v)
		}
		*f.Strs[key] = s
	case f.Bools[key] != nil:
		b, isBool := v.(bool)
		if !isBool {
			return true, fmt.Errorf("%s: %v is not true or false", key, v)
		}
		*f.Bools[key] = b
	default:
		return false, nil
	}
	return true, nil
}

// Value is the current value of key (nil when it is not a field).
func (f Fields) Value(key string) any {
	switch {
	case f.Ints[key] != nil:
		return *f.Ints[key]
	case f.IDs[key] != nil:
		return *f.IDs[key]
	case f.Floats[key] != nil:
		return *f.Floats[key]
	case f.Strs[key] != nil:
		return *f.Strs[key]
	case f.Bools[key] != nil:
		return *f.Bools[key]
	}
	return nil
}

// ExplainKey says where a key's value came from, e.g. "num_attention_heads 16 from
// EleutherAI/pythia-410m-deduped".
func ExplainKey(value func(key string) any, origin map[string]Origin, key string) string {
	return fmt.Sprintf("%s %v from %s", key, value(key), origin[key].From)
}

// Summarize lists the keys with their values, grouped by origin in the order the origins first
// appear (for the manifest's notes).
func Summarize(value func(key string) any, origin map[string]Origin, keys []string) string {
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

// Explained is an HF config whose values can be explained, each with its origin (RecordHF).
type Explained interface {
	Explain(key string) string
	OriginOf(key string) Origin
}

// explain is Explain, saying so when the official code takes the value from the same place (so a
// weight that disagrees with it was not made with this config).
func explain(c Explained, key string) string {
	if c.OriginOf(key).official() {
		return c.Explain(key) + ", as the official code resolves this config"
	}
	return c.Explain(key)
}

// RecordHF notes where each of a component's HF keys came from in prov, by "component.key".
func RecordHF(comp string, c Explained, keys []string, prov Provenance) {
	for _, k := range keys {
		if c.OriginOf(k).From != "" {
			prov[comp+"."+k] = comp + "." + explain(c, k)
		}
	}
}
