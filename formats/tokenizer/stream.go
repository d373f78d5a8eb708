package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// Stream turns one row's generated ids into text while they arrive, and finds the stop strings in
// it. Text is handed out only once it is settled: not the end of an incomplete UTF-8 character (a
// character's bytes may come from several tokens), and not what could be the start of a stop
// string. The ids are decoded a settled run at a time, so a long generation is not decoded over
// and over.
type Stream struct {
	tk      Tokenizer
	stops   []string
	settled string // the text of ids[:mark]
	mark    int
	text    string // the whole text so far (cut at a stop string once one is found)
	shown   int    // bytes of text handed out
	seen    int    // ids looked at by the last Update
	stopped bool
}

// NewStream starts a stream; stops may be empty.
func NewStream(tk Tokenizer, stops []string) *Stream {
	var s []string
	for _, x := range stops {
		if x != "" {
			s = append(s, x)
		}
	}
	return &Stream{tk: tk, stops: s}
}

// Update takes the row's ids so far (the previous ones again, and new ones after them). It returns
// the text newly settled and, when a stop string has now appeared, how many ids to keep: the
// fewest whose text holds it (else keep is -1). The stop string and what follows it are not part
// of the text.
func (s *Stream) Update(ids []int32) (fresh string, keep int) {
	if s.stopped || len(ids) <= s.seen {
		return "", -1
	}
	// The settled text (a prefix of every later decoding) held no stop string; the rest of the old
	// text may decode differently now (a character completed), so it is searched again.
	from := max(0, len(s.settled)-s.longestStop()+1)
	s.text = s.decoded(ids, len(ids))
	if at := s.findStopIn(s.text, from); at >= 0 {
		// The stop string ends in one of the new ids: keep up to the first that completes it.
		keep = len(ids)
		for k := s.seen + 1; k < len(ids); k++ {
			if s.findStopIn(s.decoded(ids, k), from) >= 0 {
				keep = k
				break
			}
		}
		s.text, s.stopped = s.text[:at], true
		return s.take(len(s.text)), keep
	}
	s.seen = len(ids)
	if tail := s.text[len(s.settled):]; complete(tail) {
		s.settled, s.mark = s.text, len(ids)
	}
	// Hand out the settled text, less any end of it that may begin a stop string.
	return s.take(len(s.settled) - s.heldForStops(s.settled)), -1
}

// Flush ends the stream: the text not handed out yet.
func (s *Stream) Flush() string { return s.take(len(s.text)) }

// Text is the whole text so far, cut before the stop string if one was found.
func (s *Stream) Text() string { return s.text }

// Stopped reports whether a stop string was found.
func (s *Stream) Stopped() bool { return s.stopped }

// decoded is the text of ids[:k] (k past the settled mark). The new ids are decoded after a few
// settled ones and their text taken off again: a decoder that treats the first token of what it
// decodes apart (sentencepiece's, which strips that token's leading space) then sees them as the
// continuation they are. The context is the shortest run of settled ids before the mark that
// decodes cleanly on its own to the end of the settled text (a lone byte token of a character
// does not, and would split the character's bytes from the rest).
func (s *Stream) decoded(ids []int32, k int) string {
	for j := s.mark - 1; j >= max(0, s.mark-maxContext); j-- {
		ctx := s.tk.Decode(ids[j:s.mark])
		if ctx == "" || strings.ContainsRune(ctx, utf8.RuneError) || !strings.HasSuffix(s.settled, ctx) {
			continue
		}
		if full := s.tk.Decode(ids[j:k]); strings.HasPrefix(full, ctx) {
			return s.settled + full[len(ctx):]
		}
		break
	}
	return s.settled + s.tk.Decode(ids[s.mark:k])
}

// maxContext bounds the settled ids decoded again before new ones (a character is at most 4 byte
// tokens).
const maxContext = 8

// take hands out text up to byte end (never backwards).
func (s *Stream) take(end int) string {
	if end <= s.shown {
		return ""
	}
	out := s.text[s.shown:end]
	s.shown = end
	return out
}

// findStopIn returns where the first stop string starts in text at or after byte from.
func (s *Stream) findStopIn(text string, from int) int {
	at := -1
	if from > len(text) {
		return -1
	}
	for _, stop := range s.stops {
		if i := strings.Index(text[from:], stop); i >= 0 && (at < 0 || from+i < at) {
			at = from + i
		}
	}
	return at
}

func (s *Stream) longestStop() int {
	n := 0
	for _, x := range s.stops {
		n = max(n, len(x))
	}
	return n
}

// heldForStops is the length of the longest end of text that is the start of a stop string.
func (s *Stream) heldForStops(text string) int {
	held := 0
	for _, stop := range s.stops {
		for n := min(len(stop)-1, len(text)); n > held; n-- {
			if strings.HasSuffix(text, stop[:n]) {
				held = n
				break
			}
		}
	}
	return held
}

// complete reports whether text does not end inside a character: its last rune is whole (a
// tokenizer that decodes bytes to UTF-8 shows a partial character as U+FFFD; a U+FFFD meant as
// one waits for the next id, or Flush).
func complete(text string) bool {
	if text == "" {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(text)
	return r != utf8.RuneError
}
