package handlers

import (
	"strings"
	"testing"
	"time"
)

// TestNoneMatch: If-None-Match by the weak comparison of RFC 9110: "*", the tag alone, in a list,
// with W/, across several header lines; nothing else matches, hostile or malformed fields included.
func TestNoneMatch(t *testing.T) {
	const tag = `"abc123"`
	for _, tc := range []struct {
		fields []string
		match  bool
	}{
		{[]string{tag}, true},
		{[]string{"*"}, true},
		{[]string{" * "}, true},
		{[]string{`W/"abc123"`}, true},
		{[]string{`"x", "abc123"`}, true},
		{[]string{`"x",W/"abc123",`}, true},
		{[]string{`"x"`, `"abc123"`}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"abc123"}, false},
		{[]string{`"abc123`}, false},
		{[]string{`""abc123""`}, false},
		{[]string{`w/"abc123"`}, false},
		{[]string{`W/ "abc123"`, `"ABC123"`}, false},
		{[]string{`"abc123"x`}, false},
		{[]string{`**`, `"*"`}, false},
		{[]string{strings.Repeat(`"x",`, 10000)}, false},
		{[]string{"\x00\"abc123\""}, false},
	} {
		if got := noneMatchFails(tc.fields, tag); got != tc.match {
			t.Errorf("If-None-Match %q: match %v, want %v", tc.fields, got, tc.match)
		}
	}
}

func TestFreshSeconds(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		until time.Time
		want  int64
	}{
		{now.Add(5 * time.Second), 5},
		{now.Add(4999 * time.Millisecond), 4},
		{now, 0},
		{now.Add(-time.Minute), 0},
		{time.Time{}, 0},
	} {
		if got := freshSeconds(tc.until, now); got != tc.want {
			t.Errorf("freshSeconds(%v) = %d, want %d", tc.until.Sub(now), got, tc.want)
		}
	}
}
