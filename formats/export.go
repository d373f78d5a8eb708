package formats

import (
	"fmt"
	"os"
	"path/filepath"
)

// ExportOptions controls ExportOfficial.
type ExportOptions struct {
	DType     DType // "" keeps each tensor's dtype
	ShardSize int64 // > 0: HF shards of at most this many tensor bytes, plus the index
	Force     bool
	Progress  Progress
	Name      string // model name for the official config.yaml
}

// ExportOfficial writes an unquantized model in the layout the original code loads: for a Block
// Transformer the official checkpoint (official tensor names, the unused
// block_decoder.gpt_neox.embed_in.weight zero-filled, config.yaml in the official Hydra schema);
// for a vanilla model an HF GPT-NeoX folder (config.json + model.safetensors). The folder is
// written beside dir and renamed into place at the end.
func ExportOfficial(m *Model, dir string, o ExportOptions) (err error) {
	if len(m.Config.Quantization) > 0 {
		return fmt.Errorf("export: dequantize first (the official layout has no quantized tensors)")
	}
	tmp, err := PrepareOutputDir(dir, o.Force)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	conv := func(t *Tensor, name string, shape []int, fix func([]byte) []byte) WriteTensor {
		to := t.DType
		if o.DType != "" {
			to = o.DType
		}
		return WriteTensor{Name: name, DType: to, Shape: shape, Data: func() ([]byte, error) {
			raw, err := t.Raw()
			if err != nil {
				return nil, err
			}
			if fix != nil {
				raw = fix(raw)
			}
			return ConvertRaw(t.DType, to, raw)
		}, Done: t.Release}
	}
	cfg := m.Config
	var wts []WriteTensor
	var meta map[string]string
	if cfg.IsBlock() {
		meta = map[string]string{"format": "pt"}
		D, De, L := cfg.BlockDecoder.Hidden, cfg.Embedder.Dim, cfg.BlockLength
		for _, t := range m.Tensors {
			name := OfficialName(t.Component, t.Name)
			switch {
			case t.Component == BlockDecoder && t.Name == "layers.0.input_layernorm.weight":
				// The unused embed_in goes first in the block decoder, zero-filled.
				dt := t.DType
				if o.DType != "" {
					dt = o.DType
				}
				V := cfg.VocabSize
				wts = append(wts, WriteTensor{Name: unusedEmbedIn, DType: dt, Shape: []int{V, D},
					Data: func() ([]byte, error) { return make([]byte, V*D*dt.Size()), nil }})
				wts = append(wts, conv(t, name, t.Shape, nil))
			case t.Name == "projection_layer.weight":
				es := t.DType.Size()
				wts = append(wts, conv(t, name, []int{D, De, L}, func(raw []byte) []byte {
					return permute3(raw, es, D, L, De, []int{0, 2, 1}) // [D, L, De] -> [D, De, L]
				}))
			case t.Name == "expansion_layer.weight":
				wts = append(wts, conv(t, name, []int{t.Shape[0], t.Shape[1], 1}, nil))
			default:
				wts = append(wts, conv(t, name, t.Shape, nil))
			}
		}
		y, err := OfficialYAMLFor(o.Name, cfg)
		if err != nil {
			return err
		}
		if _, err := WriteFileAtomic(filepath.Join(tmp, "config.yaml"), y); err != nil {
			return err
		}
	} else {
		meta = map[string]string{"format": "pt"}
		name := neoxName("embed_out.weight")
		dt := o.DType
		for _, t := range m.Tensors {
			wts = append(wts, conv(t, name(t.Component, t.Name), t.Shape, nil))
			if dt == "" {
				dt = t.DType
			}
		}
		cj, err := HFConfigJSON(cfg, dt)
		if err != nil {
			return err
		}
		if _, err := WriteFileAtomic(filepath.Join(tmp, "config.json"), cj); err != nil {
			return err
		}
	}
	if _, err = WriteSharded(tmp, o.ShardSize, meta, wts, o.Progress); err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(m.Path, TokenizerName)); err == nil {
		if _, err := WriteFileAtomic(filepath.Join(tmp, TokenizerName), b); err != nil {
			return err
		}
	}
	return CommitOutputDir(tmp, dir)
}
