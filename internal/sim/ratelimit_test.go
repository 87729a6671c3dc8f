package sim

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// headerInt reads an integer header, failing the test when it is missing or malformed.
func headerInt(t *testing.T, r response, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(r.Header.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q: %v", name, r.Header.Get(name), err)
	}
	return v
}

func TestLoginRateLimitDefault(t *testing.T) {
	clock := newTestClock()
	o := testOptions()
	o.Clock, o.RateAuth = clock.Now, Rate{} // the upstream default, 5 per 15 minutes
	s, c := startSim(t, o)
	login := func() response {
		return c.do(http.MethodPost, "/api/auth/login", map[string]string{"identifier": testIdentifier, "password": testPassword})
	}
	for i := 1; i <= 5; i++ {
		r := login()
		r.must(t, http.StatusOK, nil)
		if got := headerInt(t, r, "RateLimit-Remaining"); got != int64(5-i) {
			t.Errorf("login %d: RateLimit-Remaining %d, want %d", i, got, 5-i)
		}
	}
	r := login()
	r.mustError(t, http.StatusTooManyRequests, codeRateLimit)
	now := clock.Now().Unix()
	checks := []struct {
		header   string
		min, max int64
	}{
		{"RateLimit-Limit", 5, 5},
		{"RateLimit-Remaining", 0, 0},
		{"RateLimit-Reset", 1, 900},
		{"X-RateLimit-Limit", 5, 5},
		{"X-RateLimit-Remaining", 0, 0},
		{"X-RateLimit-Reset", now + 1, now + 900},
		{"Retry-After", 1, 900},
	}
	for _, ch := range checks {
		if v := headerInt(t, r, ch.header); v < ch.min || v > ch.max {
			t.Errorf("%s = %d, want %d..%d", ch.header, v, ch.min, ch.max)
		}
	}
	got := s.Counters()
	if got.RateLimited != 1 || got.Logins != 5 || got.Status[http.StatusTooManyRequests] != 1 {
		t.Errorf("counters: %d limited, %d logins, status %v", got.RateLimited, got.Logins, got.Status)
	}

	clock.Advance(15 * time.Minute)
	login().must(t, http.StatusOK, nil)
}

func TestRateLimitsByCategory(t *testing.T) {
	send := map[string]any{"to": "34600111222@s.whatsapp.net", "message": "hola"}
	tests := []struct {
		name    string
		set     func(o *Options)
		allowed int
		request func(c *client) response
		code    string
	}{
		{"reads", func(o *Options) { o.RateRead = Rate{3, time.Minute} }, 3,
			func(c *client) response { return c.get("/api/contacts/demo_session") }, codeRateLimit},
		{"sends", func(o *Options) { o.RateSend = Rate{2, time.Minute} }, 2,
			func(c *client) response { return c.do(http.MethodPost, "/api/messages/demo_session/send", send) }, codeMessageRateLimit},
		{"global", func(o *Options) { o.RateGlobal = Rate{4, time.Minute} }, 4,
			func(c *client) response { return c.do(http.MethodPut, "/api/messages/demo_session/x@g.us/read", nil) }, codeRateLimit},
		{"refresh counts as auth", func(o *Options) { o.RateAuth = Rate{1, time.Minute} }, 1,
			func(c *client) response {
				return c.do(http.MethodPost, "/api/auth/refresh-token", map[string]string{"refreshToken": "x"})
			}, codeRateLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			tt.set(&o)
			_, c := startSim(t, o)
			for i := 0; i < tt.allowed; i++ {
				if r := tt.request(c); r.StatusCode == http.StatusTooManyRequests {
					t.Fatalf("request %d refused", i+1)
				}
			}
			r := tt.request(c)
			r.mustError(t, http.StatusTooManyRequests, tt.code)
			if r.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}

func TestRateLimitIsPerAPIKey(t *testing.T) {
	o := testOptions()
	o.RateRead = Rate{1, time.Minute}
	_, c := startSim(t, o)
	c.get("/api/sessions").must(t, http.StatusOK, nil)
	c.get("/api/sessions").mustError(t, http.StatusTooManyRequests, codeRateLimit)
	// another key has its own window (and is then refused for being wrong)
	c.with("other-key", "").get("/api/sessions").mustError(t, http.StatusUnauthorized, codeInvalidAPIKey)
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr bool
	}{
		{"5/15m", Rate{5, 15 * time.Minute}, false},
		{"30/1m", Rate{30, time.Minute}, false},
		{"1000/1d", Rate{1000, 24 * time.Hour}, false},
		{"0", NoLimit(), false},
		{"off", NoLimit(), false},
		{"0/1m", NoLimit(), false},
		{"5", Rate{}, true},
		{"x/1m", Rate{}, true},
		{"5/0s", Rate{}, true},
		{"-1/1m", Rate{}, true},
		{"5/soon", Rate{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseRate(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Second: "2s", 15 * time.Minute: "15m", 24 * time.Hour: "24h", 7 * 24 * time.Hour: "7d",
		90 * time.Second: "90s", 1500 * time.Millisecond: "1500ms",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
