package official

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Bounds of a YAML config. An official config is a few KB: a few hundred tokens, a few dozen keys
// to a mapping, nested under 10 deep. Within these bounds the costliest input is read in tens of
// milliseconds and under 20 MB; without them the parser (whose work grows with the square of a
// mapping's keys and with the length of every key's path) and alias expansion take minutes or all
// memory. The token bound alone keeps that square small should shape misjudge the parser.
const (
	yamlMaxBytes  = 256 << 10
	yamlMaxTokens = 4096    // keys, values and punctuation as written
	yamlMaxDepth  = 64      // nested mappings and sequences, aliases followed
	yamlMaxKeys   = 1000    // keys of one block mapping
	yamlMaxPaths  = 4 << 20 // bytes of the paths the parser builds for its keys and items
	yamlMaxNodes  = 100000  // keys and values, every alias expanded
)

// ReadYAML reads a YAML file into v, as the official loader (OmegaConf on PyYAML) reads it or not
// at all: within bounds checked before the parser runs, a single document, and every value that v
// reads spelled so that PyYAML (YAML 1.1) and the YAML 1.2 decoder agree.
func ReadYAML(path string, v any) error {
	b, err := fsio.ReadFile(path, yamlMaxBytes)
	if err != nil {
		return err
	}
	return decodeYAML(path, b, v)
}

func decodeYAML(path string, b []byte, v any) error {
	if len(b) > yamlMaxBytes {
		return errs.File(path, "is %d bytes, more than the %d a YAML config may have", len(b), yamlMaxBytes)
	}
	// The lexer costs some 300 bytes a token: count them before it runs.
	if tokenStarts(b) > yamlMaxTokens {
		return errs.File(path, "has more than %d YAML tokens (keys, values and punctuation)", yamlMaxTokens)
	}
	tokens := lexer.Tokenize(string(b))
	if _, msg := shape(tokens); msg != "" {
		return errs.File(path, "%s", msg)
	}
	f, err := parser.Parse(tokens, 0)
	if err != nil {
		return errs.File(path, "not valid YAML: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	if len(f.Docs) > 1 {
		// PyYAML's yaml.load raises "expected a single document in the stream".
		return errs.File(path, "holds more than one YAML document (the official loader reads a single one)")
	}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return nil
	}
	body := f.Docs[0].Body
	w := walker{anchors: map[string]*anchor{}, checked: map[checked]bool{}}
	if _, _, err := w.count(body); err != nil {
		return errs.File(path, "%s", err.Error())
	}
	if err := w.check(body, readsOf(reflect.TypeOf(v), map[reflect.Type]*reads{}), nil); err != nil {
		return errs.File(path, "%s", err.Error())
	}
	if err := yaml.NodeToValue(body, v); err != nil {
		return errs.File(path, "not valid YAML: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return nil
}

// tokenStarts bounds the lexer's token count from above: every token starts at a non-space byte
// that follows a space or an indicator, or is an indicator itself, but for the empty texts a block
// scalar may have (after '|' or '>') and what follows "...".
func tokenStarts(b []byte) int {
	n := 0
	for i, c := range b {
		if isSpace(c) {
			continue
		}
		if i == 0 || isSpace(b[i-1]) || isIndicator(c) || isIndicator(b[i-1]) {
			n++
		}
		if c == '|' || c == '>' {
			n += 2
		}
		if i >= 3 && string(b[i-3:i]) == "..." {
			n++ // a document end marker is a token even with text right after it
		}
	}
	return n
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isIndicator(c byte) bool { return strings.IndexByte("-?:,[]{}#&*!|>'\"%@`", c) >= 0 }

// level is a mapping or sequence open at a token.
type level struct {
	col  int // a block collection's column
	seq  bool
	flow bool
	seg  int  // its part of the path of what is inside: ".key" or "[index]"
	keys int  // a block mapping's keys so far
	pair bool // a flow sequence's item is "k: v", a mapping of its own
	dash bool // a "-" inside a flow collection: a sequence to its end
}

// shape checks, on the tokens and before the parser runs, the three things its work grows with:
// nesting (it recurses on each level), the keys of one block mapping (it recurses on each key and
// copies the keys after it), and the paths it builds ("$.a.b[3].c" for every key, twice, and for
// every item). The levels are tracked by column, as the parser does, and estimated from above; so
// are the paths' bytes and the deepest nesting, which it returns.
func shape(tokens token.Tokens) (s shapeStats, msg string) {
	var stack []level
	path, cost := 1, 0 // "$"
	pairs := 0         // flow sequence items that are mappings
	deeper := func() bool {
		s.depth = max(s.depth, len(stack)+pairs)
		return len(stack)+pairs <= yamlMaxDepth
	}
	push := func(l level) bool {
		stack = append(stack, l)
		path += l.seg
		return deeper()
	}
	setPair := func(pair bool) {
		top := &stack[len(stack)-1]
		switch {
		case pair && !top.pair:
			pairs++
		case !pair && top.pair:
			pairs--
		}
		top.pair = pair
	}
	pop := func() {
		setPair(false)
		path -= stack[len(stack)-1].seg
		stack = stack[:len(stack)-1]
	}
	setSeg := func(seg int) {
		top := &stack[len(stack)-1]
		path += seg - top.seg
		top.seg = seg
	}
	deep := fmt.Sprintf("nested deeper than %d levels", yamlMaxDepth)
	// A tag or anchor that ends its line, or an empty sequence item, may take the collection that
	// follows for its node, even one at its column or left of it: counted as nested.
	dangling := false
	// place opens a block collection at column col or, at the column of one of its kind, goes on
	// with it.
	place := func(col int, seq bool, seg int) string {
		if dangling {
			// Nested or not (a tag of a tag is empty), the keys go on counting with those of the
			// mapping at this column.
			dangling = false
			keys := 1
			for k := len(stack) - 1; k >= 0; k-- {
				if l := stack[k]; !l.flow && l.col == col && l.seq == seq {
					keys += l.keys
					break
				}
			}
			if !seq {
				if s.keys = max(s.keys, keys); keys > yamlMaxKeys {
					return fmt.Sprintf("has a mapping of more than %d keys", yamlMaxKeys)
				}
			}
			if !push(level{col: col, seq: seq, seg: seg, keys: keys}) {
				return deep
			}
			return ""
		}
		for len(stack) > 0 && stack[len(stack)-1].col > col {
			pop()
		}
		if n := len(stack); n > 0 && stack[n-1].col == col && stack[n-1].seq && !seq {
			pop() // a key at a sequence's column ends the sequence
		}
		if n := len(stack); n > 0 && stack[n-1].col == col && stack[n-1].seq == seq {
			setSeg(seg)
			if !seq {
				stack[n-1].keys++
				s.keys = max(s.keys, stack[n-1].keys)
				if stack[n-1].keys > yamlMaxKeys {
					return fmt.Sprintf("has a mapping of more than %d keys", yamlMaxKeys)
				}
			}
			return ""
		}
		if !seq {
			s.keys = max(s.keys, 1)
		}
		if !push(level{col: col, seq: seq, seg: seg, keys: 1}) {
			return deep
		}
		return ""
	}
	const indexSeg = 8 // "[12345]"
	if len(tokens) > yamlMaxTokens {
		return s, fmt.Sprintf("has more than %d YAML tokens (keys, values and punctuation)", yamlMaxTokens)
	}
	for i, tk := range tokens {
		if tk.Type == token.CommentType {
			continue
		}
		inFlow := len(stack) > 0 && stack[len(stack)-1].flow
		if inFlow && tk.Type != token.CollectEntryType && tk.Type != token.SequenceEndType && tk.Type != token.MappingEndType {
			if stack[len(stack)-1].seq {
				cost += path // an item's path, "[i]" under the sequence's
			} else {
				cost += 2 * (path + 3 + len(tk.Value)) // a key's, which a flow mapping may leave without ':'
			}
		}
		switch tk.Type {
		case token.DocumentHeaderType, token.DocumentEndType:
			stack, path, pairs, dangling = stack[:0], 1, 0, false
		// Directives and explicit keys are in no config: refused rather than matched against
		// PyYAML (which reads a %YAML 1.1 directive, and the parser here as a document of its own).
		case token.DirectiveType:
			name := ""
			if j := nextToken(tokens, i); j < len(tokens) && tokens[j].Position.Line == tk.Position.Line {
				name = tokens[j].Value
			}
			return s, "has a YAML directive (%" + name + "), which is not supported"
		case token.MappingKeyType:
			return s, "has an explicit key (?), which is not supported"
		case token.SequenceStartType, token.MappingStartType:
			if !inFlow {
				dangling = false // a flow collection is the node of a tag or item left empty before it
			}
			seg := 0
			if tk.Type == token.SequenceStartType {
				seg = indexSeg
			}
			if !push(level{col: -1, seq: tk.Type == token.SequenceStartType, flow: true, seg: seg}) {
				return s, deep
			}
		case token.SequenceEndType, token.MappingEndType:
			for inFlow && stack[len(stack)-1].dash {
				pop()
			}
			if len(stack) > 0 && stack[len(stack)-1].flow {
				pop()
			}
		case token.CollectEntryType:
			if inFlow {
				if stack[len(stack)-1].seq {
					setSeg(indexSeg)
					setPair(false)
				} else {
					setSeg(0)
				}
			}
		case token.SequenceEntryType:
			if inFlow {
				// The parser takes "[- a]" for a sequence in the item.
				if !push(level{col: -1, seq: true, flow: true, dash: true, seg: indexSeg}) {
					return s, deep
				}
				cost += path
			} else {
				msg = place(tk.Position.Column, true, indexSeg)
				cost += path
				// An empty item takes a mapping that follows at its column for its value.
				if j := nextToken(tokens, i); j < len(tokens) && tokens[j].Position.Line > tk.Position.Line &&
					tokens[j].Position.Column >= tk.Position.Column && tokens[j].Type != token.SequenceEntryType {
					dangling = true
				}
			}
		case token.MappingValueType:
			key := keyStart(tokens, i)
			seg := 1 // "."
			for _, k := range tokens[key:i] {
				seg += len(k.Value) + 2 // quoted, or a tag's space
			}
			if inFlow {
				// In a flow sequence, "[k: v]" is a mapping inside the item: its key lengthens the
				// item's path.
				base := 0
				if stack[len(stack)-1].seq {
					base = indexSeg
					setPair(true)
					s.keys = max(s.keys, 1)
					if !deeper() {
						return s, deep
					}
				}
				setSeg(base + seg)
			} else {
				msg = place(tokens[key].Position.Column, false, seg)
			}
			cost += 2 * path
		case token.TagType, token.AnchorType:
			if !inFlow {
				j := nextToken(tokens, i)
				if tk.Type == token.AnchorType {
					j = nextToken(tokens, j) // past its name
				}
				dangling = dangling || j >= len(tokens) || tokens[j].Position.Line > tk.Position.Line
			}
		case token.AliasType:
		default:
			// A scalar or alias is the node of a tag or item left empty before it (an anchor's
			// name is not).
			anchorName := i > 0 && tokens[i-1].Type == token.AnchorType
			if j := nextToken(tokens, i); !inFlow && !anchorName && (j >= len(tokens) || tokens[j].Type != token.MappingValueType) {
				dangling = false
			}
		}
		s.paths = cost
		if msg != "" {
			return s, msg
		}
		if cost > yamlMaxPaths {
			return s, fmt.Sprintf("nests too many keys too deep: the parser would build more than %d bytes of key paths", yamlMaxPaths)
		}
	}
	return s, ""
}

// shapeStats are shape's estimates: bytes of paths, levels of nesting and keys of a block mapping.
type shapeStats struct{ paths, depth, keys int }

// nextToken is the index of the first token after tokens[i] that is not a comment.
func nextToken(tokens token.Tokens, i int) int {
	for i++; i < len(tokens) && tokens[i].Type == token.CommentType; i++ {
	}
	return i
}

// keyStart is the first token of the key whose ':' is tokens[i]: the key (an alias or a block
// scalar too) with the anchor and tag before it on its line (i itself when there is no key).
func keyStart(tokens token.Tokens, i int) int {
	j := i - 1
	for j >= 0 && tokens[j].Type == token.CommentType {
		j-- // a key may stand lines above its ':'
	}
	if j < 0 {
		return i
	}
	switch tokens[j].Type {
	case token.SequenceEntryType, token.MappingValueType, token.CollectEntryType, token.SequenceStartType,
		token.MappingStartType, token.DocumentHeaderType:
		return i
	}
	if j > 0 {
		switch tokens[j-1].Type {
		case token.LiteralType, token.FoldedType, token.AliasType:
			j-- // a block scalar's text or an alias's name: the key starts at its '|', '>' or '*'
		}
	}
	line := tokens[j].Position.Line
	for j > 0 {
		switch p := tokens[j-1]; {
		case p.Position.Line == line && (p.Type == token.TagType || p.Type == token.AnchorType):
			j--
			continue
		case j > 1 && tokens[j-2].Type == token.AnchorType && (p.Position.Line == line || tokens[j-2].Position.Line == line):
			j -= 2 // an anchor and its name
			continue
		}
		break
	}
	return j
}

// anchor is an anchor's expanded size and depth (done false while its node is being walked).
type anchor struct {
	node        ast.Node
	size, depth int
	done        bool
}

type walker struct {
	anchors map[string]*anchor
	checked map[checked]bool
}

// count is the number of keys and values under n with every alias expanded, and how deep its
// mappings and sequences nest. Each anchor's are kept, so the walk is linear in the document as
// written.
func (w *walker) count(n ast.Node) (size, depth int, err error) {
	switch n := n.(type) {
	case nil, *ast.CommentGroupNode, *ast.DirectiveNode:
		return 0, 0, nil
	case *ast.AnchorNode:
		name := n.Name.GetToken().Value
		if _, ok := w.anchors[name]; ok {
			// PyYAML refuses a second anchor of a name ("found duplicate anchor").
			return 0, 0, fmt.Errorf("anchor &%s is defined twice", name)
		}
		a := &anchor{node: n.Value}
		w.anchors[name] = a
		if a.size, a.depth, err = w.count(n.Value); err != nil {
			return 0, 0, err
		}
		a.done = true
		return a.size, a.depth, nil
	case *ast.AliasNode:
		name := n.Value.GetToken().Value
		a := w.anchors[name]
		switch {
		case a == nil:
			return 0, 0, fmt.Errorf("alias *%s names no anchor before it", name)
		case !a.done:
			return 0, 0, fmt.Errorf("alias *%s is inside its own anchor", name)
		}
		size, depth = a.size, a.depth
	case *ast.TagNode:
		return w.count(n.Value)
	case *ast.MappingKeyNode:
		return w.count(n.Value)
	case *ast.MappingNode:
		size = 1
		for _, kv := range n.Values {
			s, d, err := w.pair(kv)
			if err != nil {
				return 0, 0, err
			}
			size, depth = size+s, max(depth, d)
		}
		depth++
	case *ast.MappingValueNode:
		s, d, err := w.pair(n)
		if err != nil {
			return 0, 0, err
		}
		size, depth = 1+s, 1+d
	case *ast.SequenceNode:
		size = 1
		for _, v := range n.Values {
			s, d, err := w.count(v)
			if err != nil {
				return 0, 0, err
			}
			size, depth = size+s, max(depth, d)
		}
		depth++
	default:
		size = 1
	}
	switch {
	case size > yamlMaxNodes:
		return 0, 0, fmt.Errorf("expands to more than %d keys and values (aliases expanded)", yamlMaxNodes)
	case depth > yamlMaxDepth:
		return 0, 0, fmt.Errorf("nested deeper than %d levels (aliases followed)", yamlMaxDepth)
	}
	return size, depth, nil
}

func (w *walker) pair(kv *ast.MappingValueNode) (size, depth int, err error) {
	ks, kd, err := w.count(kv.Key)
	if err != nil {
		return 0, 0, err
	}
	vs, vd, err := w.count(kv.Value)
	return ks + vs, max(kd, vd), err
}

// reads is what decoding into a Go type reads: the keys a struct names (keys), or all of it (want
// says what a scalar must be).
type reads struct {
	keys map[string]*reads
	want want
}

type want int

const (
	wantAny want = iota
	wantInt
	wantFloat
	wantString
	wantBool
)

// readsOf follows goccy/go-yaml's rules: a field is read under its yaml (else json) tag's name, else
// its lower-cased name; ",inline" fields' keys are the struct's own.
func readsOf(t reflect.Type, seen map[reflect.Type]*reads) *reads {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &reads{want: wantInt}
	case reflect.Float32, reflect.Float64:
		return &reads{want: wantFloat}
	case reflect.String:
		return &reads{want: wantString}
	case reflect.Bool:
		return &reads{want: wantBool}
	case reflect.Struct:
	default:
		return readAll
	}
	if r, ok := seen[t]; ok {
		return r
	}
	r := &reads{keys: map[string]*reads{}}
	seen[t] = r
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		if (f.PkgPath != "" && !f.Anonymous) || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		sub := readsOf(f.Type, seen)
		if inline := strings.Contains(","+opts+",", ",inline,"); inline && sub.keys != nil {
			for k, v := range sub.keys {
				r.keys[k] = v
			}
			continue
		}
		r.keys[name] = sub
	}
	return r
}

// check refuses, in what r reads of n, anything the official loader reads otherwise: a plain
// scalar PyYAML resolves differently (YAML 1.1 against the decoder's 1.2), a value of the wrong
// kind for its field (the decoder would convert it: 4.5 to 4, "4" to 4), a tag, a merge key, and
// an OmegaConf interpolation or missing value. An anchor's node is checked once for each way it
// is read, so the walk stays linear however often it is aliased.
func (w *walker) check(n ast.Node, r *reads, at *keyPath) error {
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode:
		target, err := w.resolve(n, at)
		if err != nil || target == nil {
			return err
		}
		k := checked{target, r}
		if w.checked[k] {
			return nil
		}
		w.checked[k] = true
	}
	n, err := w.resolve(n, at)
	if err != nil || n == nil {
		return err
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, kv := range n.Values {
			if err := w.checkPair(kv, r, at); err != nil {
				return err
			}
		}
		return nil
	case *ast.MappingValueNode:
		return w.checkPair(n, r, at)
	case *ast.SequenceNode:
		if r.keys != nil {
			return nil // the decoder refuses a sequence for a struct
		}
		for i, v := range n.Values {
			if err := w.check(v, readAll, &keyPath{up: at, idx: i}); err != nil {
				return err
			}
		}
		return nil
	}
	if r.keys != nil {
		return nil // the decoder refuses a scalar for a struct
	}
	return w.scalar(n, r.want, at)
}

// checked is a node checked as read by r.
type checked struct {
	node ast.Node
	r    *reads
}

var readAll = &reads{}

func (w *walker) checkPair(kv *ast.MappingValueNode, r *reads, at *keyPath) error {
	key, err := w.resolve(kv.Key, at)
	if err != nil {
		return err
	}
	if _, ok := key.(*ast.MergeKeyNode); ok {
		// PyYAML merges "<<" keys under YAML 1.1's rules; refused rather than matched.
		return fmt.Errorf("%s: merge keys (<<) are not supported", at)
	}
	name := ""
	if s, ok := key.(*ast.StringNode); ok {
		name = s.Value
	} else if key != nil {
		name = key.GetToken().Value
	}
	sub := readAll
	if r.keys != nil {
		if sub = r.keys[name]; sub == nil {
			return nil // not read
		}
	}
	child := &keyPath{up: at, key: name, idx: -1}
	if key != nil {
		if err := w.scalar(key, wantAny, child); err != nil {
			return err
		}
	}
	return w.check(kv.Value, sub, child)
}

// resolve is the node an anchor holds or an alias names. A tag is refused: the decoder converts
// under !!int, !!float and the like by rules of its own, not PyYAML's (it reads !!int 1.5 as 0,
// where PyYAML raises).
func (w *walker) resolve(n ast.Node, at *keyPath) (ast.Node, error) {
	for {
		switch nn := n.(type) {
		case *ast.AnchorNode:
			n = nn.Value
		case *ast.AliasNode:
			n = w.anchors[nn.Value.GetToken().Value].node
		case *ast.MappingKeyNode:
			n = nn.Value
		case *ast.TagNode:
			return nil, fmt.Errorf("%s: tags (%s) are not supported", at, nn.Start.Value)
		default:
			return n, nil
		}
	}
}

// keyPath names a value in messages (block_decoder.config.hidden_size, a[2]); it is spelled out
// only for an error.
type keyPath struct {
	up  *keyPath
	key string
	idx int // an item's index; -1 for a key
}

func (p *keyPath) String() string {
	if p == nil {
		return "the document"
	}
	var parts []*keyPath
	for q := p; q != nil; q = q.up {
		parts = append(parts, q)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		switch q := parts[i]; {
		case q.idx >= 0:
			fmt.Fprintf(&b, "[%d]", q.idx)
		case b.Len() > 0:
			b.WriteString("." + q.key)
		default:
			b.WriteString(q.key)
		}
	}
	return b.String()
}

// scalar checks one scalar (want: what its field takes).
func (w *walker) scalar(n ast.Node, want want, at *keyPath) error {
	var v pyValue
	shown := ""
	switch n := n.(type) {
	case *ast.LiteralNode:
		v, shown = pyValue{kind: pyStr, s: n.Value.Value}, strconv.Quote(n.Value.Value)
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
		return nil // a collection for a scalar field: the decoder refuses it
	default:
		tk := n.GetToken()
		if tk == nil {
			return nil
		}
		if tk.Type == token.SingleQuoteType || tk.Type == token.DoubleQuoteType {
			v, shown = pyValue{kind: pyStr, s: tk.Value}, strconv.Quote(tk.Value)
			break
		}
		shown = tk.Value
		v = pyResolve(tk.Value)
		if v.kind == pyBad {
			return fmt.Errorf("%s: %s cannot be read by the official loader (PyYAML: %s)", at, shown, v.s)
		}
		if g := goValue(n); !v.same(g) {
			return fmt.Errorf("%s: %s is %s to the official loader (OmegaConf on PyYAML, YAML 1.1) but %s in YAML 1.2; spell it so both read it alike",
				at, shown, v, g)
		}
	}
	if v.kind == pyStr {
		// OmegaConf resolves ${...} when the value is read and raises for ???.
		if strings.Contains(v.s, "${") {
			return fmt.Errorf("%s: %s is an OmegaConf interpolation, which is not supported", at, shown)
		}
		if v.s == "???" {
			return fmt.Errorf("%s: ??? is OmegaConf's missing value", at)
		}
	}
	ok := true
	switch want {
	case wantInt:
		ok = v.kind == pyInt
	case wantFloat:
		ok = v.kind == pyInt || v.kind == pyFloat
	case wantString:
		ok = v.kind == pyStr
	case wantBool:
		ok = v.kind == pyBool
	}
	if !ok && v.kind != pyNull {
		return fmt.Errorf("%s: %s is %s, not %s", at, shown, v.kindName(), want.kindName())
	}
	return nil
}

type pyKind int

const (
	pyStr pyKind = iota
	pyNull
	pyBool
	pyInt
	pyFloat
	pyBad // PyYAML raises (s says why)
)

// pyValue is a scalar as PyYAML constructs it.
type pyValue struct {
	kind pyKind
	s    string
	b    bool
	i    *big.Int
	f    float64
}

func (v pyValue) kindName() string {
	return [...]string{pyStr: "a string", pyNull: "null", pyBool: "a boolean", pyInt: "an integer", pyFloat: "a float"}[v.kind]
}

func (w want) kindName() string {
	return [...]string{wantInt: "an integer", wantFloat: "a number", wantString: "a string", wantBool: "a boolean"}[w]
}

func (v pyValue) String() string {
	switch v.kind {
	case pyNull:
		return "null"
	case pyBool:
		return fmt.Sprintf("the boolean %t", v.b)
	case pyInt:
		return "the integer " + v.i.String()
	case pyFloat:
		return "the float " + strconv.FormatFloat(v.f, 'g', -1, 64)
	}
	return "the string " + strconv.Quote(v.s)
}

func (v pyValue) same(g pyValue) bool {
	if v.kind != g.kind {
		return false
	}
	switch v.kind {
	case pyStr:
		return v.s == g.s
	case pyBool:
		return v.b == g.b
	case pyInt:
		return v.i.Cmp(g.i) == 0
	case pyFloat:
		return v.f == g.f || (math.IsNaN(v.f) && math.IsNaN(g.f))
	}
	return true
}

// goValue is what the YAML 1.2 decoder reads a plain scalar as.
func goValue(n ast.Node) pyValue {
	switch n := n.(type) {
	case *ast.NullNode:
		return pyValue{kind: pyNull}
	case *ast.BoolNode:
		return pyValue{kind: pyBool, b: n.Value}
	case *ast.IntegerNode:
		i := new(big.Int)
		switch x := n.Value.(type) {
		case int64:
			i.SetInt64(x)
		case uint64:
			i.SetUint64(x)
		default:
			return pyValue{kind: pyBad}
		}
		return pyValue{kind: pyInt, i: i}
	case *ast.FloatNode:
		return pyValue{kind: pyFloat, f: n.Value}
	case *ast.InfinityNode:
		return pyValue{kind: pyFloat, f: n.Value}
	case *ast.NanNode:
		return pyValue{kind: pyFloat, f: math.NaN()}
	case *ast.StringNode:
		return pyValue{kind: pyStr, s: n.Value}
	}
	return pyValue{kind: pyBad}
}

// The implicit resolvers of PyYAML's SafeLoader as OmegaConf's loader has them: timestamps dropped
// (read as strings) and a second float pattern appended that takes 1e5 and 1_000.5 (PyYAML alone
// reads 1e5 as a string). PyYAML tries them in this order and takes the first that matches.
var pyResolvers = []struct {
	kind pyKind
	re   *regexp.Regexp
}{
	{pyBool, regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`)},
	{pyFloat, regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)},
	{pyInt, regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)},
	{pyBad, regexp.MustCompile(`^(?:<<|=)$`)}, // the merge and value tags: no SafeLoader constructor for a value
	{pyNull, regexp.MustCompile(`^(?:~|null|Null|NULL|)$`)},
	{pyFloat, regexp.MustCompile(`^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)|\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?|[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)},
}

// pyResolve reads a plain scalar as PyYAML's SafeConstructor does under OmegaConf's resolvers.
// Where that differs from YAML 1.2 (the decoder here), for example:
//
//	0o4      the string "0o4" (the decoder: the integer 4)
//	0777     octal, 511 (the decoder agrees)
//	0b101    binary, 5 (the decoder agrees)
//	1_000    1000 (the decoder agrees)
//	1:20     sexagesimal, 80 (the decoder: a string)
//	yes, on  the boolean true; no, off false (the decoder: strings)
//	1e5      the float 100000.0 (the decoder: a string)
//	+.inf    infinity (the decoder: a string)
func pyResolve(s string) pyValue {
	if s != "" && strings.IndexByte("yYnNtTfFoO-+0123456789.~<=", s[0]) < 0 {
		return pyValue{kind: pyStr, s: s} // no resolver starts with it
	}
	for _, r := range pyResolvers {
		if !r.re.MatchString(s) {
			continue
		}
		switch r.kind {
		case pyBool:
			v := strings.ToLower(s)
			return pyValue{kind: pyBool, b: v == "yes" || v == "true" || v == "on"}
		case pyNull:
			return pyValue{kind: pyNull}
		case pyInt:
			return constructInt(s)
		case pyFloat:
			return constructFloat(s)
		}
		return pyValue{kind: pyBad, s: "no constructor for " + s}
	}
	return pyValue{kind: pyStr, s: s}
}

// constructInt is SafeConstructor.construct_yaml_int.
func constructInt(s string) pyValue {
	s = strings.ReplaceAll(s, "_", "")
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg, s = s[0] == '-', s[1:]
	}
	i := new(big.Int)
	ok := true
	switch {
	case s == "0":
	case strings.HasPrefix(s, "0b"):
		_, ok = i.SetString(s[2:], 2)
	case strings.HasPrefix(s, "0x"):
		_, ok = i.SetString(s[2:], 16)
	case s[0] == '0':
		_, ok = i.SetString(s, 8)
	case strings.Contains(s, ":"):
		for part := range strings.SplitSeq(s, ":") {
			d, ok := new(big.Int).SetString(part, 10)
			if !ok {
				return pyValue{kind: pyBad, s: "invalid literal for int() " + part}
			}
			i.Mul(i, big.NewInt(60))
			i.Add(i, d)
		}
	default:
		_, ok = i.SetString(s, 10)
	}
	if !ok {
		return pyValue{kind: pyBad, s: "invalid literal for int() " + s}
	}
	if neg {
		i.Neg(i)
	}
	return pyValue{kind: pyInt, i: i}
}

// constructFloat is SafeConstructor.construct_yaml_float (Python's float() rounds as ParseFloat does and
// overflows to infinity).
func constructFloat(s string) pyValue {
	s = strings.ToLower(strings.ReplaceAll(s, "_", ""))
	sign := 1.0
	if s[0] == '-' || s[0] == '+' {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	parse := func(p string) (float64, bool) {
		f, err := strconv.ParseFloat(p, 64)
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			err = nil
		}
		return f, err == nil
	}
	var f float64
	switch {
	case s == ".inf":
		f = math.Inf(1)
	case s == ".nan":
		return pyValue{kind: pyFloat, f: math.NaN()}
	case strings.Contains(s, ":"):
		// Summed from the last part up, as PyYAML does, so the rounding is the same.
		parts := strings.Split(s, ":")
		base := 1.0
		for k := len(parts) - 1; k >= 0; k-- {
			d, ok := parse(parts[k])
			if !ok {
				return pyValue{kind: pyBad, s: "could not convert string to float: " + parts[k]}
			}
			f += d * base
			base *= 60
		}
	default:
		var ok bool
		if f, ok = parse(s); !ok {
			return pyValue{kind: pyBad, s: "could not convert string to float: " + s}
		}
	}
	return pyValue{kind: pyFloat, f: sign * f}
}
