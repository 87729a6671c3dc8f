package clip_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/inboxhub-gateway/gateway/internal/clip"
)

// TestBytesNeverSplitsACharacter cuts text of 1-, 2-, 3- and 4-byte characters at every byte
// limit: the result is valid UTF-8, a prefix of the input of at most n bytes followed by the mark,
// and loses less than one character's worth of bytes.
func TestBytesNeverSplitsACharacter(t *testing.T) {
	for _, s := range []string{"ñandú año", "€uro €uro", "日本語のテキスト", "👍🏽 ok 🇪🇸", "abc"} {
		for n := 0; n <= len(s)+1; n++ {
			got := clip.Bytes(s, n, clip.Ellipsis)
			if n >= len(s) {
				if got != s {
					t.Errorf("Bytes(%q, %d) = %q, want it unchanged", s, n, got)
				}
				continue
			}
			head, ok := strings.CutSuffix(got, clip.Ellipsis)
			switch {
			case !ok:
				t.Errorf("Bytes(%q, %d) = %q, want the mark at the end", s, n, got)
			case !utf8.ValidString(got):
				t.Errorf("Bytes(%q, %d) = %q: a character is cut in two", s, n, got)
			case !strings.HasPrefix(s, head) || len(head) > n || n-len(head) >= utf8.UTFMax:
				t.Errorf("Bytes(%q, %d) = %q, want the longest whole-character prefix of at most %d bytes", s, n, got, n)
			}
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		mark string
		want string
	}{
		{"short", 5, "...", "short"},
		{"longer", 4, "...", "long..."},
		{"longer", 4, "", "long"},
		{"añb", 2, "", "a"},     // ñ is 2 bytes: it does not fit in 2
		{"añb", 3, "", "añ"},    // it does in 3
		{"x", -1, "...", "..."}, // a negative limit keeps nothing
		{"", 0, "...", ""},
	} {
		if got := clip.Bytes(tc.s, tc.n, tc.mark); got != tc.want {
			t.Errorf("Bytes(%q, %d, %q) = %q, want %q", tc.s, tc.n, tc.mark, got, tc.want)
		}
	}
}

func TestRunes(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"añb", 3, "añb"},
		{"añbc", 2, "añ..."},
		{"日本語", 1, "日..."},
		{"a\xffb", 3, "a?b"},             // invalid UTF-8 is replaced, never echoed
		{"a\xff\xfeb\xffc", 3, "a?b..."}, // a run of invalid bytes is one "?"
		{"abc", 0, "..."},
	} {
		if got := clip.Runes(tc.s, tc.n, clip.Ellipsis); got != tc.want {
			t.Errorf("Runes(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
		if got := clip.Runes(tc.s, tc.n, clip.Ellipsis); !utf8.ValidString(got) {
			t.Errorf("Runes(%q, %d) = %q is not valid UTF-8", tc.s, tc.n, got)
		}
	}
}
