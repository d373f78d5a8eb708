package quant

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/internal/testfix"
	"github.com/btconvert/btconvert/quant/scheme"
)

func randWeights(rows, cols int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

func sqErr(a, b []float32) float64 {
	var e float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		e += d * d
	}
	return e
}

func TestInt8Exact(t *testing.T) {
	// Row max 1.27 -> scale 0.01; 0.005 is a tie and rounds away from zero to 1, -0.015 to -2.
	w := []float32{1.27, 0.005, -0.015, 0, -1.27, 0.635}
	q := QuantizeInt8(w, 1, 6, Options{})
	if math.Abs(float64(q.Scales[0])-0.01) > 1e-9 {
		t.Fatalf("scale %v", q.Scales[0])
	}
	want := []int8{127, 1, -2, 0, -127, 64}
	for i := range want {
		if q.Codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", q.Codes, want)
		}
	}
}

func TestInt4PackingAndPadding(t *testing.T) {
	// 3 columns with group 2 -> padded to 4; values chosen so the asymmetric codes are exact.
	w := []float32{0, 15, 3, 1, 2, 14}
	q := QuantizeInt4(w, 2, 3, Options{GroupSize: 2})
	if q.PaddedCols != 4 || len(q.Packed) != 4 || len(q.Scales) != 4 {
		t.Fatalf("layout: %+v", q)
	}
	// Row 0, group 0 is [0, 15]: scale 1, min 0 -> codes 0 and 15 in one byte, low nibble first.
	if q.Packed[0] != 0xF0 {
		t.Fatalf("first byte %#x, want 0xf0 (0 low, 15 high)", q.Packed[0])
	}
	got := q.Dequantize(2, 3, 2, false)
	if e := sqErr(got, w); e > 1e-10 {
		t.Fatalf("dequantized %v from %v", got, w)
	}
	// Symmetric round-to-nearest: scale = amax / 7, so -8 -> q -7 (code 1) and 7 -> q 6.125 -> 6
	// (code 14); codes are q + 8.
	sym := QuantizeInt4([]float32{-8, 7, 1, -1}, 1, 4, Options{GroupSize: 4, Symmetric: true})
	if sym.Packed[0] != 0xE1 {
		t.Fatalf("symmetric packing %#x, want 0xe1", sym.Packed[0])
	}
}

func TestSearchBeatsRoundToNearest(t *testing.T) {
	w := randWeights(64, 256, 7)
	for _, sym := range []bool{false, true} {
		o := Options{GroupSize: 64, Symmetric: sym}
		rtn := QuantizeInt4(w, 64, 256, o).Dequantize(64, 256, 64, sym)
		o.Search = true
		srch := QuantizeInt4(w, 64, 256, o).Dequantize(64, 256, 64, sym)
		if a, b := sqErr(srch, w), sqErr(rtn, w); a >= b {
			t.Errorf("sym=%v: search error %.4g not below round-to-nearest %.4g", sym, a, b)
		}
	}
	rtn8 := QuantizeInt8(w, 64, 256, Options{}).Dequantize(64, 256)
	srch8 := QuantizeInt8(w, 64, 256, Options{Search: true}).Dequantize(64, 256)
	if sqErr(srch8, w) > sqErr(rtn8, w) {
		t.Errorf("int8 search worse than round-to-nearest")
	}
}

// GPTQ lowers the output error on correlated inputs, the error it is built to minimise.
func TestGPTQLowersOutputError(t *testing.T) {
	rows, cols := 32, 128
	w := randWeights(rows, cols, 3)
	x, h := correlated(2048, cols) // strongly correlated columns
	outErr := func(dq []float32) float64 { return outputError(w, dq, x, rows, cols) }
	o := Options{GroupSize: 64, Search: true}
	plain := QuantizeInt4(w, rows, cols, o).Dequantize(rows, cols, 64, false)
	g, err := GPTQInt4(w, rows, cols, h, o)
	if err != nil {
		t.Fatal(err)
	}
	gptq := g.Dequantize(rows, cols, 64, false)
	if a, b := outErr(gptq), outErr(plain); a >= 0.8*b {
		t.Fatalf("GPTQ output error %.4g vs %.4g without", a, b)
	}
}

func TestPlanPolicyAndOverrides(t *testing.T) {
	m := testfix.Open(t, testfix.Path("pythia-tiny"))
	ov, err := ParseOverride(`embed_in\.weight$=int8`)
	if err != nil {
		t.Fatal(err)
	}
	late, _ := ParseOverride(`layers\.3\..*=f32`)
	p, err := MakePlan(m, Settings{Type: Int4, GroupSize: 64, Overrides: []Override{ov, late}})
	if err != nil {
		t.Fatal(err)
	}
	to := map[string]string{}
	for _, e := range p.Entries {
		to[e.Component+"/"+e.Name] = string(e.To)
	}
	for k, want := range map[string]string{
		"decoder/embed_in.weight":                           "int8",
		"decoder/embed_out.weight":                          "int4",
		"decoder/layers.0.mlp.dense_4h_to_h.weight":         "int4",
		"decoder/layers.0.mlp.dense_4h_to_h.bias":           "f16",
		"decoder/layers.0.input_layernorm.weight":           "f16",
		"decoder/layers.3.attention.query_key_value.weight": "f32",
	} {
		if to[k] != want {
			t.Errorf("%s -> %s, want %s", k, to[k], want)
		}
	}
	if _, err := MakePlan(m, Settings{Type: Int4, GroupSize: 50}); err == nil || testfix.ErrText(err) != "--group-size 50: want 32, 64 or 128 for int4 (0: 64)" {
		t.Errorf("group size: %v", err)
	}
}

// Settings take the schemes and the names llama.cpp users know, with each scheme's defaults, and
// refuse what a scheme does not have.
func TestSettingsResolve(t *testing.T) {
	for _, c := range []struct {
		in   Settings
		want Settings
		err  string
	}{
		{in: Settings{Type: "q4_0", Search: true}, want: Settings{Type: "q4_0", GroupSize: 32, Symmetric: true}}, // llama.cpp's rounding: no search
		{in: Settings{Type: "Q4_1"}, want: Settings{Type: "q4_1", GroupSize: 32}},
		{in: Settings{Type: "q8_0"}, want: Settings{Type: "q8_0", GroupSize: 32, Symmetric: true}},
		{in: Settings{Type: "Q4_K", Search: true}, want: Settings{Type: "q4_k", GroupSize: 256}},
		{in: Settings{Type: "q6_k"}, want: Settings{Type: "q6_k", GroupSize: 256, Symmetric: true}},
		{in: Settings{Type: "q6_k", GroupSize: 32}, err: "--group-size 32: q6_k is llama.cpp's blocks of 256 weights"},
		{in: Settings{Type: Int4}, want: Settings{Type: Int4, GroupSize: 64}},
		{in: Settings{Type: Int8}, want: Settings{Type: Int8, Symmetric: true}},
		{in: Settings{Type: Int8, GroupSize: 64}, err: "--group-size 64: int8 has one scale per output row, no groups (give 0)"},
		{in: Settings{Type: "q4_1", GroupSize: 64}, err: "--group-size 64: q4_1 is llama.cpp's blocks of 32 weights"},
		{in: Settings{Type: "q4_1", Symmetric: true}, err: "--symmetric true: q4_1 is asymmetric (a scale and a minimum per block)"},
		{in: Settings{Type: "int3"}, err: `--type "int3": want int8, int4, q8_0, q4_0, q4_1, q4_k or q6_k`},
		{in: Settings{Type: F16}, err: `--type "f16": want int8, int4, q8_0, q4_0, q4_1, q4_k or q6_k`},
	} {
		got, err := c.in.Resolve()
		if c.err != "" {
			if err == nil || testfix.ErrText(err) != c.err {
				t.Errorf("%+v: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.Type != c.want.Type || got.GroupSize != c.want.GroupSize || got.Symmetric != c.want.Symmetric || got.Search != c.want.Search {
			t.Errorf("%+v resolved to %+v (%v), want %+v", c.in, got, err, c.want)
		}
	}
	if bits, err := TypeForBits(4); bits != Int4 || err != nil {
		t.Errorf("4 bits: %s %v", bits, err)
	}
	if _, err := TypeForBits(3); err == nil || testfix.ErrText(err) != "--bits 3: want 8 or 4" {
		t.Errorf("3 bits: %v", err)
	}
}

// Every scheme has its algorithms, and a weight survives a round trip through its codes.
func TestEverySchemeHasACodec(t *testing.T) {
	for _, sc := range scheme.All() {
		w := []float32{0.5, -1, 0.25, 2, -0.75, 1.5, 0, -2}
		q := sc.Record(2, 4, sc.DefaultGroupSize, true, safetensors.F32)
		switch {
		case sc.GGML != nil: // whole blocks only
			w = randWeights(2, 2*sc.GGML.Values, 1)
			q = sc.Record(2, 2*sc.GGML.Values, 0, true, safetensors.F32)
		case sc.Grouped:
			q = sc.Record(2, 4, 2, true, safetensors.F32) // groups of 2: this tiny weight fills them
		}
		st, err := Encode(w, &q, nil, Options{})
		if err != nil {
			t.Fatalf("%s: %v", sc.Type, err)
		}
		back, err := Decode(&q, st)
		if err != nil {
			t.Fatal(err)
		}
		if e := testfix.RelL2(back, w); e > 0.1 {
			t.Errorf("%s: round trip rel L2 %.3g", sc.Type, e)
		}
	}
}

// correlated returns n samples of cols strongly correlated columns and their E[x x^T].
// outputError is the squared error, over the first 256 inputs x, of the outputs of the weight dq
// against those of w ([rows, cols] each).
func outputError(w, dq []float32, x []float64, rows, cols int) float64 {
	var e float64
	for i := 0; i < 256; i++ {
		for o := 0; o < rows; o++ {
			var d float64
			for j := 0; j < cols; j++ {
				d += (float64(dq[o*cols+j]) - float64(w[o*cols+j])) * x[i*cols+j]
			}
			e += d * d
		}
	}
	return e
}

func correlated(n, cols int) ([]float64, []float64) {
	r := rand.New(rand.NewPCG(5, 5))
	x := make([]float64, n*cols)
	for i := 0; i < n; i++ {
		base := r.NormFloat64()
		for j := 0; j < cols; j++ {
			x[i*cols+j] = base + 0.3*r.NormFloat64()
		}
	}
	h := make([]float64, cols*cols)
	for i := 0; i < n; i++ {
		for a := 0; a < cols; a++ {
			for b := 0; b < cols; b++ {
				h[a*cols+b] += x[i*cols+a] * x[i*cols+b] / float64(n)
			}
		}
	}
	return x, h
}

// GPTQ with int8 codes lowers the output error too, and stays within the int8 levels.
func TestGPTQInt8(t *testing.T) {
	rows, cols := 16, 64
	w := randWeights(rows, cols, 9)
	x, h := correlated(1024, cols)
	outErr := func(dq []float32) float64 { return outputError(w, dq, x, rows, cols) }
	o := Options{Search: true}
	plain := QuantizeInt8(w, rows, cols, o)
	g, err := GPTQInt8(w, rows, cols, h, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Codes {
		if c < -127 {
			t.Fatalf("code %d outside -127..127", c)
		}
	}
	if a, b := outErr(g.Dequantize(rows, cols)), outErr(plain.Dequantize(rows, cols)); a >= b {
		t.Fatalf("GPTQ int8 output error %.4g not below %.4g", a, b)
	}
}

// With f16 scales the codes are fitted to the rounded scale: every stored scale is exactly an f16
// and dequantizing with it reproduces the fit.
func TestF16Scales(t *testing.T) {
	w := randWeights(8, 128, 4)
	for _, sym := range []bool{false, true} {
		q := QuantizeInt4(w, 8, 128, Options{GroupSize: 32, Symmetric: sym, Search: true, F16Scales: true})
		for _, s := range append(append([]float32(nil), q.Scales...), q.Mins...) {
			if float16.Fromfloat32(s).Float32() != s {
				t.Fatalf("scale %v is not an f16 value", s)
			}
		}
		f32 := QuantizeInt4(w, 8, 128, Options{GroupSize: 32, Symmetric: sym, Search: true})
		a, b := sqErr(q.Dequantize(8, 128, 32, sym), w), sqErr(f32.Dequantize(8, 128, 32, sym), w)
		if a > 1.05*b {
			t.Errorf("sym=%v: f16 scales error %.4g vs %.4g with f32", sym, a, b)
		}
	}
	q8 := QuantizeInt8(w, 8, 128, Options{Search: true, F16Scales: true})
	for _, s := range q8.Scales {
		if float16.Fromfloat32(s).Float32() != s {
			t.Fatalf("int8 scale %v is not an f16 value", s)
		}
	}
}

// Which LayerNorm feeds which Linear comes from the architecture table: the expansion layer reads
// the block decoder's final LayerNorm, the head the token decoder's.
func TestLayerNormImportance(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-tiny"))
	imp := LayerNormImportance(m)
	g, _ := m.Tensor(arch.BlockDecoder, arch.FinalNorm+".weight").Float32()
	b, _ := m.Tensor(arch.BlockDecoder, arch.FinalNorm+".bias").Float32()
	got := imp[arch.TokenDecoder+"/"+arch.Expand+".weight"]
	if len(got) != len(g) {
		t.Fatalf("expansion layer importance %d values, want %d", len(got), len(g))
	}
	for i := range g {
		if got[i] != g[i]*g[i]+b[i]*b[i] {
			t.Fatalf("expansion layer importance[%d] = %v, want g^2+b^2 = %v", i, got[i], g[i]*g[i]+b[i]*b[i])
		}
	}
	want := map[string]bool{}
	for _, s := range arch.Tensors(m.Config) {
		if s.Role == arch.RoleLinear && s.FedBy != "" {
			want[s.Key()] = true
		}
	}
	if len(imp) != len(want) || len(want) != 2*2*2+2 {
		t.Fatalf("%d weights with importance, want %d (qkv and h_to_4h of 4 layers, expansion, head)", len(imp), len(want))
	}
}

// The ablations' Linears are quantized as the main models' are: a RoBERTa embedder's layers and a
// T5 token decoder's (self and cross attention, feed-forward), the expansion layer; the embedder's
// projection and every table (a T5 decoder's is also its head, the relative position bias) stay.
func TestPlanPolicyAblation(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-cls-cross-attn-tiny"))
	p, err := MakePlan(m, Settings{Type: Int8})
	if err != nil {
		t.Fatal(err)
	}
	to := map[string]string{}
	quantized := 0
	for _, e := range p.Entries {
		to[e.Component+"/"+e.Name] = string(e.To)
		if e.To.Quantized() {
			quantized++
		}
	}
	for k, want := range map[string]string{
		"embedder/embeddings.weight":                          "int8", // the token table (TableType)
		"embedder/position_embeddings.weight":                 "f32",
		"embedder/layers.1.attention.query.weight":            "int8",
		"embedder/layers.0.mlp.dense_4h_to_h.weight":          "int8",
		"embedder/layers.0.mlp.dense_4h_to_h.bias":            "f32",
		"embedder/projection_layer.weight":                    "f32",
		"token_decoder/expansion_layer.weight":                "int8",
		"token_decoder/embed_in.weight":                       "f32", // T5's table is its head too
		"token_decoder/relative_attention_bias.weight":        "f32",
		"token_decoder/layers.1.cross_attention.value.weight": "int8",
		"token_decoder/layers.0.mlp.dense_h_to_4h.weight":     "int8",
		"token_decoder/layers.0.input_layernorm.weight":       "f32",
	} {
		if to[k] != want {
			t.Errorf("%s -> %s, want %s", k, to[k], want)
		}
	}
	// RoBERTa's token table and 2 x 6, block decoder 2 x 4, the expansion, T5 2 x 10.
	if quantized != 1+2*6+2*4+1+2*10 {
		t.Errorf("%d tensors quantized", quantized)
	}
}

// An RMS norm feeding a Linear (a T5 decoder's) gives its inputs a mean square of g^2 per column.
func TestRMSNormImportance(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-cls-cross-attn-tiny"))
	imp := LayerNormImportance(m)
	g, _ := m.Tensor(arch.TokenDecoder, "layers.1.cross_attention_layernorm.weight").Float32()
	got := imp[arch.TokenDecoder+"/layers.1.cross_attention.query.weight"]
	if len(got) != len(g) {
		t.Fatalf("importance %d values, want %d", len(got), len(g))
	}
	for i := range g {
		if got[i] != g[i]*g[i] {
			t.Fatalf("importance[%d] = %v, want g^2 = %v", i, got[i], g[i]*g[i])
		}
	}
	if _, ok := imp[arch.TokenDecoder+"/layers.1.cross_attention.key.weight"]; ok {
		t.Error("the cross-attention keys (of the expanded vectors, no norm) have an importance")
	}
	// RoBERTa: q, k, v and up per layer and the projection; block decoder: qkv and up per layer;
	// the expansion; T5: q, k, v, cross q and wi per layer.
	if len(imp) != 2*4+1+2*2+1+2*5 {
		t.Errorf("%d Linears with an importance", len(imp))
	}
}

// The lazily quantized model serves the same bytes on every pass over it, in any order and with
// two readers at once, while the lookahead workers race the readers for the same tensors (a tensor
// served is freed, and a later pass quantizes it again).
func TestApplyServesEveryPass(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-tiny"))
	p, err := MakePlan(m, Settings{Type: Int4, GroupSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	read := func(ts []*formats.Tensor) (map[string]string, error) {
		out := map[string]string{}
		for _, x := range ts {
			b, err := x.Raw()
			if err != nil {
				return nil, err
			}
			out[x.Key()] = string(b)
		}
		return out, nil
	}
	var want map[string]string
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 20 {
		q := Apply(m, p, nil)
		shuffled := slices.Clone(q.Tensors)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		// A pass in file order, then two at once: one in file order, one shuffled.
		first, err := read(q.Tensors)
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			want = first
		}
		got := make([]map[string]string, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, ts := range [][]*formats.Tensor{q.Tensors, shuffled} {
			wg.Go(func() { got[i], errs[i] = read(ts) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatal(errs)
		}
		if !maps.Equal(first, want) || !maps.Equal(got[0], want) || !maps.Equal(got[1], want) {
			t.Fatalf("run %d: the bytes served differ from the first run's", run)
		}
	}
}

// A lookahead worker holds the lookahead's lock while it starts a tensor; the reader reports a
// tensor served (which takes that lock) without holding the tensor's, or the two wait on each
// other for ever. The worker then skips the served tensor instead of quantizing it again.
func TestLookaheadLockOrder(t *testing.T) {
	scheme, err := scheme.Of(scheme.Int8)
	if err != nil {
		t.Fatal(err)
	}
	spec := scheme.Record(4, 32, 0, true, safetensors.F32)
	src := formats.NewTensor("decoder", "w", safetensors.F32, []int{4, 32}, "f", "w", func() ([]byte, error) { return make([]byte, 4*4*32), nil })
	a := &lookahead{}
	j := &lazyQuant{src: src, spec: spec, ahead: a, remaining: len(spec.Parts())}
	a.jobs = []*lazyQuant{j}
	a.once.Do(a.run)
	a.mu.Lock() // as a worker does around start
	read := make(chan error)
	go func() {
		for k := range j.remaining {
			if _, err := j.part(k); err != nil {
				read <- err
				return
			}
		}
		read <- nil
	}()
	for tries := 0; ; tries++ {
		if j.mu.TryLock() {
			served := j.served
			j.mu.Unlock()
			if served {
				break
			}
		}
		if tries == 5000 {
			t.Fatal("the reader holds the tensor's lock while it waits for the lookahead's")
		}
		time.Sleep(time.Millisecond)
	}
	if done, mine := j.start(true); done != nil || mine {
		t.Fatal("a served tensor is quantized ahead again")
	}
	a.mu.Unlock()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// An int4 override under --type int8 is quantized as int4 is asked for (asymmetric unless the
// settings say symmetric), not with int8's always-symmetric rule.
func TestOverrideKeepsItsSymmetry(t *testing.T) {
	m := testfix.Open(t, testfix.Path("pythia-tiny"))
	ov, err := ParseOverride(`embed_out\.weight$=int4`)
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range []bool{false, true} {
		p, err := MakePlan(m, Settings{Type: Int8, Symmetric: sym, Overrides: []Override{ov}})
		if err != nil {
			t.Fatal(err)
		}
		q := Apply(m, p, nil).Config.Quantization
		head, layer := q["decoder/embed_out.weight"], q["decoder/layers.0.mlp.dense_4h_to_h.weight"]
		if head.Type != scheme.Int4 || head.Symmetric != sym || head.GroupSize != 64 || layer.Type != scheme.Int8 || !layer.Symmetric {
			t.Fatalf("symmetric %v: head %+v, layer %+v", sym, head, layer)
		}
	}
}

// Under a llama.cpp type, an int4 override takes int4's own defaults (groups of 64, the search),
// not the model type's blocks of 256; the type of an override is read in any case; the tensors
// whose rows are not whole super-blocks are counted as fallbacks.
func TestOverrideUnderLlamaCppType(t *testing.T) {
	m := testfix.Open(t, testfix.Path("bt-tiny"))
	ov, err := ParseOverride(`attention\.dense\.weight$=INT4`)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(m, Settings{Type: "q4_k", Search: true, Overrides: []Override{ov}})
	if err != nil {
		t.Fatal(err)
	}
	if n, of := p.Fallbacks(); n != 10 || of != 14 {
		t.Errorf("fallbacks %d of %d, want 10 of 14 (4 MLP down projections are whole blocks, 4 attention outputs are int4)", n, of)
	}
	key := "block_decoder/layers.0.attention.dense.weight"
	qm := Apply(m, p, nil)
	rec := qm.Config.Quantization[key]
	if rec.Type != scheme.Int4 || rec.GroupSize != 64 || rec.Symmetric {
		t.Fatalf("override record %+v, want int4 g64 asymmetric", rec)
	}
	var got []byte
	for _, tt := range qm.Tensors {
		if tt.Key() == key+scheme.ScalesSuffix {
			got, _ = tt.Raw()
		}
	}
	w, _ := m.Tensors[slices.IndexFunc(m.Tensors, func(tt *formats.Tensor) bool { return tt.Key() == key })].Float32View()
	for _, search := range []bool{false, true} {
		st, err := Encode(w, &rec, nil, Options{Search: search, GroupSize: 64, Importance: LayerNormImportance(m)[key]})
		if err != nil {
			t.Fatal(err)
		}
		if same := slices.Equal(encodeScales(st.Scales, rec.ScaleDType), got); same != search {
			t.Errorf("the override's scales equal the %v search's: %v", search, same)
		}
	}
}
