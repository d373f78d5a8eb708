package arch

// OriginKind says what kind of source an architecture value came from; inspect --json and
// init --list --json show it per value.
type OriginKind string

// The kinds of origin.
const (
	OriginYAML       OriginKind = "yaml"          // an official YAML (a file or a released config by name) states it
	OriginFillIn     OriginKind = "fill-in"       // the official code's block-mode fill-in (heads, FFN from the width)
	OriginBase       OriginKind = "base model"    // the HF config of the base model the YAML names
	OriginGiven      OriginKind = "given"         // the caller gave it (a head count, a decoding strategy)
	OriginShapes     OriginKind = "shapes"        // read off the tensor shapes
	OriginConfigJSON OriginKind = "config.json"   // an HF config.json states it
	OriginDefaults   OriginKind = "defaults"      // the HF config class's defaults (GPTNeoXConfig's)
	OriginPreset     OriginKind = "preset"        // a preset of init (an official config by name)
	OriginShape      OriginKind = "shape"         // a shape asked for (Shape: init without a preset, or keys over one)
	OriginVanilla    OriginKind = "vanilla model" // kept from the vanilla model an uptraining starts from
)

// Origin is where one value came from: its kind and, for messages, the source by name
// ("config.yaml", "EleutherAI/pythia-410m-deduped", "the official fill-in (hidden_size 768 // 64)").
type Origin struct {
	Kind OriginKind
	From string
}

// official reports whether the official code would take the value from the same place (so a
// weight that disagrees with it does not belong to that config).
func (o Origin) official() bool {
	return o.Kind == OriginYAML || o.Kind == OriginFillIn || o.Kind == OriginBase
}

// BaseOrigins says that every one of keys comes from the config of base model name (a family's
// table of base models starts from it).
func BaseOrigins(name string, keys []string) map[string]Origin {
	out := make(map[string]Origin, len(keys))
	for _, k := range keys {
		out[k] = Origin{OriginBase, name}
	}
	return out
}
