package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestOperationsEndpointsStayOffThePublicListener: a stranger on the public listener learns
// nothing about callers or the token: no /metrics (its labels name callers), and /readyz says
// ready and nothing more. The detailed readiness (token fingerprint, breaker) is for admin callers
// at /v1/admin/status and on the admin listener, which serves the metrics too.
func TestOperationsEndpointsStayOffThePublicListener(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	_, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)
	if a := g.get(t, "/v1/sessions"); a.status != http.StatusOK { // logs in: the token has a fingerprint
		t.Fatalf("/v1/sessions = %d %s", a.status, a.body)
	}
	fingerprint := g.app.Tokens.Status().Fingerprint
	if fingerprint == "" {
		t.Fatal("no token fingerprint after a login")
	}

	// The public listener, without a credential.
	anon := map[string]string{"X-API-Key": ""}
	if a := g.request(t, http.MethodGet, "/metrics", nil, anon); a.status != http.StatusNotFound || strings.Contains(a.body, "test-crm") {
		t.Errorf("public /metrics = %d %.200s", a.status, a.body)
	}
	if a := g.request(t, http.MethodGet, "/readyz", nil, anon); a.status != http.StatusOK || strings.TrimSpace(a.body) != `{"status":"ready"}` {
		t.Errorf("public /readyz = %d %s, want the status alone", a.status, a.body)
	}
	if a := g.request(t, http.MethodGet, "/v1/admin/status", nil, anon); a.status != http.StatusUnauthorized {
		t.Errorf("/v1/admin/status without a credential = %d", a.status)
	}
	if a := g.request(t, http.MethodGet, "/v1/admin/status", nil, map[string]string{"X-API-Key": readerKey}); a.status != http.StatusForbidden ||
		strings.Contains(a.body, fingerprint) {
		t.Errorf("/v1/admin/status with the reader key = %d %s, want 403", a.status, a.body)
	}

	// An admin caller reads the details on the public listener.
	a := g.get(t, "/v1/admin/status")
	var st struct {
		Data struct {
			Status string `json:"status"`
			Checks map[string]struct {
				OK     bool           `json:"ok"`
				Detail map[string]any `json:"detail"`
			} `json:"checks"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(a.body), &st); err != nil || a.status != http.StatusOK {
		t.Fatalf("/v1/admin/status = %d %s", a.status, a.body)
	}
	if st.Data.Status != "ready" || st.Data.Checks["upstream_token"].Detail["fingerprint"] != fingerprint ||
		st.Data.Checks["upstream_breaker"].Detail["state"] != "closed" || !st.Data.Checks["redis"].OK {
		t.Errorf("/v1/admin/status = %s", a.body)
	}

	// The admin listener: metrics with the caller names, and the detailed readiness.
	if a := g.adminGet(t, "/metrics"); a.status != http.StatusOK || !strings.Contains(a.body, `caller="test-crm"`) {
		t.Errorf("admin /metrics = %d, lacks the caller's requests", a.status)
	}
	if a := g.adminGet(t, "/readyz"); a.status != http.StatusOK || !strings.Contains(a.body, fingerprint) {
		t.Errorf("admin /readyz = %d %s", a.status, a.body)
	}
}
