package arch

// Scoring says which logits of a scoring pass predict which tokens of a sequence of T tokens:
// the pass gives Rows rows per sequence, and row k predicts token First+k.
//
// A block model predicts every token of blocks 1..n-1 (block 0 is the first context, never
// predicted): Rows = T - L, First = L. A vanilla model's position t predicts token t+1: the pass
// gives T rows, of which the first T-1 are scored (Rows = T-1, First = 1) and the last predicts
// past the sequence.
type Scoring struct {
	Rows, First int
	// Stride is the number of rows per sequence in the pass's output (Rows, plus the unscored last
	// row of a vanilla model).
	Stride int
}

// Scoring returns the rule for sequences of T tokens.
func (c *Config) Scoring(T int) Scoring {
	if c.IsBlock() {
		return Scoring{Rows: T - c.BlockLength, First: c.BlockLength, Stride: T - c.BlockLength}
	}
	return Scoring{Rows: T - 1, First: 1, Stride: T}
}

// Row is the output row (within a sequence) that predicts token t (t >= First).
func (s Scoring) Row(t int) int { return t - s.First }
