package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// adminCall sends an admin request with the admin key (none when empty) and decodes the JSON
// answer into v (when not nil).
func adminCall(t *testing.T, c *client, key, method, path string, body any, status int, v any) {
	t.Helper()
	admin := c.with("", "")
	admin.adminKey = key
	r := admin.do(method, path, body)
	if r.StatusCode != status {
		t.Fatalf("%s %s: %d, want %d; %s", method, path, r.StatusCode, status, r.raw)
	}
	if v != nil {
		if err := json.Unmarshal(r.raw, v); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, r.raw, err)
		}
	}
}

func TestAdminAPI(t *testing.T) {
	const key = "admin-key-for-tests"
	o := testOptions()
	o.AdminKey = key
	s, c := startSim(t, o)

	adminCall(t, c, "", http.MethodGet, "/_sim/counters", nil, http.StatusUnauthorized, nil)
	adminCall(t, c, "wrong", http.MethodGet, "/_sim/counters", nil, http.StatusUnauthorized, nil)

	var f Faults
	adminCall(t, c, key, http.MethodPut, "/_sim/faults", map[string]any{"latency": "1ms", "allStatus": 503}, http.StatusOK, &f)
	if f.AllStatus != 503 || f.Latency.Milliseconds() != 1 {
		t.Errorf("faults answered %+v", f)
	}
	c.get("/api/sessions").mustError(t, http.StatusServiceUnavailable, codeUnavailable)
	adminCall(t, c, key, http.MethodPut, "/_sim/faults", map[string]any{"latency": "never"}, http.StatusBadRequest, nil)
	adminCall(t, c, key, http.MethodPut, "/_sim/faults", map[string]any{}, http.StatusOK, nil)
	c.get("/api/sessions").must(t, http.StatusOK, nil)

	authed := c.with(testAPIKey, c.login().AccessToken)
	authed.get("/api/sessions").must(t, http.StatusOK, nil)
	adminCall(t, c, key, http.MethodPost, "/_sim/revoke", nil, http.StatusOK, nil)
	authed.get("/api/sessions").mustError(t, http.StatusUnauthorized, codeInvalidToken)

	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/support_desk/scan", nil, http.StatusConflict, nil)
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/nobody/scan", nil, http.StatusNotFound, nil)
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/support_desk/status", map[string]string{"status": "asleep"}, http.StatusBadRequest, nil)
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/93/status", map[string]string{"status": "connected"}, http.StatusOK, nil)
	c.get("/api/contacts/support_desk").must(t, http.StatusOK, nil)

	var mutated struct {
		IDs []string `json:"ids"`
	}
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/support_desk/mutate-contacts", map[string]int{"n": 5}, http.StatusOK, &mutated)
	if len(mutated.IDs) != 5 {
		t.Errorf("mutate-contacts answered %v", mutated.IDs)
	}
	const chat = "34600999888@s.whatsapp.net"
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/support_desk/chats/"+chat+"/messages", map[string]int{"n": 4}, http.StatusOK, nil)
	adminCall(t, c, key, http.MethodPost, "/_sim/sessions/support_desk/chats/"+chat+"/messages", map[string]int{"n": 0}, http.StatusBadRequest, nil)
	var page messagesPage
	c.get("/api/messages/support_desk/"+chat).must(t, http.StatusOK, &page)
	if page.Pagination.Total != 4 {
		t.Errorf("chat has %d messages after adding 4", page.Pagination.Total)
	}

	var counters Counters
	adminCall(t, c, key, http.MethodGet, "/_sim/counters", nil, http.StatusOK, &counters)
	if counters.Requests["GET /api/messages/{sessionId}/{chatId}"] != 1 || counters.Logins != 1 {
		t.Errorf("counters %+v", counters)
	}
	for k := range counters.Requests {
		if strings.HasPrefix(k, "/_sim") || strings.Contains(k, " /_sim") {
			t.Errorf("admin route counted: %s", k)
		}
	}
	adminCall(t, c, key, http.MethodPost, "/_sim/counters/reset", nil, http.StatusOK, nil)
	if got := s.Counters(); len(got.Requests) != 0 {
		t.Errorf("counters after reset: %v", got.Requests)
	}
}

func TestNewNeedsCredentials(t *testing.T) {
	_, err := New(Options{})
	if err == nil {
		t.Fatal("New accepted options without credentials")
	}
	for _, name := range []string{"Identifier", "Password", "APIKey"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestHealth(t *testing.T) {
	_, c := startSim(t, testOptions())
	r := c.with("", "").get("/health")
	var body map[string]any
	if err := json.Unmarshal(r.raw, &body); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("health: %d %s", r.StatusCode, r.raw)
	}
	for _, k := range []string{"success", "message", "timestamp", "version", "environment"} {
		if _, ok := body[k]; !ok {
			t.Errorf("health lacks %s: %s", k, r.raw)
		}
	}
}
