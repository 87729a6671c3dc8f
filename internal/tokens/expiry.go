package tokens

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minLifetime is the least a JWT exp claim must leave; an exp closer than that is taken for clock
// skew and ignored, since a token that expires at once would be renewed on every request.
const minLifetime = time.Second

// maxLifetime caps what expiresIn may claim; anything longer is treated as unreadable.
const maxLifetime = 10 * 365 * 24 * time.Hour

// jwtExpiry reads the exp claim of a JWT without verifying its signature: the gateway does not
// hold the upstream's key, and the token is only used, never trusted, here.
func jwtExpiry(raw string) (time.Time, bool) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		return time.Time{}, false
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return time.Time{}, false
	}
	return exp.Time, true
}

// expiresInUnit says how long one of the units is that the upstream (Node, the "ms" package)
// writes after a number.
func expiresInUnit(u string) (time.Duration, bool) {
	switch u {
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		return time.Millisecond, true
	case "s", "sec", "secs", "second", "seconds":
		return time.Second, true
	case "m", "min", "mins", "minute", "minutes":
		return time.Minute, true
	case "h", "hr", "hrs", "hour", "hours":
		return time.Hour, true
	case "d", "day", "days":
		return 24 * time.Hour, true
	case "w", "week", "weeks":
		return 7 * 24 * time.Hour, true
	case "y", "yr", "yrs", "year", "years":
		return 8766 * time.Hour, true
	}
	return 0, false
}

// parseExpiresIn reads the upstream's expiresIn: a bare number of seconds ("3600"), a number and
// a unit ("24h", "15m", "7d", "2 days"), or a Go duration ("1h30m"). It reports false for anything
// else, for zero or negative values and for more than ten years.
func parseExpiresIn(v string) (time.Duration, bool) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return bounded(n * float64(time.Second))
	}
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i > 0 {
		if unit, ok := expiresInUnit(strings.TrimSpace(v[i:])); ok {
			n, err := strconv.ParseFloat(v[:i], 64)
			if err == nil {
				return bounded(n * float64(unit))
			}
		}
	}
	if d, err := time.ParseDuration(v); err == nil {
		return bounded(float64(d))
	}
	return 0, false
}

func bounded(ns float64) (time.Duration, bool) {
	if math.IsNaN(ns) || ns <= 0 || ns > float64(maxLifetime) {
		return 0, false
	}
	return time.Duration(ns), true
}
