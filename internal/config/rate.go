package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a request budget of N requests per Per, written "N/duration" (see ParseRate); N == 0
// means unlimited. It is a plain value: the packages that enforce a rate (quota, auth) take their
// own type, which the wiring (internal/app) converts it to.
type Rate struct {
	N   int
	Per time.Duration
}

// String prints the rate the way ParseRate reads it ("30/1m", "5/15m", "0").
func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	return strconv.Itoa(r.N) + "/" + shortDuration(r.Per)
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseRate reads a rate as "N/duration": the duration in Go syntax ("1m", "15m", "1h30m",
// "90s"), a bare unit meaning one of it ("m", "h", "s"), or a number of days ("1d", "d"). "0" (or
// "0/anything") means unlimited.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return Rate{}, nil
	}
	count, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/duration, such as 30/1m, or 0 for unlimited", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 0 {
		return Rate{}, fmt.Errorf("rate %q: the count must be a whole number >= 0", s)
	}
	d, err := parsePeriod(strings.TrimSpace(per))
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	if n == 0 {
		return Rate{}, nil
	}
	return Rate{N: n, Per: d}, nil
}

var bareUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour,
}

func parsePeriod(s string) (time.Duration, error) {
	if d, ok := bareUnits[s]; ok {
		return d, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, errors.New("the period in days must be a whole number from 1 to 3650")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("the period must be a duration such as 1m, 15m or 1h")
	}
	if d <= 0 {
		return 0, errors.New("the period must be positive")
	}
	return d, nil
}
