package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestRouteUnauthorizedKeepsAValidToken: a route answers 401 to every request while the profile
// route accepts the token. 50 concurrent calls and 10 later ones cost one profile check in all,
// and the token is never dropped.
func TestRouteUnauthorizedKeepsAValidToken(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, fail("INVALID_TOKEN", "not for this route"))
	})
	profileAccepts(f, "tok-1")
	tokens := newTokens("tok-1", "tok-2")
	c := f.client(WithTokenSource(tokens), WithRetry(1, 1, 1))

	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Contacts(context.Background(), "abc_123", ListParams{}) })
	}
	wg.Wait()
	for range 10 {
		_, err := c.Contacts(context.Background(), "abc_123", ListParams{})
		errs = append(errs, err)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("error %v, want ErrUnauthorized", err)
		}
	}
	profiles := 0
	for _, p := range f.paths() {
		if p == "GET /api/auth/profile" {
			profiles++
		}
	}
	if profiles != 1 || len(tokens.rejections()) != 0 {
		t.Errorf("%d profile checks and rejections %v, want 1 check and no rejection", profiles, tokens.rejections())
	}
}

// TestTokenRevokedAfterAnAcceptedCheck: the profile route accepted the token after a route's 401;
// once the hold of that verdict has passed, a 401 is checked again, and the token, revoked
// meanwhile, is dropped and replaced.
func TestTokenRevokedAfterAnAcceptedCheck(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	revoked := false
	f.mux.HandleFunc("GET /api/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") == "Bearer tok-2" {
			contactsOK(w, r)
			return
		}
		writeJSON(w, 401, fail("INVALID_TOKEN", "no"))
	})
	f.mux.HandleFunc("GET /api/auth/profile", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !revoked || r.Header.Get("Authorization") == "Bearer tok-2" {
			writeJSON(w, 200, ok(map[string]any{"user": map[string]any{"id": "u1"}}))
			return
		}
		writeJSON(w, 401, fail("INVALID_TOKEN", "revoked"))
	})
	tokens := newTokens("tok-1", "tok-2")
	c := f.client(WithTokenSource(tokens), WithRetry(1, 1, 1))
	now := time.Now()
	c.checks.now = func() time.Time { return now }
	ctx := context.Background()

	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("route's own 401: %v", err)
	}
	mu.Lock()
	revoked = true
	mu.Unlock()
	now = now.Add(tokenCheckHold - time.Second)
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); !errors.Is(err, ErrUnauthorized) || len(tokens.rejections()) != 0 {
		t.Fatalf("within the hold: %v, rejections %v; want the 401 and the token kept", err, tokens.rejections())
	}
	now = now.Add(time.Second)
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); err != nil || len(tokens.rejections()) != 1 {
		t.Fatalf("after the hold: %v, rejections %v; want the token replaced and the call served", err, tokens.rejections())
	}
}
