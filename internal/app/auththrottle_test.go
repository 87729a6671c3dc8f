package app_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAuthFailuresLockOutTheAddress: configured through GATEWAY_AUTH_FAILURE_RATE, a client
// address that fails authentication too often gets 429 on /v1 and on the passthrough, good key
// or not, without any upstream call; the answers never repeat the key.
func TestAuthFailuresLockOutTheAddress(t *testing.T) {
	t.Parallel()
	e := startV1(t, map[string]string{"GATEWAY_AUTH_FAILURE_RATE": "3/1h"})
	wrong := "test-wrong-" + randHex(12)
	for i := range 3 {
		if a := e.gw.get(t, "/v1/sessions"); a.status != http.StatusOK {
			t.Fatalf("good key before any failure: %d", a.status)
		}
		if a := e.gw.request(t, http.MethodGet, "/v1/sessions", nil, map[string]string{"X-API-Key": wrong}); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, a.status)
		}
	}
	before := e.upstreamCalls()
	for _, p := range []string{"/v1/sessions", "/v1/sessions/demo_session/contacts", "/api/sessions"} {
		for _, key := range []string{wrong, callerKey} {
			a := e.gw.request(t, http.MethodGet, p, nil, map[string]string{"X-API-Key": key})
			if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "RATE_LIMITED") {
				t.Errorf("%s from the locked-out address: %d %s, want 429 RATE_LIMITED with Retry-After", p, a.status, a.body)
			}
			if strings.Contains(a.body, key) {
				t.Errorf("%s: the 429 repeats the key", p)
			}
		}
	}
	if n := e.upstreamCalls() - before; n != 0 {
		t.Errorf("%d upstream calls during the lock-out, want none", n)
	}
}
