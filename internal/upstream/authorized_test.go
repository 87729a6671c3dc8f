package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuthorizedSharesThePipeline builds the client the way the gateway does (a plain client for
// login, then Authorized with a token source): the authorised client sends the source's bearer
// token and the plain one never does, and both count against one quota and one circuit breaker,
// so a login cannot bypass an open breaker or the shared quota.
func TestAuthorizedSharesThePipeline(t *testing.T) {
	f := newFake(t)
	var down atomic.Bool
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			writeJSON(w, 503, fail("X", "down"))
			return
		}
		contactsOK(w, r)
	})
	f.mux.HandleFunc("POST /api/auth/login", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"accessToken": "a1", "refreshToken": "r1", "expiresIn": "24h"}))
	})
	lim := &fakeLimiter{}
	plain := f.client(WithRetry(1, time.Millisecond, time.Millisecond), WithBreaker(2, time.Minute), WithLimiter(lim))
	authed := plain.Authorized(newTokens("tok-1"))
	ctx := context.Background()

	if _, err := plain.Login(ctx); err != nil {
		t.Fatalf("Login through the plain client: %v", err)
	}
	if _, err := authed.Contacts(ctx, "abc_123", ListParams{}); err != nil {
		t.Fatalf("Contacts through the authorised client: %v", err)
	}
	if _, err := plain.Contacts(ctx, "abc_123", ListParams{}); err != nil {
		t.Fatalf("Contacts through the plain client: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 3 || reqs[0].Auth != "" || reqs[1].Auth != "Bearer tok-1" || reqs[2].Auth != "" {
		t.Fatalf("Authorization headers of login, authorised and plain calls: %d requests, want login without, authorised with Bearer tok-1, plain without", len(reqs))
	}
	if n := len(lim.categories()); n != 3 {
		t.Errorf("%d quota asks for 3 calls on the two clients, want 3 (one shared quota)", n)
	}

	down.Store(true)
	for range 2 {
		if _, err := authed.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v, want ErrUnavailable", err)
		}
	}
	if plain.BreakerState() != "open" {
		t.Fatalf("plain client's breaker %s after the authorised client's failures, want open (one breaker)", plain.BreakerState())
	}
	before := f.hits()
	if _, err := plain.Login(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Login while the shared breaker is open: %v, want ErrUnavailable", err)
	}
	if f.hits() != before {
		t.Errorf("a login went out while the shared breaker was open")
	}
}
