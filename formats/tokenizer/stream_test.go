package tokenizer

import (
	"strings"
	"testing"
)

// feed pushes ids k at a time through a stream and returns what it handed out, chunk by chunk,
// and the keep of the update that stopped (-1 if none).
func feed(t *testing.T, s *Stream, ids []int32, k int) (chunks []string, keep int) {
	t.Helper()
	keep = -1
	for n := k; ; n += k {
		n = min(n, len(ids))
		fresh, kp := s.Update(ids[:n])
		if fresh != "" {
			chunks = append(chunks, fresh)
		}
		if kp >= 0 {
			return chunks, kp
		}
		if n == len(ids) {
			break
		}
	}
	if rest := s.Flush(); rest != "" {
		chunks = append(chunks, rest)
	}
	return chunks, keep
}

func bytesOf(s string) []int32 {
	ids, _ := ByteTokenizer{}.Encode(s)
	return ids
}

func TestStreamHandsOutWholeCharacters(t *testing.T) {
	// "é" is two bytes, "€" three: one id each byte, so a character arrives over several updates.
	ids := bytesOf("café €5")
	s := NewStream(hfLike{}, nil)
	chunks, keep := feed(t, s, ids, 1)
	if keep != -1 || strings.Join(chunks, "") != "café €5" || s.Text() != "café €5" {
		t.Fatalf("chunks %q keep %d text %q", chunks, keep, s.Text())
	}
	for _, c := range chunks {
		if strings.ContainsRune(c, '\uFFFD') {
			t.Fatalf("a chunk held a broken character: %q", chunks)
		}
	}
}

func TestStreamStops(t *testing.T) {
	for _, c := range []struct {
		name, text string
		stops      []string
		k          int
		want       string
		keep       int
	}{
		{"stop inside one update", "Hello.\nUser: hi", []string{"\nUser:"}, 4, "Hello.", 12},
		{"stop split over updates", "Hello.\nUser: hi", []string{"\nUser:"}, 1, "Hello.", 12},
		{"earliest of two", "a END b STOP", []string{"STOP", "END"}, 3, "a ", 5},
		{"prefix held, then released", "x\nUs and more", []string{"\nUser:"}, 1, "x\nUs and more", -1},
		{"stop at the very start", "END of it", []string{"END"}, 2, "", 3},
		{"no stops", "plain", nil, 2, "plain", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewStream(ByteTokenizer{}, c.stops)
			chunks, keep := feed(t, s, bytesOf(c.text), c.k)
			// What was handed out is exactly the text before the stop: no part of a stop string
			// was ever shown.
			if got := strings.Join(chunks, ""); got != c.want || s.Text() != c.want || keep != c.keep {
				t.Fatalf("handed out %q, text %q, keep %d; want %q, keep %d", got, s.Text(), keep, c.want, c.keep)
			}
		})
	}
}

// hfLike decodes byte ids as a byte-level BPE tokenizer does: to UTF-8, an incomplete character
// shown as U+FFFD.
type hfLike struct{ ByteTokenizer }

func (hfLike) Decode(ids []int32) string {
	return strings.ToValidUTF8(ByteTokenizer{}.Decode(ids), "\uFFFD")
}

// A stop string arriving with the end of a character the previous update showed as U+FFFD (three
// bytes, where "é" is two) is still found: the search starts from the settled text, which never
// decodes differently.
func TestStreamStopAfterCompletedCharacter(t *testing.T) {
	s := NewStream(hfLike{}, []string{"."})
	ids := bytesOf("abcé.xy")
	var shown string
	for _, n := range []int{4, 6, 7} { // "abc" + the first byte of "é"; its second byte and "."; "x"
		fresh, _ := s.Update(ids[:n])
		shown += fresh
	}
	shown += s.Flush()
	if !s.Stopped() || shown != "abcé" || s.Text() != "abcé" {
		t.Fatalf("handed out %q, text %q, stopped %v; want %q and a stop", shown, s.Text(), s.Stopped(), "abcé")
	}
}
