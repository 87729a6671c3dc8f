package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

func TestHeaders(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("POST /api/auth/login", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"accessToken": "a1", "refreshToken": "r1", "expiresIn": "24h",
			"user": map[string]any{"id": 1}}))
	})
	f.mux.HandleFunc("POST /api/auth/refresh-token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"accessToken": "a2", "expiresIn": 3600}))
	})
	f.mux.HandleFunc("GET /api/contacts/{id}", contactsOK)
	f.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"success": true, "version": "2.0.0", "timestamp": "2025-11-07T10:00:00Z"})
	})
	c := f.client(WithTokenSource(newTokens("tok-1")))
	ctx := context.Background()

	ts, err := c.Login(ctx)
	if err != nil || ts != (TokenSet{AccessToken: "a1", RefreshToken: "r1", ExpiresIn: "24h"}) {
		t.Fatalf("Login = %+v, %v", ts, err)
	}
	ts, err = c.RefreshToken(ctx, "r1")
	if err != nil || ts != (TokenSet{AccessToken: "a2", ExpiresIn: "3600s"}) {
		t.Fatalf("RefreshToken = %+v, %v", ts, err)
	}
	if _, err := c.Contacts(ctx, "abc_123", ListParams{Page: 2, Limit: 10, Search: "an a"}); err != nil {
		t.Fatal(err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Version != "2.0.0" {
		t.Fatalf("Health = %+v, %v", h, err)
	}

	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.APIKey != testCreds.APIKey {
			t.Errorf("%s: X-API-Key %q", r.Path, r.APIKey)
		}
	}
	var login map[string]string
	_ = json.Unmarshal(reqs[0].Body, &login)
	if login["identifier"] != testCreds.Identifier || login["password"] != testCreds.Password || reqs[0].Auth != "" {
		t.Errorf("login request: body %s auth %q", reqs[0].Body, reqs[0].Auth)
	}
	if reqs[1].Auth != "" || !strings.Contains(string(reqs[1].Body), `"refreshToken":"r1"`) {
		t.Errorf("refresh request: body %s auth %q", reqs[1].Body, reqs[1].Auth)
	}
	if reqs[2].Auth != "Bearer tok-1" || reqs[2].Path != "/api/contacts/abc_123" || reqs[2].Query != "limit=10&page=2&search=an+a" {
		t.Errorf("contacts request: %+v", reqs[2])
	}
	if reqs[3].Path != "/health" || reqs[3].Auth != "" {
		t.Errorf("health request: %+v", reqs[3])
	}
}

func TestUnauthorizedRetriesOnceWithNewToken(t *testing.T) {
	tests := []struct {
		name         string
		accept       string // the token the fake accepts; "" = none
		code         string
		profileOK    bool // the profile route accepts tok-1: the 401 is the route's own
		want         error
		wantHits     int
		wantRejected []AccessToken
	}{
		{name: "new token works", accept: "tok-2", code: "INVALID_TOKEN", wantHits: 3,
			wantRejected: []AccessToken{{Value: "tok-1", Generation: 1}}},
		{name: "second 401", code: "INVALID_TOKEN", want: ErrUnauthorized, wantHits: 3,
			wantRejected: []AccessToken{{Value: "tok-1", Generation: 1}}},
		{name: "route's own 401: token kept", code: "INVALID_TOKEN", profileOK: true, want: ErrUnauthorized, wantHits: 2},
		{name: "api key rejected: token kept", code: "INVALID_API_KEY", want: ErrAuthFailed, wantHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
				if tt.accept != "" && r.Header.Get("Authorization") == "Bearer "+tt.accept {
					contactsOK(w, r)
					return
				}
				writeJSON(w, 401, fail(tt.code, "no"))
			})
			if tt.profileOK {
				profileAccepts(f, "tok-1")
			} else {
				profileAccepts(f)
			}
			tokens := newTokens("tok-1", "tok-2")
			c := f.client(WithTokenSource(tokens))
			_, err := c.Contacts(context.Background(), "abc_123", ListParams{})
			if tt.want == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if f.hits() != tt.wantHits {
				t.Errorf("%d requests, want %d", f.hits(), tt.wantHits)
			}
			got := tokens.rejections()
			if len(got) != len(tt.wantRejected) || (len(got) > 0 && got[0] != tt.wantRejected[0]) {
				t.Errorf("Rejected(%v), want %v", got, tt.wantRejected)
			}
		})
	}
}

func TestTokenErrorReturnedUnchanged(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}", contactsOK)
	redisDown := errors.New("tokens: redis: connection refused")
	tokens := newTokens("t")
	tokens.err = redisDown
	c := f.client(WithTokenSource(tokens))
	_, err := c.Contacts(context.Background(), "abc_123", ListParams{})
	if err != redisDown {
		t.Fatalf("error %v, want the provider's error unchanged", err)
	}
	if f.hits() != 0 {
		t.Errorf("%d requests without a token", f.hits())
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // answered in turn, the last one repeated
		header   map[string]string
		send     bool // POST send instead of GET contacts
		want     error
		wantHits int
	}{
		{name: "GET 503 twice then 200", statuses: []int{503, 503, 200}, wantHits: 3},
		{name: "GET 502 504 then 200", statuses: []int{502, 504, 200}, wantHits: 3},
		{name: "GET 429 then 200", statuses: []int{429, 200}, header: map[string]string{"Retry-After": "0"}, wantHits: 2},
		{name: "GET gives up after max attempts", statuses: []int{503}, want: ErrUnavailable, wantHits: 3},
		{name: "GET 500 not retried", statuses: []int{500}, want: ErrUnavailable, wantHits: 1},
		{name: "GET 404 not retried", statuses: []int{404}, want: ErrNotFound, wantHits: 1},
		{name: "GET Retry-After beyond the cap not waited", statuses: []int{429}, header: map[string]string{"Retry-After": "120"},
			want: ErrRateLimited, wantHits: 1},
		{name: "POST send 503 not retried", statuses: []int{503}, send: true, want: ErrUnavailable, wantHits: 1},
		{name: "POST send 429 not retried", statuses: []int{429}, send: true, want: ErrRateLimited, wantHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			var n atomic.Int32
			answer := func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				st := tt.statuses[min(i, len(tt.statuses)-1)]
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				if st != 200 {
					writeJSON(w, st, fail("X", "no"))
					return
				}
				if r.Method == http.MethodPost {
					writeJSON(w, 200, ok(map[string]any{"message": map[string]any{"id": 1, "body": "hola"}}))
					return
				}
				contactsOK(w, r)
			}
			f.mux.HandleFunc("GET /api/contacts/{id}", answer)
			f.mux.HandleFunc("POST /api/messages/{id}/send", answer)
			lim := &fakeLimiter{}
			c := f.client(WithLimiter(lim))
			var err error
			if tt.send {
				_, err = c.SendText(context.Background(), "abc_123", "34600000001@s.whatsapp.net", "hola")
			} else {
				_, err = c.Contacts(context.Background(), "abc_123", ListParams{})
			}
			if tt.want == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if f.hits() != tt.wantHits {
				t.Errorf("%d requests, want %d", f.hits(), tt.wantHits)
			}
			if got := len(lim.categories()); got != tt.wantHits {
				t.Errorf("quota asked %d times for %d attempts", got, tt.wantHits)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := newFake(t)
	var n atomic.Int32
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 429, fail("RATE_LIMIT_EXCEEDED", "slow down"))
			return
		}
		contactsOK(w, r)
	})
	c := f.client(WithRetry(3, time.Millisecond, 2*time.Second))
	start := time.Now()
	if _, err := c.Contacts(context.Background(), "abc_123", ListParams{}); err != nil {
		t.Fatal(err)
	}
	if f.hits() != 2 {
		t.Errorf("%d requests, want 2", f.hits())
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("retried after %v, before the Retry-After of 1s", waited)
	}
}

func TestRetryNeverSleepsPastDeadline(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		writeJSON(w, 429, fail("RATE_LIMIT_EXCEEDED", "slow down"))
	})
	c := f.client(WithRetry(3, time.Millisecond, 10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.Contacts(ctx, "abc_123", ListParams{})
	var rle *RateLimitError
	if !errors.As(err, &rle) || rle.RetryAfter < 2*time.Second {
		t.Fatalf("error %v, want a rate-limit error with RetryAfter ~3s", err)
	}
	if f.hits() != 1 || ctx.Err() != nil {
		t.Errorf("%d requests, ctx %v: the client waited instead of answering", f.hits(), ctx.Err())
	}
}

func TestRetryAfterHeaders(t *testing.T) {
	now := time.Date(2025, 11, 7, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		h    map[string]string
		want time.Duration
	}{
		{map[string]string{"Retry-After": "30"}, 30 * time.Second},
		{map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{map[string]string{"RateLimit-Reset": "12"}, 12 * time.Second},
		{map[string]string{"X-RateLimit-Reset": "1762509660"}, 60 * time.Second}, // epoch seconds
		{map[string]string{"X-RateLimit-Reset": "40"}, 40 * time.Second},
		{map[string]string{"Retry-After": "5", "RateLimit-Reset": "50"}, 5 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After": "-4"}, 0},
		{map[string]string{"Retry-After": "99999999999"}, maxServerWait},
		{map[string]string{}, 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.h {
			h.Set(k, v)
		}
		if got := serverWait(h, now); got != tt.want {
			t.Errorf("serverWait(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	p := retryPolicy{maxAttempts: 10, base: 100 * time.Millisecond, cap: time.Second}
	for n := 1; n <= 40; n++ {
		bound := min(p.cap, p.base<<min(n-1, 20))
		for range 50 {
			if d := p.backoff(n); d < 0 || d > bound {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, d, bound)
			}
		}
	}
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestPostRetriedOnlyWhenNeverSent(t *testing.T) {
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	c, err := New("http://"+closedAddr(t)+prefix, testCreds, WithHTTPClient(&http.Client{Transport: tr}),
		WithRetry(3, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendText(context.Background(), "abc_123", "34600000001@s.whatsapp.net", "hola")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if dials.Load() != 3 {
		t.Errorf("%d dials, want 3: a POST that never left may be retried", dials.Load())
	}

	// The connection breaks after the upstream read the request: a POST is not repeated, a GET is.
	f := newFake(t)
	hangUp := func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
	f.mux.HandleFunc("POST /api/messages/{id}/send", hangUp)
	f.mux.HandleFunc("GET /api/contacts/{id}", hangUp)
	c = f.client()
	_, err = c.SendText(context.Background(), "abc_123", "34600000001@s.whatsapp.net", "hola")
	if !errors.Is(err, ErrUnavailable) || f.hits() != 1 {
		t.Fatalf("send: error %v after %d requests, want ErrUnavailable after 1", err, f.hits())
	}
	_, err = c.Contacts(context.Background(), "abc_123", ListParams{})
	if !errors.Is(err, ErrUnavailable) || f.hits() != 4 {
		t.Fatalf("contacts: error %v after %d requests in all, want ErrUnavailable after 1+3", err, f.hits())
	}
}

func TestQuota(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("POST /api/auth/login", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"accessToken": "a"}))
	})
	f.mux.HandleFunc("GET /api/contacts/{id}", contactsOK)
	f.mux.HandleFunc("POST /api/messages/{id}/send", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 201, ok(map[string]any{"message": map[string]any{"id": "m1"}}))
	})
	f.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{}) })
	lim := &fakeLimiter{}
	c := f.client(WithLimiter(lim))
	ctx := context.Background()
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendText(ctx, "abc_123", "34600000001@s.whatsapp.net", "hola"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	want := []Category{CategoryAuth, CategoryRead, CategorySend}
	if got := lim.categories(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("categories %v, want %v (health takes no quota)", got, want)
	}

	refused := &RateLimitError{RetryAfter: time.Minute, Source: "gateway"}
	lim.err = refused
	before := f.hits()
	_, err := c.Contacts(ctx, "abc_123", ListParams{})
	if err != refused {
		t.Errorf("error %v, want the limiter's error", err)
	}
	if f.hits() != before {
		t.Errorf("the upstream was called although the quota refused")
	}
}

func TestBodySizeLimit(t *testing.T) {
	f := newFake(t)
	big := strings.Repeat("x", 2000)
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"contacts": []map[string]any{{"id": big}}}))
	})
	f.mux.HandleFunc("GET /api/messages/{id}/chats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, fail("NOT_FOUND", big))
	})
	f.mux.HandleFunc("GET /api/messages/{id}/{chat}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"messages": []map[string]any{{"id": "m", "body": big[:500]}}}))
	})
	c := f.client(WithMaxBodyBytes(1024))
	ctx := context.Background()
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrBadResponse) {
		t.Errorf("large success: %v, want ErrBadResponse", err)
	}
	if _, err := c.Chats(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrBadResponse) {
		t.Errorf("large error: %v, want ErrBadResponse", err)
	}
	if _, err := c.Do(ctx, RawRequest{Method: "GET", Path: "/api/contacts/abc_123"}); !errors.Is(err, ErrBadResponse) {
		t.Errorf("large raw: %v, want ErrBadResponse", err)
	}
	p, err := c.ChatMessages(ctx, "abc_123", "346@s.whatsapp.net", ListParams{})
	if err != nil || len(p.Items) != 1 {
		t.Errorf("small answer: %+v, %v", p, err)
	}
}

func TestBreaker(t *testing.T) {
	f := newFake(t)
	var status atomic.Int32
	status.Store(503)
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if st := int(status.Load()); st != 200 {
			writeJSON(w, st, fail("X", "down"))
			return
		}
		contactsOK(w, r)
	})
	reg := prometheus.NewRegistry()
	lim := &fakeLimiter{}
	c := f.client(WithRetry(1, time.Millisecond, time.Millisecond), WithBreaker(3, 100*time.Millisecond),
		WithMetrics(reg), WithLimiter(lim))
	ctx := context.Background()
	for range 3 {
		if _, err := c.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v", err)
		}
	}
	if c.BreakerState() != "open" {
		t.Fatalf("breaker %s after 3 failures, want open", c.BreakerState())
	}
	if got := metricValue(t, c.metrics.breaker); got != 2 {
		t.Errorf("upstream_breaker_state %v, want 2", got)
	}
	_, err := c.Contacts(ctx, "abc_123", ListParams{})
	var e *Error
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) || e.RetryAfter <= 0 {
		t.Fatalf("open breaker: error %v, want ErrUnavailable with RetryAfter", err)
	}
	if f.hits() != 3 || len(lim.categories()) != 3 {
		t.Errorf("open breaker: %d requests and %d quota asks, want 3 and 3", f.hits(), len(lim.categories()))
	}

	// After the open period one probe goes through; its success closes the breaker.
	status.Store(200)
	wait.Until(t, 3*time.Second, "the breaker half-open", func() bool { return c.BreakerState() == "half-open" })
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if c.BreakerState() != "closed" {
		t.Errorf("breaker %s after a good probe, want closed", c.BreakerState())
	}
}

func TestBreakerIgnoresApplicationErrors(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/messages/{id}/chats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 500, fail("INTERNAL_ERROR", "column does not exist"))
	})
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, fail("SESSION_NOT_CONNECTED", "La sesión debe estar conectada"))
	})
	c := f.client(WithBreaker(2, time.Hour))
	for range 5 {
		_, _ = c.Chats(context.Background(), "abc_123", ListParams{})
		_, _ = c.Contacts(context.Background(), "abc_123", ListParams{})
	}
	if c.BreakerState() != "closed" || f.hits() != 10 {
		t.Errorf("breaker %s after %d requests, want closed after 10", c.BreakerState(), f.hits())
	}
}

func TestContext(t *testing.T) {
	f := newFake(t)
	arrived := make(chan struct{}, 10)
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})

	t.Run("cancel", func(t *testing.T) {
		c := f.client()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		before := f.hits()
		_, err := c.Contacts(ctx, "abc_123", ListParams{})
		if !errors.Is(err, context.Canceled) || len(matched(err)) != 0 {
			t.Fatalf("error %v (matches %v), want context.Canceled only", err, matched(err))
		}
		if f.hits()-before != 1 {
			t.Errorf("%d requests after cancel, want 1", f.hits()-before)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		c := f.client()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Contacts(ctx, "abc_123", ListParams{})
		<-arrived
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want ErrTimeout and context.DeadlineExceeded", err)
		}
	})
	t.Run("attempt timeout", func(t *testing.T) {
		c := f.client(WithTimeout(50*time.Millisecond), WithBreaker(3, time.Hour))
		before := f.hits()
		_, err := c.Contacts(context.Background(), "abc_123", ListParams{})
		for range 3 {
			<-arrived
		}
		if !errors.Is(err, ErrTimeout) || errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want ErrTimeout", err)
		}
		if f.hits()-before != 3 || c.BreakerState() != "open" {
			t.Errorf("%d attempts, breaker %s: want 3 attempts and an open breaker", f.hits()-before, c.BreakerState())
		}
	})
	t.Run("already canceled", func(t *testing.T) {
		c := f.client()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := f.hits()
		if _, err := c.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
		if f.hits() != before {
			t.Error("a canceled call reached the upstream")
		}
	})
}

func TestMetricsUseRoutePatterns(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}", contactsOK)
	f.mux.HandleFunc("GET /api/messages/{id}/{chat}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 503, fail("X", "down"))
	})
	reg := prometheus.NewRegistry()
	c := f.client(WithMetrics(reg))
	ctx := context.Background()
	_, _ = c.Contacts(ctx, "abc_123", ListParams{})
	_, _ = c.ChatMessages(ctx, "abc_123", "34600000001@s.whatsapp.net", ListParams{})
	_, _ = c.Do(ctx, RawRequest{Method: "GET", Path: "/api/contacts/abc_123"})

	if n := metricValue(t, c.metrics.requests.WithLabelValues("/api/contacts/:sessionId", "GET", "200")); n != 2 {
		t.Errorf("contacts 200 counted %v times, want 2", n)
	}
	if n := metricValue(t, c.metrics.retries.WithLabelValues("/api/messages/:sessionId/:chatId")); n != 2 {
		t.Errorf("retries counted %v, want 2", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "abc_123") || strings.Contains(l.GetValue(), "346") {
					t.Errorf("label %s=%s carries an id", l.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, n := range []string{"upstream_requests_total", "upstream_request_duration_seconds", "upstream_retries_total", "upstream_breaker_state"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	// A second client on the same registry shares the metrics instead of failing.
	if _, err := New(f.srv.URL+prefix, testCreds, WithMetrics(reg)); err != nil {
		t.Errorf("second client on one registry: %v", err)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
