package tokens

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

func TestParseExpiresIn(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"24h":     24 * time.Hour,
		"15m":     15 * time.Minute,
		"7d":      7 * 24 * time.Hour,
		"3600":    time.Hour,
		" 2 days": 48 * time.Hour,
		"1h30m":   90 * time.Minute,
		"90s":     90 * time.Second,
		"1.5h":    90 * time.Minute,
	} {
		if got, ok := parseExpiresIn(in); !ok || got != want {
			t.Errorf("parseExpiresIn(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "soon", "-5m", "0", "0s", "7x", "1e30", "NaN", "99999y", "d"} {
		if got, ok := parseExpiresIn(in); ok {
			t.Errorf("parseExpiresIn(%q) = %s, want not ok", in, got)
		}
	}
}

func FuzzParseExpiresIn(f *testing.F) {
	for _, s := range []string{"24h", "15m", "7d", "3600", "2 days", "1h30m", "", "-1", "1e308d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, ok := parseExpiresIn(s); ok && (d <= 0 || d > maxLifetime) {
			t.Fatalf("parseExpiresIn(%q) = %s, outside (0, %s]", s, d, maxLifetime)
		}
	})
}

// Expiry comes from the JWT exp claim, else expiresIn, else the (logged) default lifetime.
func TestExpiryPrecedence(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	var logs syncBuffer
	clk := newFakeClock()
	s, err := New(rdb, newFakeAuth(time.Hour), WithClock(clk), WithLogger(testLogger(&logs)), WithDefaultLifetime(7*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	signed := func(claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	exp := now.Add(42 * time.Minute).Truncate(time.Second)
	for name, c := range map[string]struct {
		set  upstream.TokenSet
		want time.Time
		from string
	}{
		"jwt exp wins":          {upstream.TokenSet{AccessToken: signed(jwt.MapClaims{"exp": exp.Unix()}), ExpiresIn: "24h"}, exp, "jwt"},
		"expiresIn without exp": {upstream.TokenSet{AccessToken: signed(jwt.MapClaims{"sub": "x"}), ExpiresIn: "15m"}, now.Add(15 * time.Minute), "expiresIn"},
		"opaque token":          {upstream.TokenSet{AccessToken: "opaque", ExpiresIn: "3600"}, now.Add(time.Hour), "expiresIn"},
		"past exp ignored":      {upstream.TokenSet{AccessToken: signed(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), ExpiresIn: "15m"}, now.Add(15 * time.Minute), "expiresIn"},
		"nothing: default":      {upstream.TokenSet{AccessToken: "opaque"}, now.Add(7 * time.Minute), "default"},
	} {
		got, from := s.expiry(c.set, now)
		if !got.Equal(c.want) || from != c.from {
			t.Errorf("%s: expiry = %s from %s, want %s from %s", name, got, from, c.want, c.from)
		}
	}
	if !strings.Contains(logs.String(), "assuming the default lifetime") {
		t.Error("the default lifetime was assumed without a log line")
	}
}
