package main

import (
	"path/filepath"
	"testing"
)

// --official-generate gives the official generate's tokens (other positions with prefix decoding,
// r = 2 on bt-tiny: another continuation), and is refused for a T5 token decoder, which the
// official generate cannot run.
func TestOfficialGenerateFlag(t *testing.T) {
	bt := filepath.Join(fx, "bt-tiny")
	args := []string{"generate", bt, "-p", "The GNU General", "-n", "16", "--backend", "go", "-q"}
	forward := mustBtc(t, args...)
	official := mustBtc(t, append(args, "--official-generate")...)
	if forward == official {
		t.Fatalf("the same continuation both ways: %q", forward)
	}
	code, _, stderr := btc(t, "generate", filepath.Join(fx, "bt-cls-cross-attn-tiny"), "-p", "x", "--official-generate", "--backend", "go")
	want := "btconvert: --official-generate: the official code cannot generate with a T5 cross-attention token decoder (its generate fails: the decoder's encoder is None); btconvert generates it as the forward computes"
	if last, ok := lastLineIs(stderr, want); code != 2 || !ok {
		t.Fatalf("T5: %d %q", code, last)
	}
}
