package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// hook is one webhook as the receiver saw it.
type hook struct {
	header  http.Header
	body    []byte
	payload map[string]any
}

func (h hook) event() string { return h.header.Get("X-Webhook-Event") }

// startReceiver runs a webhook receiver that hands every delivery to the returned channel.
func startReceiver(t *testing.T) (string, <-chan hook) {
	t.Helper()
	got := make(chan hook, 512)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := hook{header: r.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &h.payload)
		got <- h
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hooks", got
}

// nextHook waits for a delivery of event, skipping others.
func nextHook(t *testing.T, hooks <-chan hook, event string) hook {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case h := <-hooks:
			if h.event() == event {
				return h
			}
		case <-timeout:
			t.Fatalf("no %s webhook within 3s", event)
		}
	}
}

// verifySignature recomputes the HMAC the way a receiver would.
func verifySignature(t *testing.T, h hook, secret string) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(h.body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := h.header.Get("X-Webhook-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("%s: signature %q, want %q", h.event(), got, want)
	}
}

func dataOf(h hook) map[string]any {
	d, _ := h.payload["data"].(map[string]any)
	return d
}

func TestWebhooks(t *testing.T) {
	const secret = "receiver-secret-0123456789"
	url, hooks := startReceiver(t)
	o := testOptions()
	o.WebhookURL, o.WebhookSecret = url, secret
	s, c := startSim(t, o)

	c.do(http.MethodPost, "/api/messages/demo_session/send", map[string]any{"to": "34600111222@s.whatsapp.net", "message": "hola"}).
		must(t, http.StatusOK, nil)
	sent := nextHook(t, hooks, "message.sent")
	verifySignature(t, sent, secret)
	if sent.header.Get("X-Webhook-Session") != "demo_session" {
		t.Errorf("X-Webhook-Session %q", sent.header.Get("X-Webhook-Session"))
	}
	ms, err := strconv.ParseInt(sent.header.Get("X-Webhook-Timestamp"), 10, 64)
	if err != nil || time.Since(time.UnixMilli(ms)).Abs() > time.Minute {
		t.Errorf("X-Webhook-Timestamp %q is not milliseconds of now", sent.header.Get("X-Webhook-Timestamp"))
	}
	msg, _ := dataOf(sent)["message"].(map[string]any)
	if sent.payload["event"] != "message.sent" || dataOf(sent)["sessionId"] != "demo_session" ||
		msg["content"] != "hola" || !strings.HasPrefix(msg["whatsappMessageId"].(string), "3EB0") {
		t.Errorf("message.sent payload %s", sent.body)
	}

	if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", 2); err != nil {
		t.Fatal(err)
	}
	first, second := nextHook(t, hooks, "message.received"), nextHook(t, hooks, "message.received")
	verifySignature(t, first, secret)
	m1, _ := dataOf(first)["message"].(map[string]any)
	m2, _ := dataOf(second)["message"].(map[string]any)
	if m1["whatsappMessageId"] == m2["whatsappMessageId"] || m1["to"] != "demo_session" || m1["chatId"] != "34600111222@s.whatsapp.net" {
		t.Errorf("message.received payloads %s and %s", first.body, second.body)
	}
	if _, isNumber := m1["timestamp"].(float64); !isNumber {
		t.Errorf("message.received timestamp %v is not unix seconds", m1["timestamp"])
	}

	if err := s.SetSessionStatus("demo_session", "disconnected"); err != nil {
		t.Fatal(err)
	}
	if h := nextHook(t, hooks, "session.disconnected"); dataOf(h)["reason"] == nil {
		t.Errorf("session.disconnected without reason: %s", h.body)
	}
	c.do(http.MethodPost, "/api/sessions/demo_session/connect", nil).must(t, http.StatusOK, nil)
	qr := nextHook(t, hooks, "session.qr")
	verifySignature(t, qr, secret)
	if code, _ := dataOf(qr)["qrCode"].(string); !strings.HasPrefix(code, "data:image/png;base64,") || dataOf(qr)["expiresAt"] == nil {
		t.Errorf("session.qr payload lacks qrCode or expiresAt: %.200s", qr.body)
	}
	if err := s.ScanQR("demo_session"); err != nil {
		t.Fatal(err)
	}
	if h := nextHook(t, hooks, "session.connected"); dataOf(h)["phoneNumber"] == nil {
		t.Errorf("session.connected without phoneNumber: %s", h.body)
	}
	wait.Until(t, time.Second, "webhook counters", func() bool { return s.Counters().WebhooksSent >= 6 })
}

func TestWebhookOfCreatedSession(t *testing.T) {
	defaultURL, defaultHooks := startReceiver(t)
	ownURL, ownHooks := startReceiver(t)
	o := testOptions()
	o.WebhookURL = defaultURL
	s, c := startSim(t, o)
	const secret = "session-secret-abcdef"
	c.do(http.MethodPost, "/api/sessions", map[string]any{"sessionId": "own_hooks", "sessionName": "Own",
		"webhookUrl": ownURL, "webhookSecret": secret, "webhookEvents": []string{"session.connected"}}).
		must(t, http.StatusCreated, nil)
	if err := s.SetSessionStatus("own_hooks", "qr_code"); err != nil { // session.qr is not wanted
		t.Fatal(err)
	}
	if err := s.ScanQR("own_hooks"); err != nil {
		t.Fatal(err)
	}
	var h hook
	select {
	case h = <-ownHooks:
	case <-time.After(3 * time.Second):
		t.Fatal("the session's receiver got nothing")
	}
	if h.event() != "session.connected" {
		t.Fatalf("first event %q, want session.connected alone (session.qr was not asked for)", h.event())
	}
	verifySignature(t, h, secret)
	// One worker delivers in order, so anything sent to the default URL has arrived by now.
	select {
	case other := <-defaultHooks:
		t.Errorf("the default receiver got %s", other.event())
	default:
	}
}

func TestLegacyWebhooks(t *testing.T) {
	url, hooks := startReceiver(t)
	o := testOptions()
	o.WebhookURL, o.LegacyWebhooks = url, true
	s, _ := startSim(t, o)
	if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", 1); err != nil {
		t.Fatal(err)
	}
	h := nextHook(t, hooks, "message")
	d := dataOf(h)
	id, _ := d["id"].(map[string]any)
	if h.payload["sessionId"] != "demo_session" || d["from"] != "34600111222@c.us" || id["_serialized"] == nil ||
		d["fromMe"] != false || h.header.Get("X-Webhook-Signature") != "" {
		t.Errorf("legacy payload %s", h.body)
	}
}

func TestWebhookQueueIsBoundedAndCloseDoesNotHang(t *testing.T) {
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(release)
	o := testOptions()
	o.WebhookURL = stuck.URL
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", webhookQueueSize+50); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("a stuck receiver slowed AddMessages to %v", elapsed)
	}
	if dropped := s.Counters().WebhooksDropped; dropped < 49 {
		t.Errorf("dropped %d deliveries, want at least 49", dropped)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung on a stuck webhook receiver")
	}
	s.Close() // idempotent
}
