package graph_test

import (
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	_ "github.com/btconvert/btconvert/families/roberta" // the ablation fixture's embedder
	_ "github.com/btconvert/btconvert/families/t5"      // the ablation fixtures' token decoder
	. "github.com/btconvert/btconvert/graph"            //nolint:revive
	"github.com/btconvert/btconvert/internal/testfix"
)

// A row of a batch whose prompts differ in length generates what it generates alone: the same
// tokens, logits within float32 rounding (the pad positions are masked; positions shift, which
// rotary attention does not see except through rounding). On both backends, for the main
// architectures and an ablation one (RoBERTa CLS embedder, T5 token decoder: a block partly
// padded is embedded unmasked, as alone).
func TestMixedLengthBatch(t *testing.T) {
	testfix.EachBackend(t, testMixedLengths)
}

func testMixedLengths(t *testing.T, b compute.Backend) {
	prompts := [][]int32{
		testfix.ByteIDs("The GNU General Public License is a free, copyleft license"), // 59 tokens
		testfix.ByteIDs("Hello"),                         // 5: several whole pad blocks, then a partial one
		testfix.ByteIDs("This program is free software"), // 29
	}
	for _, name := range []string{"bt-tiny", "pythia-tiny", "bt-cls-cross-attn-tiny"} {
		m := LoadFixtureOn(t, b, testfix.Open(t, testfix.Path(name)), dtypes.Float32)
		o := GenerateOptions{MaxNewTokens: 12, KeepLogits: true}
		batch, err := m.Generate(prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		V := m.Config.VocabSize
		for i, p := range prompts {
			alone, err := m.Generate([][]int32{p}, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(batch.Tokens[i], alone.Tokens[0]) {
				t.Errorf("%s row %d: in the batch %v, alone %v", name, i, batch.Tokens[i], alone.Tokens[0])
			}
			row := batch.Logits[i*12*V : (i+1)*12*V]
			if e := testfix.RelL2(row, alone.Logits); e > 1e-5 {
				t.Errorf("%s row %d: logits rel L2 %.3g between the batch and alone", name, i, e)
			}
			if got := len(batch.Prompt[i]) - batch.Pad[i]; got != len(p) || !slices.Equal(batch.Prompt[i][batch.Pad[i]:], p) {
				t.Errorf("%s row %d: padded prompt %v (pad %d)", name, i, batch.Prompt[i], batch.Pad[i])
			}
		}
		if name != "pythia-tiny" && (len(batch.Prompt[0]) != 60 || batch.Pad[1] != 55 || batch.Prompt[1][0] != int32(m.Config.PadTokenID)) {
			t.Errorf("%s: padded to %d, row 1 pad %d with %d; want 60 and 55 with %d", name, len(batch.Prompt[0]), batch.Pad[1], batch.Prompt[1][0], m.Config.PadTokenID)
		}
	}
}

// A row ends at the EOS id (not kept) or where Stop says; generation stops early once every row
// has ended.
func TestGenerationStops(t *testing.T) {
	for _, name := range []string{"bt-tiny", "pythia-tiny", "bt-cls-cross-attn-tiny"} {
		m := LoadFixture(t, name, dtypes.Float32)
		prompts := [][]int32{testfix.ByteIDs("The GNU General Public License"), testfix.ByteIDs("This program is free")}
		full, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: 24})
		if err != nil {
			t.Fatal(err)
		}
		// Make row 0's 6th token the end of sequence (after it first appears in that row).
		eos := full.Tokens[0][5]
		cut := slices.Index(full.Tokens[0], eos)
		own := m.Config.EOSTokenID
		m.Config.EOSTokenID = int(eos)
		g, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: 24, StopAtEOS: true,
			Stop: func(row int, toks []int32) int {
				if row == 1 && len(toks) >= 3 {
					return 3
				}
				return -1
			}})
		m.Config.EOSTokenID = own
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g.Tokens[0], full.Tokens[0][:cut]) || g.Finish[0] != FinishEOS {
			t.Errorf("%s row 0: %v (%s), want %v then EOS %d", name, g.Tokens[0], g.Finish[0], full.Tokens[0][:cut], eos)
		}
		row1 := full.Tokens[1][:3]
		if i := slices.Index(row1, eos); i >= 0 {
			row1 = row1[:i]
		}
		if !slices.Equal(g.Tokens[1], row1) {
			t.Errorf("%s row 1: %v (%s), want %v", name, g.Tokens[1], g.Finish[1], row1)
		}
		if g.Steps >= full.Steps {
			t.Errorf("%s: %d steps after every row had stopped; the full run took %d", name, g.Steps, full.Steps)
		}
	}
}
