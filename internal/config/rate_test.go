package config

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	good := map[string]Rate{
		"30/1m":      {N: 30, Per: time.Minute},
		"5/15m":      {N: 5, Per: 15 * time.Minute},
		" 10/1m ":    {N: 10, Per: time.Minute},
		"10/m":       {N: 10, Per: time.Minute},
		"100/h":      {N: 100, Per: time.Hour},
		"1000/1h30m": {N: 1000, Per: 90 * time.Minute},
		"7/90s":      {N: 7, Per: 90 * time.Second},
		"3/2d":       {N: 3, Per: 48 * time.Hour},
		"3/day":      {N: 3, Per: 24 * time.Hour},
		"0":          {},
		"0/1m":       {},
	}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "abc", "-1/1m", "1.5/1m", "5/0s", "5/-1m", "5/xyz", "5/1m/2", "5/", "/1m", "5/0d", "x/1m"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", in, r)
		}
	}
	for _, r := range []Rate{{N: 30, Per: time.Minute}, {N: 5, Per: 15 * time.Minute}, {N: 2, Per: time.Hour}, {N: 7, Per: 90 * time.Second}, {}} {
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", r.String(), back, err, r)
		}
	}
}
