package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/fsio"
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

// IndexName is the HF shard index.
const IndexName = "model.safetensors.index.json"

// OpenCheckpoint opens path: a .safetensors file, or a folder with model.safetensors or
// model.safetensors.index.json and its shards. Other files in the folder are left alone.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, errs.File(path, "cannot open: %v", fsio.Unwrap(err))
	}
	if !st.IsDir() {
		if filepath.Base(path) == IndexName {
			return openSharded(filepath.Dir(path))
		}
		f, err := Open(path)
		if err != nil {
			return nil, err
		}
		return newCheckpoint(filepath.Dir(path), []*File{f}), nil
	}
	single := filepath.Join(path, "model.safetensors")
	if _, err := os.Lstat(filepath.Join(path, IndexName)); err == nil {
		if _, err := os.Lstat(single); err == nil {
			// Two sets of weights: HF's loaders take model.safetensors, other tools the shards.
			return nil, errs.File(path, "holds both model.safetensors and %s: give the one that is the model (%s or %s)",
				IndexName, single, filepath.Join(path, IndexName))
		}
		return openSharded(path)
	}
	if _, err := os.Lstat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return newCheckpoint(path, []*File{f}), nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, errs.File(path, "cannot read the folder: %v", fsio.Unwrap(err))
	}
	for _, e := range ents {
		if shardName.MatchString(e.Name()) {
			return nil, errs.File(path, "has shard %s but no %s to say which tensor is where", e.Name(), IndexName)
		}
	}
	return nil, errs.File(path, "no model.safetensors or %s here", IndexName)
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
	ip := filepath.Join(dir, IndexName)
	b, err := fsio.ReadFile(ip, fsio.ConfigLimit)
	if err != nil {
		return nil, err
	}
	var idx ShardIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, errs.File(ip, "not a valid index: %v", err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, errs.File(ip, "weight_map is empty")
	}
	shards := map[string]bool{}
	for _, s := range idx.WeightMap {
		if s != filepath.Base(s) || s == "" || s == "." || s == ".." {
			return nil, errs.File(ip, "shard name %q must be a file name in the same folder", s)
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
		f, err := Open(filepath.Join(dir, s))
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
			return nil, errs.Tensor(ip, t, "mapped to shard %s, which does not contain it", s)
		}
	}
	for _, f := range files {
		for _, t := range f.Tensors {
			if s, ok := idx.WeightMap[t.Name]; !ok || s != filepath.Base(f.Path) {
				closeAll()
				return nil, errs.Tensor(f.Path, t.Name, "not in the weight_map of %s", ip)
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
		return nil, errs.Tensor(c.Dir, name, "not in the checkpoint")
	}
	return f.Raw(name)
}

// Close closes every file.
func (c *Checkpoint) Close() error {
	for _, f := range c.Files {
		f.Close()
	}
	return nil
}
