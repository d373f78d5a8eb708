package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/btconvert/btconvert/errs"
	"github.com/btconvert/btconvert/internal/fsio"
)

// Plot draws tokens/s against batch size, one pair of lines per model and length (decode solid,
// prefill dashed) with min-max bars, on log-log axes, to a PNG (written under a temp name and
// renamed). device says what ran it (e.g. "CPU" or the GPU's name).
func Plot(path string, rows []Result, device string, force bool) error {
	if filepath.Ext(path) != ".png" {
		return errs.Option("Plot", path, "must end in .png")
	}
	p := plot.New()
	var lengths, backends []string
	for _, r := range rows {
		l := fmt.Sprintf("prompt %d, generate %d", r.PromptLen, r.GenLen)
		if !contains(lengths, l) {
			lengths = append(lengths, l)
		}
		if !contains(backends, r.Backend) {
			backends = append(backends, r.Backend)
		}
	}
	p.Title.Text = fmt.Sprintf("Throughput: %s; backend %s (%s)", join(lengths), join(backends), device)
	p.X.Label.Text = "batch size (log scale)"
	p.Y.Label.Text = "tokens/s (log scale)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	// Top left, over the headroom left above the data: the lines rise with batch size.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(8)
	var ticks []plot.Tick
	seen := map[int]bool{}
	for _, r := range rows {
		if !seen[r.Batch] {
			seen[r.Batch] = true
			ticks = append(ticks, plot.Tick{Value: float64(r.Batch), Label: strconv.Itoa(r.Batch)})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Add(plotter.NewGrid())
	type key struct {
		model       string
		prompt, gen int
	}
	var keys []key
	series := map[key][]Result{}
	for _, r := range rows {
		k := key{r.Model, r.PromptLen, r.GenLen}
		if _, ok := series[k]; !ok {
			keys = append(keys, k)
		}
		series[k] = append(series[k], r)
	}
	drawn := 0
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for i, k := range keys {
		for _, decode := range []bool{true, false} {
			var pts plotter.XYs
			var yerr plotter.YErrors
			for _, r := range series[k] {
				med, lo, hi := r.PrefillTokS, r.PrefillTokMin, r.PrefillTokMax
				if decode {
					med, lo, hi = r.DecodeTokS, r.DecodeTokSMin, r.DecodeTokSMax
				}
				if med <= 0 {
					continue
				}
				pts = append(pts, plotter.XY{X: float64(r.Batch), Y: med})
				yerr = append(yerr, struct{ Low, High float64 }{med - lo, hi - med})
				xlo, xhi = math.Min(xlo, float64(r.Batch)), math.Max(xhi, float64(r.Batch))
				ylo, yhi = math.Min(ylo, math.Max(lo, med/10)), math.Max(yhi, hi)
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			c := palette[i%len(palette)]
			line.Color, points.Color = c, c
			line.Width = vg.Points(2)
			points.Shape = plotutil.Shape(i)
			points.Radius = vg.Points(3.5)
			what := "decode"
			if !decode {
				what = "prefill"
				line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
				line.Width = vg.Points(1)
			}
			bars, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{pts, yerr})
			if err != nil {
				return err
			}
			bars.Color = c
			p.Add(line, points, bars)
			label := fmt.Sprintf("%s %s", k.model, what)
			if len(lengths) > 1 {
				label += fmt.Sprintf(" (pp%d tg%d)", k.prompt, k.gen)
			}
			p.Legend.Add(label, line, points)
			drawn++
		}
	}
	if drawn == 0 {
		return errs.Option("Plot", path, "no measurements to draw")
	}
	// Ranges set here, never left to the data: one batch size or equal values must not collapse
	// a log axis to a point (or below zero), and no point sits on the frame. The y range leaves
	// room above the data for the legend (one line of it per series).
	p.X.Min, p.X.Max = logPad(xlo, xhi, 1.6, 1.6)
	p.Y.Min, p.Y.Max = logPad(ylo, yhi, 1.5, math.Pow(1.45, float64(drawn+1)))
	p.BackgroundColor = color.White
	w, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	var png bytes.Buffer
	if _, err := w.WriteTo(&png); err != nil {
		return err
	}
	_, err = fsio.WriteOutput(path, signed(png.Bytes()), force, PlotFile)
	return err
}

// plotText is the PNG text chunk that marks a plot as btconvert's (Software, as PNG defines it).
var plotText = pngChunk("tEXt", []byte("Software\x00btconvert"))

// PlotFile is the kind of file Plot writes: a PNG that carries plotText right after its header,
// so that --force replaces btconvert's plots and never a user's picture.
var PlotFile = fsio.FileKind("btconvert plot", func(f *os.File) bool {
	head := make([]byte, pngHeader+len(plotText))
	n, _ := io.ReadFull(f, head)
	return n == len(head) && bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")) && bytes.Equal(head[pngHeader:], plotText)
})

// pngHeader is the length of a PNG's signature and IHDR chunk, which come first in every PNG.
const pngHeader = 8 + 12 + 13

// signed inserts plotText after the IHDR chunk of png.
func signed(png []byte) []byte {
	return slices.Concat(png[:pngHeader], plotText, png[pngHeader:])
}

// pngChunk is a PNG chunk: length, type, data and the CRC of type and data.
func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(append(b, typ...), data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
}

// palette is Okabe and Ito's colour-blind-safe set (blue, vermillion, bluish green, orange,
// reddish purple, sky blue, black); each model also gets its own marker shape.
var palette = []color.Color{
	color.RGBA{0x00, 0x72, 0xB2, 0xff}, color.RGBA{0xD5, 0x5E, 0x00, 0xff}, color.RGBA{0x00, 0x9E, 0x73, 0xff},
	color.RGBA{0xE6, 0x9F, 0x00, 0xff}, color.RGBA{0xCC, 0x79, 0xA7, 0xff}, color.RGBA{0x56, 0xB4, 0xE9, 0xff},
	color.RGBA{0x00, 0x00, 0x00, 0xff},
}

// logPad widens [lo, hi] by the factors below and above (on a log axis: equal distances).
func logPad(lo, hi, below, above float64) (float64, float64) {
	return lo / below, hi * above
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// ticks125 labels a log axis at 1, 2 and 5 times each power of ten (plot.LogTicks labels only
// the powers, often just one on a throughput axis), with unlabelled ticks between.
type ticks125 struct{}

func (ticks125) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	labelled := 0
	for _, every := range [][]float64{{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}} {
		out, labelled = out[:0], 0
		for p := math.Pow(10, math.Floor(math.Log10(min))); p <= max; p *= 10 {
			for m := 1.0; m < 10; m++ {
				v := p * m
				if v < min || v > max {
					continue
				}
				label := ""
				if slices.Contains(every, m) {
					label = strconv.FormatFloat(v, 'f', -1, 64)
					labelled++
				}
				out = append(out, plot.Tick{Value: v, Label: label})
			}
		}
		if labelled >= 2 { // a narrow range gets every multiple labelled
			break
		}
	}
	return out
}
