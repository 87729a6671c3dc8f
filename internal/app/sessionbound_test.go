package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestSessionBoundTokenStaysOnItsSession: a JWT carrying the session claim (as the Frappe kit
// mints for the browser) reaches its own session's routes, /v1 and passthrough, and the sync jobs
// it follows; on another session, or on routes that name every session, it is refused with 403
// before anything reaches the upstream. API keys and unbound tokens are unaffected.
func TestSessionBoundTokenStaysOnItsSession(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	bound := token(t, jwt.MapClaims{"session_id": "demo_session"})
	with := func(auth string) map[string]string { return map[string]string{"X-API-Key": "", "Authorization": auth} }

	for _, p := range []string{"/v1/sessions/demo_session", "/v1/sessions/demo_session/contacts", "/api/sessions/demo_session", "/api/contacts/demo_session"} {
		if a := e.gw.request(t, http.MethodGet, p, nil, with(bound)); a.status != http.StatusOK {
			t.Errorf("%s with a token for demo_session: %d %s, want 200", p, a.status, a.body)
		}
	}
	if a := e.gw.request(t, http.MethodGet, "/v1/sync-jobs/0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11", nil, with(bound)); a.status != http.StatusNotFound {
		t.Errorf("following a sync job with a bound token: %d %s, want 404 JOB_NOT_FOUND (let through)", a.status, a.body)
	}

	before := e.upstreamCalls()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/sessions/sales_team", ""},
		{"GET", "/v1/sessions/sales_team/contacts", ""},
		{"GET", "/v1/sessions/sales_team/chats/5511999998888@s.whatsapp.net/messages", ""},
		{"POST", "/v1/sessions/sales_team/messages", sendBody("5511999998888", "hello")},
		{"POST", "/v1/sessions/sales_team/sync", ""},
		{"GET", "/v1/sessions", ""},
		{"GET", "/v1/admin/status", ""},
		{"GET", "/api/sessions", ""},
		{"GET", "/api/sessions/sales_team", ""},
		{"GET", "/api/contacts/sales_team", ""},
		{"GET", "/api/messages/sales_team/chats", ""},
		{"POST", "/api/messages/sales_team/send", sendBody("5511999998888", "hello")},
		{"GET", "/api/messages/demo_sessionX", ""},
		{"GET", "/v1/sessions/DEMO_SESSION", ""},
	} {
		h := with(bound)
		h["Content-Type"] = "application/json"
		a := e.gw.request(t, tc.method, tc.path, strings.NewReader(tc.body), h)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "FORBIDDEN") {
			t.Errorf("%s %s with a token for demo_session: %d %s, want 403 FORBIDDEN", tc.method, tc.path, a.status, a.body)
		}
	}
	if n := e.upstreamCalls() - before; n != 0 {
		t.Errorf("%d upstream calls for requests refused as another session's, want none", n)
	}
	for _, bad := range []any{"", "../sales_team", strings.Repeat("a", 101), 42, []string{"demo_session"}} {
		a := e.gw.request(t, http.MethodGet, "/v1/sessions/demo_session", nil, with(token(t, jwt.MapClaims{"session_id": bad})))
		if a.status != http.StatusUnauthorized {
			t.Errorf("session claim %v: %d, want 401", bad, a.status)
		}
	}

	// An API key and a token without the claim reach every session, as before.
	if a := e.gw.get(t, "/v1/sessions/sales_team"); a.status != http.StatusOK {
		t.Errorf("API key on sales_team: %d", a.status)
	}
	if a := e.gw.request(t, http.MethodGet, "/v1/sessions/sales_team", nil, with(token(t, nil))); a.status != http.StatusOK {
		t.Errorf("unbound token on sales_team: %d", a.status)
	}
}
