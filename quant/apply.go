package quant

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/x448/float16"

	"github.com/btconvert/btconvert/arch"
	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/formats"
	"github.com/btconvert/btconvert/formats/safetensors"
	"github.com/btconvert/btconvert/quant/scheme"
)

// Apply returns the quantized model the plan describes. Tensors are quantized lazily as the writer
// asks for them: each quantized tensor is computed once for its parts and dropped after its last
// part is read, and the next one is computed while the writer writes this one (the writer hashes
// and writes on one core; quantizing runs on all of them). cal (may be nil) carries the
// calibration statistics.
func Apply(m *formats.Model, p *Plan, cal *Calibration) *formats.Model {
	if cal == nil {
		// No calibration text: weight the search by what the weights' own LayerNorms say.
		cal = &Calibration{Importance: LayerNormImportance(m)}
	}
	cfg := *m.Config
	cfg.Quantization = map[string]scheme.Quantization{}
	s := p.Settings
	var out []*formats.Tensor
	ahead := &lookahead{}
	for i, t := range m.Tensors {
		e := p.Entries[i]
		if !e.To.Quantized() {
			out = append(out, converted(t, e.To.DType()))
			continue
		}
		scheme, err := scheme.Of(scheme.Type(e.To))
		if err != nil {
			panic(err) // MakePlan only plans schemes
		}
		q := p.record(scheme, e.To, t.Shape[0], t.Shape[1])
		cfg.Quantization[t.Key()] = q
		ts := s
		if e.To != s.Type { // an override: the search as asked (the model's llama.cpp type turned it off for its own blocks)
			ts.Search = p.asked.Search
		}
		job := &lazyQuant{src: t, spec: q, opts: ts.options(&q, cal.Importance[t.Key()]), hessian: cal.Hessian[t.Key()], calFile: cal.File}
		parts := arch.QuantParts(&q, t.Component, t.Name)
		job.remaining = len(parts)
		job.ahead, job.index = ahead, len(ahead.jobs)
		ahead.jobs = append(ahead.jobs, job)
		for k, part := range parts {
			out = append(out, formats.NewTensor(t.Component, part.Name, part.DType, part.Shape, t.SrcFile, t.SrcName, func() ([]byte, error) {
				return job.part(k)
			}))
		}
	}
	return m.Derive(m.Format, &cfg, out)
}

// converted is t stored as the float dtype to.
func converted(t *formats.Tensor, to safetensors.DType) *formats.Tensor {
	w := t.ToWrite(t.Name, t.Shape, to, nil)
	return formats.NewTensor(t.Component, t.Name, to, t.Shape, t.SrcFile, t.SrcName, w.Data)
}

// lazyQuant quantizes one tensor on first demand and serves its parts.
type lazyQuant struct {
	src     *formats.Tensor
	spec    scheme.Quantization
	opts    Options
	hessian []float64 // E[x x^T] for GPTQ, or nil
	calFile string    // where hessian came from
	ahead   *lookahead
	index   int // in ahead.jobs

	counted bool // its weight bytes count in ahead.pending (guarded by ahead.mu)

	mu        sync.Mutex
	done      chan struct{} // non-nil once started; closed when parts or err are set
	parts     [][]byte
	err       error
	remaining int
	served    bool // every part was handed to the writer once: no quantizing it ahead again
}

// start begins quantizing (once) in the background; mine reports that this call began it. A
// lookahead call (ahead) starts nothing for a tensor the writer has already taken (done is nil).
func (l *lazyQuant) start(ahead bool) (done chan struct{}, mine bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ahead && l.served {
		return nil, false
	}
	if l.done == nil {
		done := make(chan struct{})
		l.done, mine = done, true
		go func() {
			parts, err := l.compute()
			l.mu.Lock()
			l.parts, l.err = parts, err
			l.mu.Unlock()
			close(done)
		}()
	}
	return l.done, mine
}

// lookahead quantizes tensors ahead of the writer, so that the cores quantize while the writer
// reads, hashes and writes on one: one worker in the order the writer asks for them, a second the
// largest ones first (an output head near the end of the file would otherwise be computed alone
// after everything else). What waits in memory is bounded by aheadBytes of weights.
type lookahead struct {
	jobs    []*lazyQuant
	once    sync.Once
	mu      sync.Mutex
	served  sync.Cond
	pending int64 // weight bytes quantized ahead and not yet served
}

// aheadBytes bounds the weights quantized ahead of the writer (their results, a quarter of them
// or less, wait in memory).
const aheadBytes = 1 << 30

// bigBytes is the size from which a tensor is quantized by the largest-first worker.
const bigBytes = 16 << 20

func (a *lookahead) run() {
	a.served.L = &a.mu
	inOrder := slices.Clone(a.jobs)
	var big []*lazyQuant
	for _, j := range a.jobs {
		if j.src.NumElements()*4 >= bigBytes {
			big = append(big, j)
		}
	}
	slices.SortStableFunc(big, func(x, y *lazyQuant) int { return cmp.Compare(y.src.NumElements(), x.src.NumElements()) })
	for _, list := range [][]*lazyQuant{inOrder, big} {
		go func() {
			for _, j := range list {
				n := j.src.NumElements() * 4
				a.mu.Lock()
				for a.pending > 0 && a.pending+n > aheadBytes {
					a.served.Wait()
				}
				done, mine := j.start(true)
				if mine {
					a.pending += n
					j.counted = true
				}
				a.mu.Unlock()
				if mine {
					<-done // one tensor at a time per worker: each already uses every core
				}
			}
		}()
	}
}

// release says the writer has taken every part of j. The caller holds no lazyQuant lock: the
// workers take a.mu, then a job's (in start), never the other way round.
func (a *lookahead) release(j *lazyQuant) {
	a.mu.Lock()
	if j.counted {
		a.pending -= j.src.NumElements() * 4
		j.counted = false
	}
	a.served.Broadcast()
	a.mu.Unlock()
}

func (l *lazyQuant) part(k int) ([]byte, error) {
	l.ahead.once.Do(l.ahead.run)
	for {
		done, _ := l.start(false)
		<-done
		l.mu.Lock()
		if l.err != nil {
			defer l.mu.Unlock()
			return nil, l.err
		}
		if l.parts != nil {
			break
		}
		l.mu.Unlock() // another reader took the last part meanwhile, and the parts are gone
	}
	b := l.parts[k]
	last := false
	if l.remaining--; l.remaining == 0 {
		l.parts, l.done = nil, nil // all parts served: free the memory (a second pass recomputes)
		l.remaining = len(l.spec.Parts())
		l.served, last = true, true
	}
	l.mu.Unlock()
	if last {
		l.ahead.release(l)
	}
	return b, nil
}

// compute quantizes the tensor into its stored parts.
func (l *lazyQuant) compute() ([][]byte, error) {
	w, err := l.src.Float32View() // read only: the schemes copy what they change
	if err != nil {
		return nil, err
	}
	for i, x := range w {
		if x > maxWeight || x < -maxWeight { // past any scale a model may hold; its fits would overflow
			return nil, errs.Tensor(l.src.SrcFile, l.src.SrcName, "value %g at index %d is too large to quantize (at most %g in size: a scale of at most %g times the largest int8 code); keep this tensor in float with {TensorType}",
				x, i, float32(maxWeight), scheme.MaxScale)
		}
	}
	q, err := Encode(w, &l.spec, l.hessian, l.opts)
	if err != nil && l.hessian != nil && errors.Is(err, errIndefinite) {
		// Bad statistics are bad input: name the file they came from.
		return nil, errs.Tensor(l.calFile, "hessian/"+l.src.Key(), "%v (statistics that no activations give)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.src.Key(), err)
	}
	sc := l.spec.ScaleDType
	parts := [][]byte{q.Codes, encodeScales(q.Scales, sc)}
	if !l.spec.Symmetric {
		parts = append(parts, encodeScales(q.Mins, sc))
	}
	if err := l.checkScales(parts); err != nil {
		return nil, err
	}
	return parts, nil
}

// maxWeight is the largest weight magnitude int8 can store with a scale a model may hold.
const maxWeight = 127 * scheme.MaxScale

// checkScales refuses stored scales or minimums a model may not hold (scheme.BadScale: weights
// too large for the type, or for f16 scales), as loading the model would, naming the tensor.
func (l *lazyQuant) checkScales(parts [][]byte) error {
	bad := func(what string, i int, x float32) error {
		return errs.Tensor(l.src.SrcFile, l.src.SrcName, "quantized to %s, %s %d's scale or minimum would be %g: a quantization scale or minimum must be finite and at most %g in size (weights this large: keep this tensor in float with {TensorType})",
			l.spec.Type, what, i, x, scheme.MaxScale)
	}
	if g := l.spec.Scheme().GGML; g != nil {
		var err error
		g.Scales(parts[0], func(block int, x float32) bool {
			if scheme.BadScale(x) {
				err = bad("block", block, x)
			}
			return err == nil
		})
		return err
	}
	for _, p := range parts[1:] {
		v, _ := safetensors.ToFloat32(l.spec.ScaleDType, p)
		for i, x := range v {
			if scheme.BadScale(x) {
				return bad("row or group", i, x)
			}
		}
	}
	return nil
}

func encodeScales(v []float32, dt safetensors.DType) []byte {
	if dt == safetensors.F16 {
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
		}
		return out
	}
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// LayerNormImportance is the data-free stand-in for calibration: a Linear fed by a LayerNorm sees
// inputs y_j = g_j z_j + b_j with z_j of zero mean and unit variance, so column j's mean square is
// g_j^2 + b_j^2 (an RMS norm has no b: g_j^2). Which norm feeds which Linear is the architecture
// table's (arch.Tensors); Linears not fed by one get no weights (uniform).
func LayerNormImportance(m *formats.Model) map[string][]float32 {
	out := map[string][]float32{}
	for _, s := range arch.Tensors(m.Config) {
		if s.Role != arch.RoleLinear || s.FedBy == "" {
			continue
		}
		comp, ln, _ := strings.Cut(s.FedBy, "/")
		gt, bt := m.Tensor(comp, ln+".weight"), m.Tensor(comp, ln+".bias")
		if gt == nil || (bt == nil && arch.Find(m.Config, comp, ln+".bias") != nil) {
			continue
		}
		g, err1 := gt.Float32()
		b := make([]float32, len(g))
		var err2 error
		if bt != nil {
			b, err2 = bt.Float32()
		}
		if err1 != nil || err2 != nil || len(b) != len(g) {
			continue // unreadable here means unreadable on write too, where it is reported
		}
		v := make([]float32, len(g))
		for i := range g {
			v[i] = g[i]*g[i] + b[i]*b[i]
		}
		out[s.Key()] = v
	}
	return out
}
