// Package clip owns the shortening of text that goes into a log line, a stored error or an
// answer: never longer than asked, never a UTF-8 character cut in two, and, when asked, a mark
// that shows the reader the text is not whole.
package clip

import (
	"strings"
	"unicode/utf8"
)

// Ellipsis is the mark most callers append to text they shortened.
const Ellipsis = "..."

// Bytes returns s when it has at most n bytes; otherwise its longest prefix of at most n bytes
// that does not end inside a multi-byte character, followed by mark ("" for none).
func Bytes(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

// Runes returns s when it has at most n characters; otherwise its first n characters followed by
// mark. Invalid UTF-8 in s is first replaced by "?", so that what is returned is always valid.
func Runes(s string, n int, mark string) string {
	s = strings.ToValidUTF8(s, "?")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + mark
}
