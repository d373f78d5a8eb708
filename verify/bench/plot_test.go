package bench

import (
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// A plot of one batch, one model, or rows whose figures are all equal draws (a log axis over one
// value used to collapse and panic), and the drawing uses the palette.
func TestPlotDegenerateRows(t *testing.T) {
	row := func(model string, batch int, tok float64) Result {
		return Result{Model: model, Backend: "go", Batch: batch, PromptLen: 8, GenLen: 8, Reps: 1,
			PrefillTokS: tok, PrefillTokMin: tok, PrefillTokMax: tok, DecodeTokS: tok, DecodeTokSMin: tok, DecodeTokSMax: tok}
	}
	for name, rows := range map[string][]Result{
		"one batch, one model": {row("b4_5", 1, 47.4)},
		"equal values":         {row("b4_5", 1, 10), row("b4_5", 4, 10), row("v31", 1, 10), row("v31", 4, 10)},
		"two models":           {row("b4_5", 1, 40), row("b4_5", 16, 400), row("v31", 1, 30), row("v31", 16, 150)},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bench.png")
			if err := Plot(path, rows, "CPU", false); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			b := img.Bounds()
			if b.Dx() < 500 || b.Dy() < 300 {
				t.Fatalf("image %v", b)
			}
			seen := map[int]bool{}
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					for i, c := range palette[:2] {
						cr, cg, cb, _ := c.RGBA()
						if r == cr && g == cg && bl == cb {
							seen[i] = true
						}
					}
				}
			}
			models := map[string]bool{}
			for _, r := range rows {
				models[r.Model] = true
			}
			if len(seen) != len(models) {
				t.Fatalf("colours of %d series drawn, want %d", len(seen), len(models))
			}
		})
	}
}

// The y axis ends just past the largest value drawn (and starts just below the smallest), the
// legend's box lies beside the data area, inside the figure, clear of every point drawn, and the
// title names the threads.
func TestPlotLayout(t *testing.T) {
	row := func(model string, batch, prompt int, tok, spread float64) Result {
		return Result{Model: model, Backend: "go", Threads: 2, Batch: batch, PromptLen: prompt, GenLen: 64, Reps: 2,
			PrefillTokS: 3 * tok, PrefillTokMin: 3 * tok / spread, PrefillTokMax: 3 * tok * spread,
			DecodeTokS: tok, DecodeTokSMin: tok / spread, DecodeTokSMax: tok * spread}
	}
	many := []Result{}
	for _, m := range []string{"b4_5", "v31", "a-much-longer-model-name-q4"} {
		for _, p := range []int{128, 512} {
			for _, b := range []int{1, 4, 16, 64} {
				many = append(many, row(m, b, p, float64(10*b*len(m)), 1.1))
			}
		}
	}
	for name, rows := range map[string][]Result{
		"one batch":      {row("b4_5", 1, 128, 47.4, 1.05)},
		"rising":         {row("b4_5", 1, 128, 40, 1.2), row("b4_5", 16, 128, 400, 1.01), row("v31", 1, 128, 30, 1.5), row("v31", 16, 128, 150, 1)},
		"high at left":   {row("b4_5", 1, 128, 900, 1.2), row("b4_5", 16, 128, 100, 1.01), row("v31", 1, 128, 800, 1), row("v31", 16, 128, 10, 1)},
		"many series":    many,
		"flat and equal": {row("b4_5", 1, 128, 10, 1), row("b4_5", 4, 128, 10, 1)},
	} {
		t.Run(name, func(t *testing.T) {
			ch, err := newChart(rows, "CPU")
			if err != nil || ch == nil {
				t.Fatal(ch, err)
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, v := range ch.values {
				lo, hi = math.Min(lo, v.Y), math.Max(hi, v.Y)
			}
			if y := ch.p.Y; y.Max <= hi || y.Max > hi*1.2 || y.Min >= lo || y.Min < lo/1.2 {
				t.Errorf("y axis %g - %g for values %g - %g", y.Min, y.Max, lo, hi)
			}
			c := draw.New(vgimg.New(plotW, plotH))
			plotArea, box := ch.layout(c)
			data := ch.p.DataCanvas(plotArea)
			if box.Min.X < data.Max.X || box.Min.X < c.Min.X || box.Max.X > c.Max.X || box.Min.Y < c.Min.Y || box.Max.Y > c.Max.Y {
				t.Errorf("legend %v: data area %v, figure %v", box, data.Rectangle, c.Rectangle)
			}
			x, y := ch.p.Transforms(&data)
			r := vg.Points(3.5) // a marker's radius
			for _, v := range ch.values {
				px, py := x(v.X), y(v.Y)
				if px+r > box.Min.X && px-r < box.Max.X && py+r > box.Min.Y && py-r < box.Max.Y {
					t.Errorf("legend %v covers the point %v at (%v, %v)", box, v, px, py)
				}
			}
			if title := ch.titleText(c); !strings.Contains(title, "2 threads") || ch.p.Title.TextStyle.Width(title) > c.Size().X {
				t.Errorf("title %q", title)
			}
		})
	}
	one := row("m", 1, 8, 10, 1)
	one.Threads = 1
	ch, _ := newChart([]Result{one}, "CPU")
	if got := fmt.Sprint(ch.title); !strings.Contains(got, "(CPU, 1 thread)") {
		t.Errorf("title %s", got)
	}
}

func TestStats(t *testing.T) {
	med, mean, std, lo, hi := stats([]float64{55.3, 39.6})
	if med != (55.3+39.6)/2 || mean != med || lo != 39.6 || hi != 55.3 || std == 0 {
		t.Fatalf("two samples: median %v mean %v sd %v min %v max %v", med, mean, std, lo, hi)
	}
	if med, _, _, _, _ := stats([]float64{3, 1, 2}); med != 2 {
		t.Fatalf("three samples: median %v", med)
	}
	r := Result{DecodeTokSMean: 100, DecodeTokSStd: 12, PrefillTokMean: 50, PrefillTokStd: 1}
	if cv := r.CV(); cv != 0.12 || cv <= Noisy {
		t.Fatalf("cv %v", cv)
	}
}
