package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// schedule sets the lineBar schedule for one test.
func schedule(t *testing.T, first, second, every time.Duration) {
	t.Helper()
	f, s, e := progressFirst, progressSecond, progressEvery
	t.Cleanup(func() { progressFirst, progressSecond, progressEvery = f, s, e })
	progressFirst, progressSecond, progressEvery = first, second, every
}

// lines is what a lineBar wrote to w so far (its timer writes under outMu).
func lines(w *bytes.Buffer) []string {
	outMu.Lock()
	defer outMu.Unlock()
	return strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
}

// fakeClock drives a lineBar's lines from the test: the timer never fires on its own.
func fakeClock(t *testing.T, w *bytes.Buffer, what string, total int64, unit string) (*lineBar, func(time.Duration)) {
	schedule(t, time.Hour, time.Hour, time.Hour)
	b := newLineBar(w, what, total, unit)
	now := b.start
	b.now = func() time.Time { return now }
	return b, func(d time.Duration) { now = now.Add(d) }
}

// A progress line at 100 % is not printed a second time when the work ends.
func TestProgressLineOnce(t *testing.T) {
	var w bytes.Buffer
	b, advance := fakeClock(t, &w, "init", 100, "B")
	advance(time.Second)
	b.Add(40, "")
	advance(time.Second)
	b.tick()
	b.Add(60, "")
	b.tick()
	b.Done()
	want := []string{"init: 40% (40 B of 100 B), 40 B/s, ETA 2s", "init: 100% (100 B of 100 B), 100 B/s"}
	if got := lines(&w); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Before any unit is done (a graph compiling) a line gives the time so far and the work under way;
// a phase (unit "") says how long it has run and, when it printed, how long it took.
func TestProgressLineBeforeWork(t *testing.T) {
	var w bytes.Buffer
	b, advance := fakeClock(t, &w, "perplexity", 35072, "tokens")
	b.Add(0, "compiling first")
	advance(time.Second)
	b.tick()
	b.Done()
	if got, want := lines(&w)[0], "perplexity: 0% (0 tokens of 35,072 tokens), 1s [compiling first]"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	w.Reset()
	p, advance := fakeClock(t, &w, "self-check", 1, "")
	p.Add(0, "compiling first")
	advance(1100 * time.Millisecond)
	p.tick()
	advance(13 * time.Second)
	p.Add(1, "")
	p.Done()
	want := "self-check: running, 1s [compiling first]\nself-check: done, 14s"
	if got := strings.Join(lines(&w), "\n"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Off a terminal the first line comes progressFirst after the work starts, though no unit is done
// yet, the second progressSecond later, then every progressEvery; work that ends sooner prints
// nothing, and nothing is printed after Done.
func TestProgressSchedule(t *testing.T) {
	schedule(t, 20*time.Millisecond, 40*time.Millisecond, time.Hour)
	var quick bytes.Buffer
	q := newLineBar(&quick, "import", 100, "B")
	q.Add(100, "")
	q.Done()
	time.Sleep(50 * time.Millisecond)
	if quick.Len() != 0 {
		t.Errorf("work done before the first line printed %q", quick.String())
	}

	var w bytes.Buffer
	start := time.Now()
	b := newLineBar(&w, "bench", 100, "tokens")
	for len(lines(&w)) < 2 && time.Since(start) < 10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("two lines in %v, before the schedule's 60 ms", took)
	}
	b.Add(100, "")
	b.Done()
	got := lines(&w)
	if zero := "bench: 0% (0 tokens of 100 tokens), "; len(got) != 3 || !strings.HasPrefix(got[0], zero) || !strings.HasPrefix(got[1], zero) || !strings.HasPrefix(got[2], "bench: 100%") {
		t.Fatalf("lines:\n%s", strings.Join(got, "\n"))
	}

	// Every interval after the second, and not once after Done.
	schedule(t, time.Millisecond, time.Millisecond, time.Millisecond)
	w.Reset()
	b = newLineBar(&w, "bench", 100, "tokens")
	for len(lines(&w)) < 5 {
		time.Sleep(time.Millisecond)
	}
	b.Done()
	n := len(lines(&w))
	time.Sleep(20 * time.Millisecond)
	if m := len(lines(&w)); m != n {
		t.Errorf("%d lines after Done", m-n)
	}
}

// A perplexity run off a terminal shows its first progress line while it works, long before it
// ends; --quiet prints none.
func TestProgressWhileScoring(t *testing.T) {
	schedule(t, 50*time.Millisecond, 2*time.Second, 10*time.Second)
	model := filepath.Join(fx, "bt-tiny")
	args := []string{"verify", model, "--eval-text", "/usr/share/common-licenses/GPL-3", "--chunks", "48", "--backend", "go"}
	code, _, stderr := btc(t, args...)
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	m := regexp.MustCompile(`(?m)^perplexity: (\d+)% \(`).FindAllStringSubmatch(stderr, -1)
	if len(m) < 2 {
		t.Fatalf("fewer than two progress lines:\n%s", stderr)
	}
	if first, _ := strconv.Atoi(m[0][1]); first == 100 {
		t.Errorf("the first progress line came at the end:\n%s", stderr)
	}
	if last := m[len(m)-1][1]; last != "100" {
		t.Errorf("the last progress line is at %s%%:\n%s", last, stderr)
	}
	if code, _, stderr := btc(t, append(args, "--quiet")...); code != 0 || stderr != "" {
		t.Errorf("--quiet: %d %q", code, stderr)
	}
}

// A bench shows its first line before its first row, naming the batch it warms up (and compiles).
func TestProgressBeforeFirstBenchRow(t *testing.T) {
	schedule(t, 20*time.Millisecond, 2*time.Second, 10*time.Second)
	code, _, stderr := btc(t, "verify", filepath.Join(fx, "bt-tiny"), "--bench", "--batch", "1,2", "-p", "8", "-n", "16", "--reps", "1", "--backend", "go")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	first := regexp.MustCompile(`(?m)^bench: .*$`).FindString(stderr)
	if !regexp.MustCompile(`^bench: \d+% \(\d+ tokens of 144 tokens\), .*\[batch (1|2), (warm-up|rep 1/1)\]$`).MatchString(first) {
		t.Errorf("first bench line %q:\n%s", first, stderr)
	}
}
