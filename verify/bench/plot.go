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
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

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
	ch, err := newChart(rows, device)
	if err != nil {
		return err
	}
	if ch == nil {
		return errs.Option("Plot", path, "no measurements to draw")
	}
	c, err := draw.NewFormattedCanvas(plotW, plotH, "png")
	if err != nil {
		return err
	}
	ch.draw(draw.New(c))
	var png bytes.Buffer
	if _, err := c.WriteTo(&png); err != nil {
		return err
	}
	_, err = fsio.WriteOutput(path, signed(png.Bytes()), force, PlotFile)
	return err
}

// The figure's size.
const (
	plotW = 8 * vg.Inch
	plotH = 5 * vg.Inch
)

// chart is a bench plot before it is drawn: the axes and lines, the legend drawn beside them (a
// legend inside the data area covers points wherever the lines go), and the values drawn.
type chart struct {
	p      *plot.Plot // drawn without its title
	legend plot.Legend
	title  [2]string    // what and how it ran: one line when it fits the figure, else two
	values []plotter.XY // every median, min and max drawn
}

// newChart lays out rows (nil when they hold no measurement to draw).
func newChart(rows []Result, device string) (*chart, error) {
	p := plot.New()
	var lengths, backends []string
	var threads []int
	for _, r := range rows {
		l := fmt.Sprintf("prompt %d, generate %d", r.PromptLen, r.GenLen)
		if !contains(lengths, l) {
			lengths = append(lengths, l)
		}
		if !contains(backends, r.Backend) {
			backends = append(backends, r.Backend)
		}
		if r.Threads > 0 && !slices.Contains(threads, r.Threads) {
			threads = append(threads, r.Threads)
		}
	}
	ran := device
	if len(threads) > 0 { // throughput on a CPU scales with them: a figure without is not comparable
		var ts []string
		for _, t := range threads {
			ts = append(ts, strconv.Itoa(t))
		}
		ran += ", " + strings.Join(ts, " and ") + " threads"
		if threads[0] == 1 && len(threads) == 1 {
			ran = strings.TrimSuffix(ran, "s")
		}
	}
	ch := &chart{p: p, legend: plot.NewLegend(), title: [2]string{"Throughput: " + join(lengths), fmt.Sprintf("backend %s (%s)", join(backends), ran)}}
	p.X.Label.Text = "batch size (log scale)"
	p.Y.Label.Text = "tokens/s (log scale)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
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
	ch.legend.Top, ch.legend.Left = true, true
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
				lo = math.Max(lo, med/10) // a bar down to (near) zero would stretch the log axis for nothing
				pts = append(pts, plotter.XY{X: float64(r.Batch), Y: med})
				yerr = append(yerr, struct{ Low, High float64 }{med - lo, hi - med})
				x := float64(r.Batch)
				ch.values = append(ch.values, plotter.XY{X: x, Y: med}, plotter.XY{X: x, Y: lo}, plotter.XY{X: x, Y: math.Max(hi, med)})
				xlo, xhi = math.Min(xlo, x), math.Max(xhi, x)
				ylo, yhi = math.Min(ylo, lo), math.Max(yhi, math.Max(hi, med))
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			c := palette[i%len(palette)]
			line.Color, points.Color = c, c
			line.Width = vg.Points(2)
			points.Shape = hollow[i%len(hollow)]
			points.Radius = vg.Points(3.5)
			what := "decode"
			if !decode {
				what = "prefill"
				line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
				line.Width = vg.Points(1)
				points.Shape = filled[i%len(filled)] // one batch draws no line: the marker tells them apart
			}
			bars, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{pts, yerr})
			if err != nil {
				return nil, err
			}
			bars.Color = c
			p.Add(line, points, bars)
			label := fmt.Sprintf("%s %s", k.model, what)
			if len(lengths) > 1 {
				label += fmt.Sprintf(" (pp%d tg%d)", k.prompt, k.gen)
			}
			ch.legend.Add(label, line, points)
		}
	}
	if len(ch.values) == 0 {
		return nil, nil
	}
	// Ranges set here, never left to the data: one batch size or equal values must not collapse
	// a log axis to a point (or below zero), and no point sits on the frame. The y axis ends just
	// past the data: the legend is beside it, not above it.
	p.X.Min, p.X.Max = logPad(xlo, xhi, 1.6, 1.6)
	p.Y.Min, p.Y.Max = logPad(ylo, yhi, yPad, yPad)
	p.BackgroundColor = color.White
	return ch, nil
}

// yPad is the factor the y axis runs past the data on each side (on a log axis, equal distances).
const yPad = 1.15

// Space between the axes and the legend, and right of the legend.
var (
	legendGap    = vg.Points(10)
	legendMargin = vg.Points(8)
)

// titleText is the title as drawn on c: centred over the whole figure, legend included.
func (ch *chart) titleText(c draw.Canvas) string {
	t := ch.title[0] + "; " + ch.title[1]
	if ch.p.Title.TextStyle.Width(t) > c.Size().X-2*legendMargin {
		t = ch.title[0] + "\n" + ch.title[1]
	}
	return t
}

// layout splits c, below the title, between the plot (axes, data) and the legend's box, which
// sits right of the data area, its top level with the data area's.
func (ch *chart) layout(c draw.Canvas) (plotArea draw.Canvas, legendBox vg.Rectangle) {
	c.Max.Y -= ch.p.Title.TextStyle.Height(ch.titleText(c)) + ch.p.Title.Padding
	size := ch.legend.Rectangle(c).Size()
	plotArea = draw.Crop(c, 0, -(size.X + legendGap + legendMargin), 0, 0)
	data := ch.p.DataCanvas(plotArea)
	legendBox.Min = vg.Point{X: plotArea.Max.X + legendGap, Y: data.Max.Y - size.Y}
	legendBox.Max = vg.Point{X: legendBox.Min.X + size.X, Y: data.Max.Y}
	return plotArea, legendBox
}

func (ch *chart) draw(c draw.Canvas) {
	c.SetColor(ch.p.BackgroundColor)
	c.Fill(c.Rectangle.Path()) // the legend's strip too
	sty := ch.p.Title.TextStyle
	c.FillText(sty, vg.Point{X: c.Center().X, Y: c.Max.Y + sty.FontExtents().Descent}, ch.titleText(c))
	plotArea, box := ch.layout(c)
	ch.p.Draw(plotArea)
	ch.legend.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: box})
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

// A model's markers: hollow for decode, the same shape filled for prefill.
var (
	hollow = []draw.GlyphDrawer{draw.RingGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}}
	filled = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}}
)

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
		if labelled >= 3 { // a narrow range gets every multiple labelled
			break
		}
	}
	return out
}
