package formats

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// Checkpoint is a set of safetensors files read as one: a single file, or HF shards with their
// index.
type Checkpoint struct {
	Dir   string // folder holding the weights (and, usually, the config)
	Files []*File
	where map[string]*File
	Names []string // every tensor name, sorted
}

var shardName = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

const indexName = "model.safetensors.index.json"

// OpenCheckpoint opens path: a .safetensors file, or a folder with model.safetensors or
// model.safetensors.index.json and its shards. Other files in the folder are left alone.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, badFile(path, "cannot open: %v", unwrapPathErr(err))
	}
	if !st.IsDir() {
		if filepath.Base(path) == indexName {
			return openSharded(filepath.Dir(path))
		}
		f, err := OpenSafetensors(path)
		if err != nil {
			return nil, err
		}
		return newCheckpoint(filepath.Dir(path), []*File{f}), nil
	}
	if _, err := os.Stat(filepath.Join(path, indexName)); err == nil {
		return openSharded(path)
	}
	single := filepath.Join(path, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		f, err := OpenSafetensors(single)
		if err != nil {
			return nil, err
		}
		return newCheckpoint(path, []*File{f}), nil
	}
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if shardName.MatchString(e.Name()) {
			return nil, badFile(path, "has shard %s but no %s to say which tensor is where", e.Name(), indexName)
		}
	}
	return nil, badFile(path, "no model.safetensors or %s here", indexName)
}

func newCheckpoint(dir string, files []*File) *Checkpoint {
	c := &Checkpoint{Dir: dir, Files: files, where: map[string]*File{}}
	for _, f := range files {
		for _, t := range f.Tensors {
			c.where[t.Name] = f
			c.Names = append(c.Names, t.Name)
		}
	}
	sort.Strings(c.Names)
	return c
}

func openSharded(dir string) (*Checkpoint, error) {
	ip := filepath.Join(dir, indexName)
	b, err := os.ReadFile(ip)
	if err != nil {
		return nil, badFile(ip, "cannot read: %v", unwrapPathErr(err))
	}
	var idx ShardIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, badFile(ip, "not a valid index: %v", err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, badFile(ip, "weight_map is empty")
	}
	shards := map[string]bool{}
	for _, s := range idx.WeightMap {
		if s != filepath.Base(s) || s == "" || s == "." || s == ".." {
			return nil, badFile(ip, "shard name %q must be a file name in the same folder", s)
		}
		shards[s] = true
	}
	// Shards in the folder that the map forgets are opened too, so their tensors are caught.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if shardName.MatchString(e.Name()) {
				shards[e.Name()] = true
			}
		}
	}
	names := make([]string, 0, len(shards))
	for s := range shards {
		names = append(names, s)
	}
	sort.Strings(names)
	var files []*File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, s := range names {
		f, err := OpenSafetensors(filepath.Join(dir, s))
		if err != nil {
			closeAll()
			return nil, err
		}
		files = append(files, f)
	}
	byName := map[string]*File{}
	for _, f := range files {
		byName[filepath.Base(f.Path)] = f
	}
	tnames := make([]string, 0, len(idx.WeightMap))
	for t := range idx.WeightMap {
		tnames = append(tnames, t)
	}
	sort.Strings(tnames)
	for _, t := range tnames {
		s := idx.WeightMap[t]
		if byName[s].Info(t) == nil {
			closeAll()
			return nil, badTensor(ip, t, "mapped to shard %s, which does not contain it", s)
		}
	}
	for _, f := range files {
		for _, t := range f.Tensors {
			if s, ok := idx.WeightMap[t.Name]; !ok || s != filepath.Base(f.Path) {
				closeAll()
				return nil, badTensor(f.Path, t.Name, "not in the weight_map of %s", ip)
			}
		}
	}
	return newCheckpoint(dir, files), nil
}

// Has reports whether the checkpoint holds the tensor.
func (c *Checkpoint) Has(name string) bool { return c.where[name] != nil }

// Info describes a tensor, or returns nil.
func (c *Checkpoint) Info(name string) *TensorInfo {
	if f := c.where[name]; f != nil {
		return f.Info(name)
	}
	return nil
}

// FileOf names the file holding the tensor.
func (c *Checkpoint) FileOf(name string) string {
	if f := c.where[name]; f != nil {
		return f.Path
	}
	return c.Dir
}

// Raw returns the stored bytes of a tensor.
func (c *Checkpoint) Raw(name string) ([]byte, error) {
	f := c.where[name]
	if f == nil {
		return nil, badTensor(c.Dir, name, "not in the checkpoint")
	}
	return f.Raw(name)
}

// Close unmaps every file.
func (c *Checkpoint) Close() error {
	for _, f := range c.Files {
		f.Close()
	}
	return nil
}

// tensor wraps a checkpoint tensor as one of ours (same bytes, new name).
func (c *Checkpoint) tensor(src, component, name string) *Tensor {
	info := c.Info(src)
	return &Tensor{Component: component, Name: name, DType: info.DType, Shape: info.Shape,
		SrcFile: c.FileOf(src), SrcName: src, load: func() ([]byte, error) { return c.Raw(src) },
		release: func() { c.where[src].Release(src) }}
}
