package arch_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	. "github.com/btconvert/btconvert/arch" //nolint:revive
	"github.com/btconvert/btconvert/families/roberta"
	"github.com/btconvert/btconvert/families/t5"
)

// The released ablation configs resolve as the official code builds them: the RoBERTa embedder's
// heads and FFN by the fill-in from its stated width (256: 8 heads of 32, FFN 1024), the rest of
// it (positions, eps, pad and CLS ids) from roberta-base; the T5 token decoder from its stated
// keys and t5-small (d_kv 64, 32 buckets, max distance 128, eps 1e-6, BOS = its EOS 1); the
// expansion ratio of summation and cross_attention from the block length; and the origins say so.
func TestReleasedAblations(t *testing.T) {
	rob := roberta.Config{Layers: 3, Heads: 8, HeadDim: 32, Intermediate: 1024, LayerNormEps: 1e-5, Activation: "gelu",
		MaxPositions: 514, TypeVocab: 1, PadTokenID: 1, BOSTokenID: 0}
	cls := rob
	cls.CLSTokens = 3
	embOrigins := map[string]string{"embedder.dim": "yaml", "embedder.layers": "yaml", "embedder.heads": "fill-in", "embedder.head_dim": "fill-in",
		"embedder.intermediate_size": "fill-in", "embedder.max_position_embeddings": "base model", "embedder.layer_norm_eps": "base model",
		"embedder.pad_token_id": "base model", "embedder.bos_token_id": "base model"}
	for _, c := range []struct {
		name           string
		enc            roberta.Config
		t5             *t5.Config
		ratio          int
		ids            [3]int // pad, bos, eos
		origins, prov  map[string]string
		class, tdClass string
	}{
		{"block_ablation_b4_85_roberta_prefix", rob, nil, 1, [3]int{1, 0, 0},
			map[string]string{"token_decoder.expansion_ratio": "yaml", "token_decoder.heads": "fill-in"},
			map[string]string{"embedder.num_attention_heads": "embedder.num_attention_heads 8 from the official fill-in (hidden_size 256 // 32), as the official code resolves this config"},
			"roberta", "gpt-neo-x"},
		{"block_ablation_b4_85_cls_sum", cls, nil, 4, [3]int{1, 0, 0},
			map[string]string{"embedder.n_cls_tokens": "yaml", "token_decoder.expansion_ratio": "fill-in"},
			map[string]string{"expansion_ratio": "expansion_ratio 4 from the official default for summation decoding (block_length 4)",
				"embedder.n_cls_tokens": "embedder.n_cls_tokens 3 from released config block_ablation_b4_85_cls_sum"},
			"roberta_cls", "gpt-neo-x"},
		{"block_ablation_b4_85_cls_cross_attn", cls,
			&t5.Config{Layers: 6, Hidden: 768, Heads: 12, HeadDim: 64, Intermediate: 3072, Buckets: 32, MaxDistance: 128, LayerNormEps: 1e-6,
				Activation: "relu", BOSTokenID: 1, EOSTokenID: 1}, 4, [3]int{1, 1, 1},
			map[string]string{"token_decoder.expansion_ratio": "fill-in", "token_decoder.heads": "yaml", "token_decoder.intermediate_size": "yaml",
				"token_decoder.head_dim": "base model", "token_decoder.relative_attention_num_buckets": "base model",
				"token_decoder.bos_token_id": "base model", "token_decoder.eos_token_id": "base model", "token_decoder.layers": "yaml"},
			map[string]string{"token_decoder.d_kv": "token_decoder.d_kv 64 from t5-small, as the official code resolves this config",
				"token_decoder.bos_token_id": "token_decoder.bos_token_id 1 from t5-small (bos_token_id is null: the official token decoder takes eos_token_id)",
				"expansion_ratio":            "expansion_ratio 4 from the official default for cross_attention decoding (block_length 4)"},
			"roberta_cls", "t5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			blk, _, err := Released(c.name, OriginYAML)
			if err != nil {
				t.Fatal(err)
			}
			prov := Provenance{}
			cfg, notes, err := blk.Resolve(nil, nil, prov)
			if err != nil {
				t.Fatal(err)
			}
			e := cfg.Embedder
			if r, ok := e.Encoder.(*roberta.Config); !ok || *r != c.enc || e.Dim != 256 || e.Type != ProjectionLayer || e.Class() != c.class {
				t.Errorf("embedder %+v %+v", e, e.Encoder)
			}
			td := cfg.TokenDecoder
			if own, _ := td.Own.(*t5.Config); (own == nil) != (c.t5 == nil) || (c.t5 != nil && *own != *c.t5) || td.ExpansionRatio != c.ratio || td.Class() != c.tdClass {
				t.Errorf("token decoder %+v %+v", td, td.Own)
			}
			if ids := [3]int{cfg.PadTokenID, cfg.BOSTokenID, cfg.EOSTokenID}; ids != c.ids {
				t.Errorf("pad, bos, eos %v, want %v", ids, c.ids)
			}
			for k, v := range embOrigins {
				c.origins[k] = v
			}
			for k, want := range c.origins {
				if got := cfg.Origins[k]; got != want {
					t.Errorf("origin of %s: %q, want %q", k, got, want)
				}
			}
			for k, want := range c.prov {
				if prov[k] != want {
					t.Errorf("provenance of %s: %q, want %q", k, prov[k], want)
				}
			}
			if cfg.Source.BaseModels[Embedder] != "roberta-base" {
				t.Errorf("base models %v", cfg.Source.BaseModels)
			}
			want := "embedder: num_hidden_layers 3, hidden_size 256, vocab_size 50304 from released config " + c.name +
				"; num_attention_heads 8 from the official fill-in (hidden_size 256 // 32); intermediate_size 1024 from the official fill-in (4 x hidden_size 256); " +
				"max_position_embeddings 514, type_vocab_size 1, layer_norm_eps 1e-05, hidden_act gelu, position_embedding_type absolute, pad_token_id 1, bos_token_id 0 from roberta-base"
			if notes[1] != want {
				t.Errorf("notes[1]\n got %s\nwant %s", notes[1], want)
			}
			if c.t5 != nil {
				want = "token_decoder: num_layers 6, num_decoder_layers 6, d_model 768, num_heads 12, d_ff 3072, vocab_size 50304 from released config " + c.name +
					"; d_kv 64, relative_attention_num_buckets 32, relative_attention_max_distance 128, layer_norm_epsilon 1e-06, feed_forward_proj relu, " +
					"tie_word_embeddings true, eos_token_id 1, bos_token_id null from t5-small"
				if notes[3] != want {
					t.Errorf("notes[3]\n got %s\nwant %s", notes[3], want)
				}
			}
		})
	}
}

// The one-line description names the encoder and the T5 stack.
func TestDescribeAblation(t *testing.T) {
	blk, _, _ := Released("block_ablation_b4_85_cls_cross_attn", OriginYAML)
	cfg, _, err := blk.Resolve(nil, nil, Provenance{})
	if err != nil {
		t.Fatal(err)
	}
	want := "Block Transformer: L_B=4, roberta_cls (3 layers D=256 (8 heads x 32, FFN 1024), 3 CLS) projection_layer embedder, " +
		"block decoder 6 layers D=768 (12 heads x 64, FFN 3072), token decoder T5 6 layers d=768 (12 heads x 64, FFN 3072), cross_attention decoding r=4, V=50304"
	if got := cfg.Describe(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// What the official code refuses or btconvert does not run, and the values it checks, in the words
// of the YAML.
func TestAblationResolutionErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(s *BlockSpec)
		want string
	}{
		{"t5 with summation", func(s *BlockSpec) {
			s.TokenDecoder.Decoding = "summation"
		}, "token_decoder.cls t5 with summation decoding is not supported yet (btconvert runs lookup, roberta and roberta_cls embedders, gpt-neo-x decoders with prefix or summation decoding, and t5 token decoders with cross_attention decoding)"},
		{"cross_attention without t5", func(s *BlockSpec) {
			s.TokenDecoder.StackSpec = StackSpec{Cls: ClassNeoX, Base: DefaultBase}
		}, "token_decoder.decoding_strategy cross_attention needs token_decoder.cls t5 (the official code supports it for the T5 token decoder only)"},
		{"unknown embedder base", func(s *BlockSpec) {
			s.Embedder.Base = "roberta-large"
		}, `embedder.model_name_or_path "roberta-large" is not a base model btconvert knows (roberta-base): the official code builds the embedder from that model's config`},
		{"no token decoder base", func(s *BlockSpec) {
			s.TokenDecoder.Base = ""
		}, "token_decoder.model_name_or_path is not stated: the official code builds the token_decoder from that model's config (btconvert knows t5-small)"},
		{"unknown RoBERTa key", func(s *BlockSpec) {
			s.Embedder.Settings = append(s.Embedder.Settings, Setting{Key: "rotary_pct", Value: 0.5})
		}, `embedder.config: unknown key "rotary_pct" (not a RobertaConfig setting)`},
		{"relative positions", func(s *BlockSpec) {
			s.Embedder.Settings = append(s.Embedder.Settings, Setting{Key: KeyPositionType, Value: "relative_key"})
		}, "embedder: position_embedding_type relative_key from released config block_ablation_b4_85_cls_cross_attn is not supported (only absolute)"},
		{"gated T5", func(s *BlockSpec) {
			s.TokenDecoder.Settings = append(s.TokenDecoder.Settings, Setting{Key: KeyFeedForward, Value: "gated-gelu"})
		}, "token_decoder: feed_forward_proj gated-gelu from released config block_ablation_b4_85_cls_cross_attn is not supported (only relu)"},
		{"untied T5", func(s *BlockSpec) {
			s.TokenDecoder.Settings = append(s.TokenDecoder.Settings, Setting{Key: KeyTied, Value: false})
		}, "token_decoder: tie_word_embeddings false from released config block_ablation_b4_85_cls_cross_attn is not supported (the official T5 token decoder's output head is its token embeddings)"},
		{"bad T5 id", func(s *BlockSpec) {
			s.TokenDecoder.Settings = append(s.TokenDecoder.Settings, Setting{Key: KeyEOSID, Value: -1})
		}, "token_decoder.config: eos_token_id: -1 is not a token id (a non-negative integer below 4194304)"},
		{"T5 id outside the vocabulary", func(s *BlockSpec) {
			s.TokenDecoder.Settings = append(s.TokenDecoder.Settings, Setting{Key: KeyBOSID, Value: 60000})
		}, "bos_token_id 60000 must be an id of the vocabulary (0 to 50303)"},
		{"embedder vocabulary", func(s *BlockSpec) {
			s.Embedder.Settings[2].Value = 50265
		}, "embedder: vocab_size 50265 from released config block_ablation_b4_85_cls_cross_attn disagrees with the token decoder's vocab_size 50304 from released config block_ablation_b4_85_cls_cross_attn"},
		{"n_cls_tokens of roberta", func(s *BlockSpec) {
			s.Embedder.Cls = ClassRoberta
		}, "embedder.n_cls_tokens is for the roberta_cls embedder, not roberta"},
		{"concat of another width", func(s *BlockSpec) {
			s.Embedder.Cls, s.Embedder.CLSTokens, s.Embedder.ProjectionMethod = ClassRoberta, 0, "concat"
		}, "concat embedder: dim 256 x 4 vectors != block decoder hidden 768"},
		{"--heads disagrees with T5", func(s *BlockSpec) {}, "token_decoder: num_heads 12 from released config block_ablation_b4_85_cls_cross_attn; {Heads} 8 disagrees (the official code builds 12 heads from this config)"},
		{"too few positions", func(s *BlockSpec) {
			s.Embedder.Settings = append(s.Embedder.Settings, Setting{Key: KeyMaxPositions, Value: 8})
		}, "embedder: max_position_embeddings 8 is too few for position ids up to pad_token_id 1 + 7 tokens per block"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := Released("block_ablation_b4_85_cls_cross_attn", OriginYAML)
			c.edit(s)
			var heads Heads
			if strings.HasPrefix(c.name, "--heads") {
				heads = Heads{12, 8}
			}
			_, _, err := s.Resolve(heads, nil, Provenance{})
			if err == nil || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// T5Config's generic names (its attribute_map) set its own keys; null keeps bos_token_id unset;
// roberta_cls without n_cls_tokens has the official default of one CLS token.
func TestAblationKeys(t *testing.T) {
	s, _, _ := Released("block_ablation_b4_85_cls_cross_attn", OriginYAML)
	s.Embedder.CLSTokens = 0
	s.TokenDecoder.Settings = []Setting{{Key: KeyHidden, Value: 128}, {Key: KeyHeads, Value: 4}, {Key: KeyLayers, Value: 3},
		{Key: KeyVocab, Value: 50304}, {Key: KeyBOSID, Value: nil}, {Key: KeyEOSID, Value: 7}}
	cfg, _, err := s.Resolve(nil, nil, Provenance{})
	if err != nil {
		t.Fatal(err)
	}
	// num_layers does not reach the decoder: num_decoder_layers was set from t5-small's when it loaded.
	if got := *cfg.TokenDecoder.Own.(*t5.Config); got.Hidden != 128 || got.Heads != 4 || got.Layers != 6 || got.BOSTokenID != 7 || got.EOSTokenID != 7 {
		t.Errorf("T5 %+v", got)
	}
	if r := cfg.Embedder.Encoder.(*roberta.Config); r.CLSTokens != 1 || cfg.Origins["embedder.n_cls_tokens"] != "fill-in" {
		t.Errorf("CLS tokens %d (%s)", r.CLSTokens, cfg.Origins["embedder.n_cls_tokens"])
	}
	// A null head count or FFN is what the fill-in gives (the official code checks for None).
	s, _, _ = Released("block_ablation_b4_85_roberta_prefix", OriginYAML)
	s.Embedder.Settings = append(s.Embedder.Settings, Setting{Key: KeyHeads, Value: nil}, Setting{Key: KeyIntermediate, Value: nil})
	if cfg, _, err = s.Resolve(nil, nil, Provenance{}); err != nil || cfg.Embedder.Encoder.(*roberta.Config).Heads != 8 || cfg.Embedder.Encoder.(*roberta.Config).Intermediate != 1024 {
		t.Errorf("null heads and FFN: %v", err)
	}
	// concat: the 3 CLS outputs of width 256 are the block decoder's 768, no projection layer.
	s, _, _ = Released("block_ablation_b4_85_cls_sum", OriginYAML)
	s.Embedder.ProjectionMethod = "concat"
	if cfg, _, err = s.Resolve(nil, nil, Provenance{}); err != nil || cfg.Embedder.Type != Concat || Find(cfg, Embedder, "projection_layer.weight") != nil {
		t.Errorf("concat of 3 CLS outputs: %v", err)
	}
}

// The ablation presets: the RoBERTa embedder's heads by the fill-in, the T5 decoder as stated.
func TestAblationPresets(t *testing.T) {
	p, _ := FindPreset("block_ablation_b4_85_cls_cross_attn")
	c, err := p.Config()
	if err != nil || c.Embedder.Encoder.(*roberta.Config).Heads != 8 || c.TokenDecoder.Own.(*t5.Config).Heads != 12 || c.Origins["embedder.layers"] != "preset" ||
		c.Origins["embedder.heads"] != "fill-in" || c.Origins["token_decoder.heads"] != "preset" {
		t.Errorf("cls_cross_attn preset: %v %+v", err, c.Origins)
	}
	// RoBERTa 15,970,048 (its table 12,877,824), block decoder 42,528,768, T5 97,633,920 (its
	// table 38,633,472).
	if n := ParamCount(c); n != 156_132_736 {
		t.Errorf("cls_cross_attn has %d weights, want 156,132,736", n)
	}
}

// An encoder and a token decoder's own stack are stored under their keys in config.json (the
// encoder after the embedder's fields, the own stack first and without the unused stack fields)
// and read back as themselves; a null key is the lookup embedder.
func TestPartsInConfigJSON(t *testing.T) {
	p, _ := FindPreset("block_ablation_b4_85_cls_cross_attn")
	c, err := p.Config()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, `"embedder":{"type":"projection_layer","dim":256,"roberta":{"num_layers":3,`) ||
		!strings.Contains(s, `"token_decoder":{"t5":{"num_layers":6,`) || strings.Contains(s, `"hidden_size":0`) {
		t.Fatalf("config.json: %s", s)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, c) || back.Validate() != nil {
		t.Fatalf("read back:\n%+v\n%+v", back, *c)
	}
	var e EmbedderConfig
	if err := json.Unmarshal([]byte(`{"type":"concat","dim":8,"roberta":null}`), &e); err != nil || e.Encoder != nil || e.Class() != ClassLookup {
		t.Fatalf("%v %+v", err, e)
	}
	if err := json.Unmarshal([]byte(`{"type":"concat","dim":8,"roberta":{"num_layers":"x"}}`), &e); err == nil || !strings.HasPrefix(err.Error(), "roberta: ") {
		t.Fatalf("a bad encoder: %v", err)
	}
	// Keys in any case, as encoding/json reads fields; a null replaces what was there.
	e = EmbedderConfig{}
	if err := json.Unmarshal([]byte(`{"type":"concat","dim":8,"RoBERTa":{"num_layers":3}}`), &e); err != nil || e.Class() != ClassRoberta {
		t.Fatalf("%v %+v", err, e)
	}
	if err := json.Unmarshal([]byte(`{"roberta":null}`), &e); err != nil || e.Encoder != nil || e.Dim != 8 {
		t.Fatalf("%v %+v", err, e)
	}
	// Another part's key where it does not belong is passed over, as any unknown key (its family is
	// there).
	if err := json.Unmarshal([]byte(`{"type":"concat","dim":8,"t5":{"num_layers":1}}`), &e); err != nil || e.Encoder != nil {
		t.Fatalf("%v %+v", err, e)
	}
}

// The checks of a T5 token decoder come in the order of the rest of the config's: its ids agree
// with the model's last, after the decoding; a RoBERTa embedder's hidden_size is Explained by its
// config's resolution.
func TestPartChecksInOrder(t *testing.T) {
	p, _ := FindPreset("block_ablation_b4_85_cls_cross_attn")
	c, err := p.Config()
	if err != nil {
		t.Fatal(err)
	}
	c.BOSTokenID++
	c.TokenDecoder.Decoding = Prefix
	want := "token_decoder: prefix decoding with a t5 token decoder (cross_attention is T5's, prefix and summation GPT-NeoX's)"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	c.TokenDecoder.Decoding = CrossAttention
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "bos_token_id ") {
		t.Fatalf("got %v", err)
	}
	blk, _, err := Released("block_ablation_b4_85_roberta_prefix", OriginYAML)
	if err != nil {
		t.Fatal(err)
	}
	prov := Provenance{}
	if _, _, err := blk.Resolve(nil, nil, prov); err != nil {
		t.Fatal(err)
	}
	if got := prov["embedder.hidden_size"]; !strings.HasSuffix(got, ", as the official code resolves this config") {
		t.Errorf("embedder.hidden_size: %q", got)
	}
}
