package sim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSetWebhook checks PUT /api/sessions/{id}/webhook: the session's next events go to the new
// URL signed with the new secret, the answer never carries the secret, and bad input is refused.
func TestSetWebhook(t *testing.T) {
	const oldSecret, newSecret = "default-secret-0123456789", "session-secret-9876543210"
	defaultURL, defaultHooks := startReceiver(t)
	targetURL, targetHooks := startReceiver(t)
	o := testOptions()
	o.WebhookURL, o.WebhookSecret = defaultURL, oldSecret
	s, c := startSim(t, o)

	const id = "93" // support_desk, disconnected
	r := c.do(http.MethodPut, "/api/sessions/"+id+"/webhook", map[string]any{
		"webhookUrl": targetURL, "webhookSecret": newSecret})
	var got struct {
		SessionID     string   `json:"sessionId"`
		WebhookURL    string   `json:"webhookUrl"`
		WebhookEvents []string `json:"webhookEvents"`
	}
	r.must(t, http.StatusOK, &got)
	if !r.env.Success || got.SessionID != "support_desk" || got.WebhookURL != targetURL ||
		!slices.Contains(got.WebhookEvents, "session.connected") || len(got.WebhookEvents) != len(webhookEventNames) {
		t.Errorf("answer %s", r.raw)
	}
	if strings.Contains(string(r.raw), newSecret) {
		t.Errorf("the answer echoes the secret: %s", r.raw)
	}
	if n := s.Counters().Requests["PUT /api/sessions/{id}/webhook"]; n != 1 {
		t.Errorf("counted %d requests, want 1", n)
	}
	var sess struct {
		Session sessionJSON `json:"session"`
	}
	c.get("/api/sessions/support_desk").must(t, http.StatusOK, &sess)
	if sess.Session.WebhookURL == nil || *sess.Session.WebhookURL != targetURL {
		t.Errorf("GET session webhookUrl %v, want %s", sess.Session.WebhookURL, targetURL)
	}

	if err := s.SetSessionStatus("support_desk", "connected"); err != nil {
		t.Fatal(err)
	}
	h := nextHook(t, targetHooks, "session.connected")
	verifySignature(t, h, newSecret)
	if h.header.Get("X-Webhook-Session") != "support_desk" {
		t.Errorf("X-Webhook-Session %q", h.header.Get("X-Webhook-Session"))
	}
	select {
	case d := <-defaultHooks:
		t.Errorf("the default receiver still got %s", d.event())
	case <-time.After(100 * time.Millisecond):
	}

	// By sessionId, limited to one event: a disconnect is not sent, a QR is.
	c.do(http.MethodPut, "/api/sessions/support_desk/webhook", map[string]any{
		"webhookUrl": targetURL, "webhookSecret": newSecret, "webhookEvents": []string{"session.qr"}}).
		must(t, http.StatusOK, &got)
	if !slices.Equal(got.WebhookEvents, []string{"session.qr"}) {
		t.Errorf("webhookEvents %v", got.WebhookEvents)
	}
	if err := s.SetSessionStatus("support_desk", "disconnected"); err != nil {
		t.Fatal(err)
	}
	c.do(http.MethodPost, "/api/sessions/support_desk/connect", nil).must(t, http.StatusOK, nil)
	// Deliveries go out in order from one queue, so a session.disconnected would come first.
	for timeout := time.After(3 * time.Second); ; {
		select {
		case h := <-targetHooks:
			if h.event() == "session.disconnected" {
				t.Errorf("session.disconnected was sent though not subscribed")
			}
			if h.event() != "session.qr" {
				continue
			}
			verifySignature(t, h, newSecret)
		case <-timeout:
			t.Fatal("no session.qr webhook within 3s")
		}
		break
	}

	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		code       string
	}{
		{"no url", "/api/sessions/93/webhook", map[string]any{"webhookSecret": newSecret}, http.StatusBadRequest, codeValidation},
		{"ftp url", "/api/sessions/93/webhook", map[string]any{"webhookUrl": "ftp://example.test/x"}, http.StatusBadRequest, codeValidation},
		{"short secret", "/api/sessions/93/webhook", map[string]any{"webhookUrl": targetURL, "webhookSecret": "short"}, http.StatusBadRequest, codeValidation},
		{"long secret", "/api/sessions/93/webhook", map[string]any{"webhookUrl": targetURL, "webhookSecret": strings.Repeat("x", 256)}, http.StatusBadRequest, codeValidation},
		{"unknown event", "/api/sessions/93/webhook", map[string]any{"webhookUrl": targetURL, "webhookEvents": []string{"everything"}}, http.StatusBadRequest, codeValidation},
		{"unknown session", "/api/sessions/4242/webhook", map[string]any{"webhookUrl": targetURL}, http.StatusNotFound, codeSessionNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.do(http.MethodPut, tc.path, tc.body).mustError(t, tc.status, tc.code)
		})
	}
	if r := c.with("", "").do(http.MethodPut, "/api/sessions/93/webhook", map[string]any{"webhookUrl": targetURL}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("without an API key: status %d", r.StatusCode)
	}
}
