package verify

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotBench draws decode tokens/s against batch size, one line per model, log-log, to a PNG
// (written to a temp file and renamed).
func PlotBench(path string, rows []BenchResult) error {
	p := plot.New()
	p.Title.Text = "Generation throughput"
	p.X.Label.Text = "batch size"
	p.Y.Label.Text = "decode tokens/s"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	p.Legend.Top, p.Legend.Left = false, false // bottom right: lines rise with batch size
	var ticks []plot.Tick
	seen := map[int]bool{}
	for _, r := range rows {
		if !seen[r.Batch] {
			seen[r.Batch] = true
			ticks = append(ticks, plot.Tick{Value: float64(r.Batch), Label: fmt.Sprint(r.Batch)})
		}
	}
	p.Add(plotter.NewGrid())
	var names []string
	by := map[string]plotter.XYs{}
	for _, r := range rows {
		if r.DecodeTokS <= 0 {
			continue
		}
		if _, ok := by[r.Model]; !ok {
			names = append(names, r.Model)
		}
		by[r.Model] = append(by[r.Model], plotter.XY{X: float64(r.Batch), Y: r.DecodeTokS})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if len(names) == 0 {
		return fmt.Errorf("--plot: no decode measurements to draw")
	}
	for i, n := range names {
		line, points, err := plotter.NewLinePoints(by[n])
		if err != nil {
			return err
		}
		c := plotutil.Color(i)
		line.Color, points.Color = c, c
		line.Width = vg.Points(2)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(fmt.Sprintf("%s (%s)", n, rows[0].Backend), line, points)
	}
	p.BackgroundColor = color.White
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp.png")
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ticks125 labels a log axis at 1, 2 and 5 times each power of ten (plot.LogTicks labels only
// the powers, often just one on a throughput axis).
type ticks125 struct{}

func (ticks125) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(min))); p <= max; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := p * m; v >= min && v <= max {
				out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
			}
		}
	}
	return out
}
