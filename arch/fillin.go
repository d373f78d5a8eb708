package arch

import "fmt"

// The official code (util/config.py, preprocess_config) runs on every YAML before any model is
// built. In block mode, for each part whose class is gpt-neo-x, roberta or roberta_cls and that
// has a config: section, it fills in what the section leaves out:
//   - num_attention_heads: hidden_size // head_dim, head_dim 32 up to width 256, 64 up to 1536,
//     128 above (an error when that does not divide);
//   - intermediate_size: 4 x hidden_size.
//
// Only then is the base model's HF config loaded and the section's keys set on top, so the base
// model's heads and FFN never reach a block-mode decoder whose YAML states its width. Vanilla YAMLs
// get no fill-in.

// OfficialHeadDim is the head size the fill-in gives a decoder of this width.
func OfficialHeadDim(hidden int) int {
	switch {
	case hidden <= 256:
		return 32
	case hidden <= 1536:
		return 64
	}
	return 128
}

// OfficialHeads is the head count the fill-in gives a decoder of this width (an error when the
// official head size does not divide it, as in the official code).
func OfficialHeads(hidden int) (int, error) {
	hd := OfficialHeadDim(hidden)
	if hidden < 1 || hidden%hd != 0 {
		return 0, fmt.Errorf("hidden_size %d is not a multiple of %d, the head size the official code gives this width", hidden, hd)
	}
	return hidden / hd, nil
}

// FillIn returns settings with what the official fill-in adds to a block-mode section. sec names
// the section for messages.
func FillIn(settings []Setting, sec Section) ([]Setting, error) {
	stated := map[string]bool{}
	hidden, hiddenOK := 0, false
	var kept []Setting
	for _, s := range settings {
		key := CanonicalKey(s.Key)
		if s.Value == nil && (key == KeyHeads || key == KeyIntermediate) {
			continue // null: what the fill-in gives (the official code checks for None)
		}
		kept = append(kept, s)
		stated[key] = true
		if s.Key == KeyHidden {
			hidden, hiddenOK = asInt(s.Value)
		}
	}
	settings = kept
	if stated[KeyHeads] && stated[KeyIntermediate] {
		return settings, nil
	}
	if !stated[KeyHidden] {
		return nil, fmt.Errorf("%s states no hidden_size: the official code needs it to fill in num_attention_heads and intermediate_size (state all three, or hidden_size)", sec.Keys)
	}
	if !hiddenOK || hidden < 1 {
		return nil, fmt.Errorf("%s: hidden_size: %v is not a positive integer", sec.Keys, settingValue(settings, KeyHidden))
	}
	out := append([]Setting(nil), settings...)
	if !stated[KeyHeads] {
		heads, err := OfficialHeads(hidden)
		if err != nil {
			hint := fmt.Sprintf("state num_attention_heads under %s in %s", sec.Keys, sec.File)
			if sec.Kind == OriginShape || sec.Kind == OriginPreset {
				hint = "give {Heads}"
			}
			return nil, fmt.Errorf("%s states no num_attention_heads and the official fill-in fails: %v (%s)", sec.Keys, err, hint)
		}
		out = append(out, Setting{Key: KeyHeads, Value: heads,
			Origin: Origin{OriginFillIn, fmt.Sprintf("the official fill-in (hidden_size %d // %d)", hidden, OfficialHeadDim(hidden))}})
	}
	if !stated[KeyIntermediate] {
		out = append(out, Setting{Key: KeyIntermediate, Value: 4 * hidden,
			Origin: Origin{OriginFillIn, fmt.Sprintf("the official fill-in (4 x hidden_size %d)", hidden)}})
	}
	return out, nil
}

func settingValue(settings []Setting, key string) any {
	for _, s := range settings {
		if s.Key == key {
			return s.Value
		}
	}
	return nil
}

// CanonicalKey is the transformers 4.x spelling of a key (rotary_pct for partial_rotary_factor,
// rotary_emb_base for rope_theta).
func CanonicalKey(key string) string {
	if a, ok := keyAliases[key]; ok {
		return a
	}
	return key
}
