package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const testWebhookSecret = "hook-secret-0123456789abcdef"

// webhookFake is a sessions fake whose PUT /api/sessions/{id}/webhook answers with answer(n)
// for the n-th call (from 1).
func webhookFake(t *testing.T, answer func(n int32, w http.ResponseWriter, r *http.Request)) *sessionsFake {
	s := newSessionsFake(t)
	var calls atomic.Int32
	s.mux.HandleFunc("PUT /api/sessions/{id}/webhook", func(w http.ResponseWriter, r *http.Request) {
		answer(calls.Add(1), w, r)
	})
	return s
}

func TestSetWebhook(t *testing.T) {
	s := webhookFake(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		writeJSON(w, 200, ok(map[string]any{"sessionId": "abc_123", "webhookUrl": body["webhookUrl"],
			"webhookEvents": body["webhookEvents"]}))
	})
	c := s.client()
	in := Webhook{URL: "https://gw.example.test/webhooks/inbox-hub", Secret: testWebhookSecret,
		Events: []string{"message.received", "session.connected"}}
	got, err := c.SetWebhook(context.Background(), "abc_123", in)
	if err != nil {
		t.Fatal(err)
	}
	if got.SessionID != "abc_123" || got.URL != in.URL || !slices.Equal(got.Events, in.Events) {
		t.Errorf("SetWebhook = %+v", got)
	}
	// The string id is mapped to the numeric one first; the PUT goes to the numeric route.
	want := []string{"GET /api/sessions/abc_123", "GET /api/sessions", "PUT /api/sessions/93/webhook"}
	if p := s.paths(); !slices.Equal(p, want) {
		t.Errorf("requests %v, want %v", p, want)
	}
	reqs := s.requests()
	put := reqs[len(reqs)-1]
	var sent Webhook
	if err := json.Unmarshal(put.Body, &sent); err != nil || sent.URL != in.URL || sent.Secret != in.Secret ||
		!slices.Equal(sent.Events, in.Events) {
		t.Errorf("body %s (%v)", put.Body, err)
	}
	if put.APIKey != testCreds.APIKey || !strings.HasPrefix(put.ContentType, "application/json") {
		t.Errorf("X-API-Key %q, Content-Type %q", put.APIKey, put.ContentType)
	}
}

func TestSetWebhookSparseAnswer(t *testing.T) {
	s := webhookFake(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"success": true, "message": "Webhook actualizado"})
	})
	in := Webhook{URL: "https://gw.example.test/webhooks/inbox-hub", Events: []string{"message.received"}}
	got, err := s.client().SetWebhook(context.Background(), "abc_123", in)
	if err != nil || got.SessionID != "abc_123" || got.URL != in.URL || !slices.Equal(got.Events, in.Events) {
		t.Errorf("SetWebhook = %+v, %v", got, err)
	}
	// An omitted secret is not sent as "".
	reqs := s.requests()
	if body := string(reqs[len(reqs)-1].Body); strings.Contains(body, "webhookSecret") {
		t.Errorf("body %s sends an empty secret", body)
	}
}

func TestSetWebhookRetriedAsIdempotent(t *testing.T) {
	s := webhookFake(t, func(n int32, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			writeJSON(w, 503, fail("SERVICE_UNAVAILABLE", "Servicio no disponible"))
			return
		}
		writeJSON(w, 200, ok(map[string]any{"sessionId": "abc_123", "webhookUrl": "https://gw.example.test/h"}))
	})
	if _, err := s.client().SetWebhook(context.Background(), "abc_123", Webhook{URL: "https://gw.example.test/h"}); err != nil {
		t.Fatal(err)
	}
	if n := s.count("PUT /api/sessions/93/webhook"); n != 2 {
		t.Errorf("%d PUTs, want 2 (a 503 on a PUT is retried)", n)
	}
}

func TestSetWebhookErrorKeepsSecretOut(t *testing.T) {
	s := webhookFake(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		writeJSON(w, 400, fail("VALIDATION_ERROR", "webhookSecret inválido: "+body["webhookSecret"].(string)))
	})
	_, err := s.client().SetWebhook(context.Background(), "abc_123",
		Webhook{URL: "https://gw.example.test/h", Secret: testWebhookSecret})
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Fatalf("error %v, want a 400 *Error", err)
	}
	if strings.Contains(err.Error(), testWebhookSecret) || strings.Contains(e.Message, testWebhookSecret) {
		t.Errorf("the secret leaked into the error: %v", err)
	}
	if n := s.count("PUT /api/sessions/93/webhook"); n != 1 {
		t.Errorf("%d PUTs, want 1 (a 400 is not retried)", n)
	}
}

func TestSetWebhookUnknownSession(t *testing.T) {
	s := webhookFake(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		t.Error("PUT sent for an unknown session")
	})
	_, err := s.client().SetWebhook(context.Background(), "nope_999", Webhook{URL: "https://gw.example.test/h"})
	if !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("error %v, want ErrSessionNotFound", err)
	}
}
