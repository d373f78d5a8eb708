package bench

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
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
