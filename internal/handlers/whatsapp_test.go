package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/idempotency"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// fakeWhatsApp is the upstream as the WhatsApp handlers see it; it records every call.
type fakeWhatsApp struct {
	mu    sync.Mutex
	calls []string

	status     upstream.SessionStatus
	statusErr  error
	connect    upstream.SessionStatus
	connectErr error
	qr         upstream.QR
	qrErr      error
	contacts   upstream.Page[upstream.Contact]
	chats      upstream.Page[upstream.Chat]
	messages   upstream.Page[upstream.Message]
	listErr    error
	sent       upstream.Message
	sendErr    error

	params             upstream.ListParams
	chatID, to, text   string
	sessionID          string
	sessionIDsReceived []string
}

func (f *fakeWhatsApp) record(name, sessionID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.sessionIDsReceived = append(f.sessionIDsReceived, sessionID)
}

func (f *fakeWhatsApp) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeWhatsApp) SessionStatus(_ context.Context, id string) (upstream.SessionStatus, error) {
	f.record("SessionStatus", id)
	return f.status, f.statusErr
}

func (f *fakeWhatsApp) Connect(_ context.Context, id string) (upstream.SessionStatus, error) {
	f.record("Connect", id)
	return f.connect, f.connectErr
}

func (f *fakeWhatsApp) QR(_ context.Context, id string) (upstream.QR, error) {
	f.record("QR", id)
	return f.qr, f.qrErr
}

func (f *fakeWhatsApp) Contacts(_ context.Context, id string, p upstream.ListParams) (upstream.Page[upstream.Contact], error) {
	f.record("Contacts", id)
	f.params = p
	return f.contacts, f.listErr
}

func (f *fakeWhatsApp) Chats(_ context.Context, id string, p upstream.ListParams) (upstream.Page[upstream.Chat], error) {
	f.record("Chats", id)
	f.params = p
	return f.chats, f.listErr
}

func (f *fakeWhatsApp) ChatMessages(_ context.Context, id, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error) {
	f.record("ChatMessages", id)
	f.params, f.chatID = p, chatID
	return f.messages, f.listErr
}

func (f *fakeWhatsApp) SendText(_ context.Context, id, to, text string) (upstream.Message, error) {
	f.record("SendText", id)
	f.to, f.text = to, text
	return f.sent, f.sendErr
}

// The fake implements every interface the routes declare, as *upstream.Client does.
var (
	_ SessionConnector = (*fakeWhatsApp)(nil)
	_ QRSource         = (*fakeWhatsApp)(nil)
	_ ContactSource    = (*fakeWhatsApp)(nil)
	_ ChatSource       = (*fakeWhatsApp)(nil)
	_ MessageSource    = (*fakeWhatsApp)(nil)
	_ MessageSender    = (*fakeWhatsApp)(nil)
	_ SessionConnector = (*upstream.Client)(nil)
	_ QRSource         = (*upstream.Client)(nil)
	_ ContactSource    = (*upstream.Client)(nil)
	_ ChatSource       = (*upstream.Client)(nil)
	_ MessageSource    = (*upstream.Client)(nil)
	_ MessageSender    = (*upstream.Client)(nil)
	_ IdempotencyStore = (*idempotency.Store)(nil)
)

// fakeIdempotency answers Do with a fixed error, or runs fn.
type fakeIdempotency struct{ err error }

func (f fakeIdempotency) Do(ctx context.Context, _, _, _ string, fn func(context.Context) (idempotency.Response, error)) (idempotency.Response, bool, error) {
	if f.err != nil {
		return idempotency.Response{}, false, f.err
	}
	r, err := fn(ctx)
	return r, false, err
}

func newWhatsAppRouter(t *testing.T, f *fakeWhatsApp, idem IdempotencyStore) *gin.Engine {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := NewRouter(Deps{
		Logger: slog.New(slog.DiscardHandler), HTTPMetrics: middleware.NewHTTPMetrics(reg),
		MaxBodyBytes: 16 << 10, Readiness: &Readiness{}, Version: "test",
		CORS:      func(c *gin.Context) { c.Next() },
		Require:   func(string) gin.HandlerFunc { return func(c *gin.Context) { c.Next() } },
		Connector: f, QRCodes: f, Contacts: f, Chats: f, Messages: f, Sender: f, Idempotency: idem,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type recorded struct {
	status int
	header http.Header
	body   []byte
}

func serve(h http.Handler, method, target string, body io.Reader, headers map[string]string) recorded {
	req := httptest.NewRequest(method, target, body)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return recorded{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (r recorded) problem(t *testing.T) problem.Details {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want problem+json; body %s", ct, r.body)
	}
	var d problem.Details
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatalf("problem body: %v: %s", err, r.body)
	}
	return d
}

// tinyPNG is a valid PNG signature followed by junk: the gateway checks the signature only.
var tinyPNG = append([]byte("\x89PNG\r\n\x1a\n"), []byte("IHDR-rest-of-image")...)

func TestQRAnswers(t *testing.T) {
	goodURL := pngDataURLPrefix + base64.StdEncoding.EncodeToString(tinyPNG)
	expires := time.Date(2026, 11, 28, 10, 1, 0, 0, time.FixedZone("CET", 3600))
	cases := []struct {
		name       string
		f          *fakeWhatsApp
		accept     string
		status     int
		code       string
		retryAfter string
		calls      string
	}{
		{"json", &fakeWhatsApp{qr: upstream.QR{Code: goodURL, ExpiresAt: expires}}, "", 200, "", "", "QR"},
		{"png", &fakeWhatsApp{qr: upstream.QR{Code: goodURL}}, "image/png", 200, "", "", "QR"},
		{"png preferred by q", &fakeWhatsApp{qr: upstream.QR{Code: goodURL}}, "application/json;q=0.5, image/png", 200, "", "", "QR"},
		{"unpadded base64", &fakeWhatsApp{qr: upstream.QR{Code: strings.TrimRight(goodURL, "=")}}, "", 200, "", "", "QR"},
		{"not a data URL", &fakeWhatsApp{qr: upstream.QR{Code: "https://evil.example/qr.png"}}, "", 502, problem.CodeUpstreamError, "", "QR"},
		{"jpeg data URL", &fakeWhatsApp{qr: upstream.QR{Code: "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(tinyPNG)}}, "", 502, problem.CodeUpstreamError, "", "QR"},
		{"bad base64", &fakeWhatsApp{qr: upstream.QR{Code: pngDataURLPrefix + "!!!not base64"}}, "", 502, problem.CodeUpstreamError, "", "QR"},
		{"not a PNG", &fakeWhatsApp{qr: upstream.QR{Code: pngDataURLPrefix + base64.StdEncoding.EncodeToString([]byte("<svg/>"))}}, "", 502, problem.CodeUpstreamError, "", "QR"},
		{"connecting", &fakeWhatsApp{qrErr: &upstream.Error{Status: 404, Code: "QR_NOT_READY"}, status: upstream.SessionStatus{Status: "connecting"}}, "", 404, problem.CodeQRNotReady, "2", "QR,SessionStatus"},
		{"disconnected", &fakeWhatsApp{qrErr: &upstream.Error{Status: 404}, status: upstream.SessionStatus{Status: "disconnected"}}, "", 404, problem.CodeQRNotReady, "2", "QR,SessionStatus"},
		{"connected", &fakeWhatsApp{qrErr: &upstream.Error{Status: 404}, status: upstream.SessionStatus{Status: "CONNECTED"}}, "", 409, problem.CodeSessionAlreadyConnected, "", "QR,SessionStatus"},
		{"unknown session", &fakeWhatsApp{qrErr: &upstream.Error{Status: 404, Code: "SESSION_NOT_FOUND"}}, "", 404, problem.CodeSessionNotFound, "", "QR"},
		{"generation error", &fakeWhatsApp{qrErr: &upstream.Error{Status: 500, Code: "QR_GENERATION_ERROR"}}, "", 503, problem.CodeUpstreamUnavailable, "5", "QR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			r := serve(newWhatsAppRouter(t, f, nil), http.MethodGet, "/v1/sessions/sales_team/qr", nil, map[string]string{"Accept": tc.accept})
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := strings.Join(f.Calls(), ","); got != tc.calls {
				t.Errorf("upstream calls = %s, want %s", got, tc.calls)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
			}
			if tc.code != "" {
				if d := r.problem(t); d.Code != tc.code {
					t.Errorf("code = %s, want %s", d.Code, tc.code)
				}
				if got := r.header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
				}
				return
			}
			if strings.Contains(tc.accept, "image/png") {
				if r.header.Get("Content-Type") != "image/png" || !bytes.Equal(r.body, tinyPNG) {
					t.Errorf("PNG answer: %s, %q", r.header.Get("Content-Type"), r.body)
				}
				return
			}
			var a QRAnswer
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatal(err)
			}
			if a.Data.Code != goodURL {
				t.Errorf("code = %q, want the canonical data URL", a.Data.Code)
			}
			if tc.name == "json" && (a.Data.ExpiresAt == nil || !a.Data.ExpiresAt.Equal(expires) || a.Data.ExpiresAt.Location() != time.UTC) {
				t.Errorf("expiresAt = %v, want %v in UTC", a.Data.ExpiresAt, expires)
			}
		})
	}
}

func TestPrefersPNG(t *testing.T) {
	cases := map[string]bool{
		"":                                  false,
		"*/*":                               false,
		"application/json":                  false,
		"image/png":                         true,
		"image/*":                           true,
		"image/png;q=0":                     false,
		"image/png, application/json":       false,
		"application/json;q=0.9, image/png": true,
		"image/png;q=0.4, */*;q=0.5":        false,
		"image/webp, image/png, */*;q=0.8":  true,
		"text/html":                         false,
		"image/png;q=abc":                   false,
		"garbage;;;":                        false,
	}
	for accept, want := range cases {
		if got := prefersPNG([]string{accept}); got != want {
			t.Errorf("prefersPNG(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestConnectAnswers(t *testing.T) {
	cases := []struct {
		name   string
		f      *fakeWhatsApp
		status int
		want   string // session status or problem code
		calls  string
	}{
		{"disconnected", &fakeWhatsApp{status: upstream.SessionStatus{Status: "disconnected", PhoneNumber: "34600111222"}, connect: upstream.SessionStatus{Status: "connecting"}}, 202, SessionConnecting, "SessionStatus,Connect"},
		{"no status in the answer", &fakeWhatsApp{status: upstream.SessionStatus{Status: "error"}}, 202, SessionConnecting, "SessionStatus,Connect"},
		{"showing a QR", &fakeWhatsApp{status: upstream.SessionStatus{Status: "Qr_Code", HasQR: true}, connect: upstream.SessionStatus{Status: "Qr_Code"}}, 202, SessionQRPending, "SessionStatus,Connect"},
		{"already connected", &fakeWhatsApp{status: upstream.SessionStatus{Status: "connected"}}, 409, problem.CodeSessionAlreadyConnected, "SessionStatus"},
		{"connected meanwhile", &fakeWhatsApp{status: upstream.SessionStatus{Status: "disconnected"}, connect: upstream.SessionStatus{Status: "open"}}, 409, problem.CodeSessionAlreadyConnected, "SessionStatus,Connect"},
		{"connection error", &fakeWhatsApp{status: upstream.SessionStatus{Status: "disconnected"}, connectErr: &upstream.Error{Status: 500, Code: "CONNECTION_ERROR"}}, 503, problem.CodeUpstreamUnavailable, "SessionStatus,Connect"},
		{"unknown session", &fakeWhatsApp{statusErr: &upstream.Error{Status: 404, Code: "SESSION_NOT_FOUND"}}, 404, problem.CodeSessionNotFound, "SessionStatus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			r := serve(newWhatsAppRouter(t, f, nil), http.MethodPost, "/v1/sessions/support_desk/connect", nil, nil)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := strings.Join(f.Calls(), ","); got != tc.calls {
				t.Errorf("upstream calls = %s, want %s", got, tc.calls)
			}
			if r.status != 202 {
				if d := r.problem(t); d.Code != tc.want {
					t.Errorf("code = %s, want %s", d.Code, tc.want)
				}
				return
			}
			if loc := r.header.Get("Location"); loc != "/v1/sessions/support_desk/qr" {
				t.Errorf("Location = %q", loc)
			}
			var a SessionAnswer
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatal(err)
			}
			if a.Data.SessionID != "support_desk" || a.Data.Status != tc.want || a.Data.PhoneNumber != f.status.PhoneNumber {
				t.Errorf("session = %+v, want status %s", a.Data, tc.want)
			}
		})
	}
}

func TestListParams(t *testing.T) {
	cases := []struct {
		query string
		want  upstream.ListParams // zero: 400
		field string              // the field a 400 names
	}{
		{"", upstream.ListParams{Page: 1, Limit: 50}, ""},
		{"?page=3&limit=100", upstream.ListParams{Page: 3, Limit: 100}, ""},
		{"?page=100000&limit=1", upstream.ListParams{Page: 100000, Limit: 1}, ""},
		{"?search=Luc%C3%ADa%20M", upstream.ListParams{Page: 1, Limit: 50, Search: "Lucía M"}, ""},
		{"?search=" + strings.Repeat("%C3%B1", 100), upstream.ListParams{Page: 1, Limit: 50, Search: strings.Repeat("ñ", 100)}, ""},
		{"?limit=0", upstream.ListParams{}, "limit"},
		{"?limit=101", upstream.ListParams{}, "limit"},
		{"?limit=1e3", upstream.ListParams{}, "limit"},
		{"?limit=+5", upstream.ListParams{}, "limit"},
		{"?limit=%205", upstream.ListParams{}, "limit"},
		{"?limit=", upstream.ListParams{}, "limit"},
		{"?limit=0x10", upstream.ListParams{}, "limit"},
		{"?page=0", upstream.ListParams{}, "page"},
		{"?page=-1", upstream.ListParams{}, "page"},
		{"?page=1.5", upstream.ListParams{}, "page"},
		{"?page=100001", upstream.ListParams{}, "page"},
		{"?page=99999999999999999999", upstream.ListParams{}, "page"},
		{"?page=%D9%A3", upstream.ListParams{}, "page"}, // Arabic-Indic three
		{"?page=1&page=2", upstream.ListParams{}, "page"},
		{"?search=" + strings.Repeat("a", 101), upstream.ListParams{}, "search"},
		{"?search=a%00b", upstream.ListParams{}, "search"},
		{"?search=a%0Ab", upstream.ListParams{}, "search"},
		{"?search=%FF", upstream.ListParams{}, "search"},
		{"?sort=name", upstream.ListParams{}, "sort"},
		{"?Page=1", upstream.ListParams{}, "Page"},
		{"?page=%zz", upstream.ListParams{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			f := &fakeWhatsApp{}
			r := serve(newWhatsAppRouter(t, f, nil), http.MethodGet, "/v1/sessions/demo_session/contacts"+tc.query, nil, nil)
			if tc.want != (upstream.ListParams{}) {
				if r.status != 200 || f.params != tc.want {
					t.Fatalf("status %d, params %+v, want 200 and %+v: %s", r.status, f.params, tc.want, r.body)
				}
				return
			}
			if r.status != 400 || len(f.Calls()) != 0 {
				t.Fatalf("status %d after %v upstream calls, want 400 and none: %s", r.status, f.Calls(), r.body)
			}
			d := r.problem(t)
			if tc.field != "" && (len(d.Errors) == 0 || d.Errors[0].Field != tc.field) {
				t.Errorf("errors = %+v, want one naming %s", d.Errors, tc.field)
			}
		})
	}
	// The other lists: their own defaults, no search.
	f := &fakeWhatsApp{}
	h := newWhatsAppRouter(t, f, nil)
	if r := serve(h, http.MethodGet, "/v1/sessions/demo_session/chats", nil, nil); r.status != 200 || f.params != (upstream.ListParams{Page: 1, Limit: 20}) {
		t.Errorf("chats: %d %+v", r.status, f.params)
	}
	if r := serve(h, http.MethodGet, "/v1/sessions/demo_session/chats?search=x", nil, nil); r.status != 400 {
		t.Errorf("chats with search: %d", r.status)
	}
	if r := serve(h, http.MethodGet, "/v1/sessions/demo_session/chats/34600111222@c.us/messages?page=2", nil, nil); r.status != 200 ||
		f.params != (upstream.ListParams{Page: 2, Limit: 50}) || f.chatID != "34600111222@c.us" {
		t.Errorf("messages: %d %+v %s", r.status, f.params, f.chatID)
	}
}

func TestChatIDPattern(t *testing.T) {
	good := []string{"34657032985@s.whatsapp.net", "34657032985:71@s.whatsapp.net", "120363012345678901@g.us",
		"34600111222-1500000000@g.us", "123456789012345@lid", "34600111222@c.us", "status@broadcast", "1203630@newsletter"}
	bad := []string{"", "34657032985", "@s.whatsapp.net", "34657032985@evil.com", "a/b@g.us", "..@lid/x", "346 57@lid",
		strings.Repeat("1", 65) + "@lid", "34657032985@s.whatsapp.net\x00", "3465@S.WHATSAPP.NET", "ñ@lid", "34@lid@lid"}
	for _, id := range good {
		if !chatIDPattern.MatchString(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range bad {
		if chatIDPattern.MatchString(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestPageMeta(t *testing.T) {
	n := func(v int) *int { return &v }
	asked := upstream.ListParams{Page: 2, Limit: 50}
	cases := []struct {
		name string
		page upstream.Page[int]
		want PageMeta
	}{
		{"upstream pagination", upstream.Page[int]{Items: []int{1}, Total: 120, Page: 2, Limit: 50, Pages: 3}, PageMeta{2, 50, n(120), n(3), nil}},
		{"pages computed", upstream.Page[int]{Items: []int{1}, Total: 101, Page: 2, Limit: 50}, PageMeta{2, 50, n(101), n(3), nil}},
		{"unknown total", upstream.Page[int]{Items: []int{1}}, PageMeta{2, 50, nil, nil, nil}},
		{"empty first page", upstream.Page[int]{Items: []int{}, Page: 1, Limit: 20}, PageMeta{1, 20, n(0), n(0), nil}},
	}
	for _, tc := range cases {
		got := pageMeta(tc.page, asked)
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(tc.want)
		if string(gj) != string(wj) {
			t.Errorf("%s: meta = %s, want %s", tc.name, gj, wj)
		}
	}
}

// TestNormalizeItems pins the schema the list routes answer (the sync items' and the webhook
// events', package crm).
func TestNormalizeItems(t *testing.T) {
	at := time.Date(2025, 11, 7, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	contacts := []struct {
		in   upstream.Contact
		want crm.Contact
	}{
		{upstream.Contact{ID: "34657032985@s.whatsapp.net", Name: "Lucía", Notify: "Lu", IsWAContact: true},
			crm.Contact{ID: "34657032985@s.whatsapp.net", IDKind: crm.IDKindPhone, Type: "person", Phone: "34657032985", Name: "Lucía", PushName: "Lu", IsWhatsApp: true}},
		{upstream.Contact{ID: "34657032985:12@s.whatsapp.net", VerifiedName: "Clínica Sol", Notify: "Sol"},
			crm.Contact{ID: "34657032985@s.whatsapp.net", IDKind: crm.IDKindPhone, Type: "person", Phone: "34657032985", PushName: "Sol", VerifiedName: "Clínica Sol"}},
		{upstream.Contact{ID: "123456789012345@lid", Notify: "Pepe"},
			crm.Contact{ID: "123456789012345@lid", IDKind: crm.IDKindLID, Type: "person", PushName: "Pepe"}},
		{upstream.Contact{ID: "120363012345678901@g.us", Name: "Equipo"},
			crm.Contact{ID: "120363012345678901@g.us", IDKind: crm.IDKindGroup, Type: "group", Name: "Equipo"}},
		{upstream.Contact{ID: "34600111222@c.us"},
			crm.Contact{ID: "34600111222@s.whatsapp.net", IDKind: crm.IDKindPhone, Type: "person", Phone: "34600111222"}},
	}
	for _, tc := range contacts {
		if got := crm.NormalizeContact(tc.in); got != tc.want {
			t.Errorf("NormalizeContact(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	ch := crm.NormalizeChat(upstream.Chat{ChatID: "120363@g.us", Name: "Equipo", UnreadCount: 2, MessageCount: 9,
		LastMessage: &upstream.LastMessage{Body: "hola", Timestamp: at, FromMe: true}})
	if ch.Type != "group" || ch.LastMessage == nil || ch.LastMessage.Text != "hola" || ch.LastMessage.At == nil || ch.LastMessage.At.Location() != time.UTC ||
		!ch.LastMessage.At.Equal(at) || !ch.LastMessage.FromMe || ch.UnreadCount != 2 || ch.MessageCount != 9 {
		t.Errorf("NormalizeChat = %+v", ch)
	}
	if b, _ := json.Marshal(crm.NormalizeChat(upstream.Chat{ChatID: "1@lid"})); strings.Contains(string(b), `"lastMessage"`) {
		t.Errorf("a chat without last message = %s", b)
	}
	m := crm.NormalizeMessage("", upstream.Message{ID: "77", WhatsappMessageID: "3EB0AB", ChatID: "c", From: "f", To: "t",
		Type: "Image", Body: "cap", Timestamp: at, Status: "DELIVERED"})
	if m.ID != "3EB0AB" || m.Type != "image" || m.Status != "delivered" || m.Text != "cap" || !m.Timestamp.Equal(at) {
		t.Errorf("NormalizeMessage = %+v", m)
	}
	if m := crm.NormalizeMessage("", upstream.Message{ID: "77"}); m.ID != "upstream:77" || m.Timestamp != nil {
		t.Errorf("NormalizeMessage without whatsappMessageId = %+v", m)
	}
	b, _ := json.Marshal(crm.NormalizeMessage("", upstream.Message{Timestamp: at}))
	if !strings.Contains(string(b), `"timestamp":"2025-11-07T12:00:00Z"`) {
		t.Errorf("message time not RFC 3339 UTC: %s", b)
	}
}

// TestNormalizeRecipient is the phone number and JID normalisation table of the send route.
func TestNormalizeRecipient(t *testing.T) {
	cases := []struct{ in, want string }{
		{"+34 657 03 29 85", "34657032985@s.whatsapp.net"},
		{"+34657032985", "34657032985@s.whatsapp.net"},
		{"34657032985", "34657032985@s.whatsapp.net"},
		{"0034 657 032 985", "34657032985@s.whatsapp.net"},
		{"0034657032985", "34657032985@s.whatsapp.net"},
		{"(+34) 657-03-29-85", "34657032985@s.whatsapp.net"},
		{"+34.657.032.985", "34657032985@s.whatsapp.net"},
		{"+1 (415) 555-2671", "14155552671@s.whatsapp.net"},
		{"+44 7700 900123", "447700900123@s.whatsapp.net"},
		{"+52 1 55 1234 5678", "5215512345678@s.whatsapp.net"},
		{"  +34 657032985  ", "34657032985@s.whatsapp.net"},
		{"12345678", "12345678@s.whatsapp.net"},
		{"123456789012345", "123456789012345@s.whatsapp.net"},
		{"34657032985@s.whatsapp.net", "34657032985@s.whatsapp.net"},
		{"34657032985:71@s.whatsapp.net", "34657032985@s.whatsapp.net"},
		{"34657032985@S.WhatsApp.Net", "34657032985@s.whatsapp.net"},
		{"34657032985@c.us", "34657032985@s.whatsapp.net"},
		{"120363012345678901@g.us", "120363012345678901@g.us"},
		{"34600111222-1500000000@g.us", "34600111222-1500000000@g.us"},
		{"123456789012345@lid", "123456789012345@lid"},
		{"34657032985:@s.whatsapp.net", "34657032985@s.whatsapp.net"},
		{"34657032985@C.US", "34657032985@s.whatsapp.net"},

		{"", ""},
		{"   ", ""},
		{"1234567", ""},          // too short
		{"1234567890123456", ""}, // too long
		{"0657032985", ""},       // national format: no country code
		{"+0034657032985", ""},   // + and 00 together
		{"00", ""},
		{"++34657032985", ""},
		{"34+657032985", ""},
		{"34 657 O32 985", ""},  // a letter O
		{"+34 657 ٠٣٢ ٩٨٥", ""}, // Arabic-Indic digits
		{"+34_657032985", ""},
		{"+34/657032985", ""},
		{"tel:+34657032985", ""},
		{"34657032985\x00", ""},
		{"34657032985@", ""},
		{"@s.whatsapp.net", ""},
		{"abc@s.whatsapp.net", ""},
		{"0657032985@s.whatsapp.net", ""},
		{"34657032985@whatsapp.net", ""},
		{"34657032985@g.us.evil.com", ""},
		{"status@broadcast", ""},
		{"1203630@newsletter", ""},
		{"abc@lid", ""},
		{"12-ab@g.us", ""},
		{"34657032985@lid@lid", ""},
		{strings.Repeat("1", 65), ""},
		{"123456789012345:3@lid", ""}, // a device of a linked id is not a recipient
		{"123456789012345:@lid", ""},
		{"120363012345678901:2@g.us", ""},
		{"..@s.whatsapp.net", ""},
		{"３４６５７０３２９８５@s.whatsapp.net", ""}, // fullwidth digits
		{"٣٤٦٥٧٠٣٢٩٨٥@c.us", ""},           // Arabic-Indic digits
		{"34657032985@s.whatsapp.net\u202e", ""},
	}
	for _, tc := range cases {
		got, err := NormalizeRecipient(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("NormalizeRecipient(%q) = %q, want an error", tc.in, got)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("NormalizeRecipient(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// upstreamJID is what the upstream (and the simulator) accept as a recipient.
var upstreamJID = regexp.MustCompile(`^([1-9][0-9]{7,14}@s\.whatsapp\.net|[0-9]{5,20}(-[0-9]{5,20})?@g\.us|[0-9]{5,20}@lid)$`)

// FuzzNormalizeRecipient: never a panic; whatever is accepted is a JID the upstream takes, and
// normalising it again changes nothing.
func FuzzNormalizeRecipient(f *testing.F) {
	for _, s := range []string{"+34 657 03 29 85", "0034657032985", "34657032985:7@c.us", "1-2@g.us", "1@lid", "(+1) 415.555-2671", "++", "00", "\x00@lid"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		jid, err := NormalizeRecipient(in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if !upstreamJID.MatchString(jid) {
			t.Fatalf("NormalizeRecipient(%q) = %q, not a JID the upstream takes", in, jid)
		}
		if again, err := NormalizeRecipient(jid); err != nil || again != jid {
			t.Fatalf("normalising %q again = %q, %v", jid, again, err)
		}
	})
}

// FuzzDecodePNGDataURL: the QR data URL parser never panics and accepts only PNG bytes.
func FuzzDecodePNGDataURL(f *testing.F) {
	f.Add(pngDataURLPrefix + base64.StdEncoding.EncodeToString(tinyPNG))
	f.Add("data:image/png;base64,")
	f.Add("DATA:IMAGE/PNG;BASE64,iVBORw0KGgo=")
	f.Fuzz(func(t *testing.T, s string) {
		png, err := decodePNGDataURL(s)
		if err == nil && !bytes.HasPrefix(png, pngSignature) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestSendValidation(t *testing.T) {
	ctJSON := "application/json"
	cases := []struct {
		name        string
		body        string
		contentType string
		headers     map[string]string
		status      int
		field       string
	}{
		{"ok", `{"to": "+34 657 03 29 85", "text": "Hola"}`, ctJSON, nil, 201, ""},
		{"ok with charset", `{"text": "Hola", "to": "34657032985@c.us"}`, "application/json; charset=UTF-8", nil, 201, ""},
		{"no content type", `{"to": "34657032985", "text": "Hola"}`, "", nil, 415, ""},
		{"text/plain", `{"to": "34657032985", "text": "Hola"}`, "text/plain", nil, 415, ""},
		{"form", `to=34657032985&text=Hola`, "application/x-www-form-urlencoded", nil, 415, ""},
		{"latin1", `{"to": "34657032985", "text": "Hola"}`, "application/json; charset=latin1", nil, 415, ""},
		{"json-ish", `{"to": "34657032985", "text": "Hola"}`, "application/json-patch+json", nil, 415, ""},
		{"empty", ``, ctJSON, nil, 400, ""},
		{"null", `null`, ctJSON, nil, 400, "to"},
		{"array", `[]`, ctJSON, nil, 400, ""},
		{"string", `"hola"`, ctJSON, nil, 400, ""},
		{"truncated", `{"to": "34657032985", "text": "Ho`, ctJSON, nil, 400, ""},
		{"syntax", `{"to": 34657032985,}`, ctJSON, nil, 400, ""},
		{"number as to", `{"to": 34657032985, "text": "Hola"}`, ctJSON, nil, 400, "to"},
		{"unknown field", `{"to": "34657032985", "text": "Hola", "media": {"url": "x"}}`, ctJSON, nil, 400, "media"},
		{"two values", `{"to": "34657032985", "text": "Hola"}{"to": "1"}`, ctJSON, nil, 400, ""},
		{"duplicate member", `{"to": "34657032985", "text": "Hola", "to": "34600111222"}`, ctJSON, nil, 400, "to"},
		{"case variant member", `{"to": "34657032985", "text": "Hola", "TO": "34600111222"}`, ctJSON, nil, 400, "TO"},
		{"case variant alone", `{"TO": "34657032985", "text": "Hola"}`, ctJSON, nil, 400, "TO"},
		{"escaped duplicate", `{"to": "34657032985", "text": "Hola", "t\u0065xt": "Adiós"}`, ctJSON, nil, 400, "text"},
		{"invalid UTF-8", "{\"to\": \"34657032985\", \"text\": \"\xff\"}", ctJSON, nil, 400, ""},
		{"missing to", `{"text": "Hola"}`, ctJSON, nil, 400, "to"},
		{"bad phone", `{"to": "12345", "text": "Hola"}`, ctJSON, nil, 400, "to"},
		{"missing text", `{"to": "34657032985"}`, ctJSON, nil, 400, "text"},
		{"blank text", `{"to": "34657032985", "text": " \n\t "}`, ctJSON, nil, 400, "text"},
		{"long text", `{"to": "34657032985", "text": "` + strings.Repeat("a", 4097) + `"}`, ctJSON, nil, 400, "text"},
		{"longest text", `{"to": "34657032985", "text": "` + strings.Repeat("ñ", 4096) + `"}`, ctJSON, nil, 201, ""},
		{"NUL in text", `{"to": "34657032985", "text": "a\u0000b"}`, ctJSON, nil, 400, "text"},
		{"too large", `{"to": "34657032985", "text": "` + strings.Repeat("a", 20<<10) + `"}`, ctJSON, nil, 413, ""},
		{"query", `{"to": "34657032985", "text": "Hola"}`, ctJSON, nil, 400, ""},
		{"long key", `{"to": "34657032985", "text": "Hola"}`, ctJSON, map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, 400, HeaderIdempotencyKey},
		{"non-ASCII key", `{"to": "34657032985", "text": "Hola"}`, ctJSON, map[string]string{"Idempotency-Key": "clé"}, 400, HeaderIdempotencyKey},
		{"good key", `{"to": "34657032985", "text": "Hola"}`, ctJSON, map[string]string{"Idempotency-Key": "8f14e45f-ceea-467f-a0e6-0a1b2c3d4e5f"}, 201, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeWhatsApp{sent: upstream.Message{ID: "9", WhatsappMessageID: "3EB0", Body: "Hola", Status: "PENDING"}}
			h := newWhatsAppRouter(t, f, fakeIdempotency{})
			headers := map[string]string{"Content-Type": tc.contentType}
			for k, v := range tc.headers {
				headers[k] = v
			}
			target := "/v1/sessions/demo_session/messages"
			if tc.name == "query" {
				target += "?dryRun=true"
			}
			r := serve(h, http.MethodPost, target, strings.NewReader(tc.body), headers)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 201 {
				if calls := f.Calls(); len(calls) != 0 {
					t.Errorf("upstream called: %v", calls)
				}
				d := r.problem(t)
				if tc.field != "" && (len(d.Errors) == 0 || d.Errors[0].Field != tc.field) {
					t.Errorf("errors = %+v, want one naming %s", d.Errors, tc.field)
				}
				return
			}
			var a MessageAnswer
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatal(err)
			}
			if a.Data.ID != "3EB0" || a.Data.To != f.to || a.Data.ChatID != f.to || !a.Data.FromMe || a.Data.Status != "pending" || a.Data.Type != "text" {
				t.Errorf("answer = %+v (sent to %s)", a.Data, f.to)
			}
		})
	}
}

func TestSendIdempotencyFailures(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{idempotency.ErrKeyReused, 409, problem.CodeConflict, ""},
		{idempotency.ErrInProgress, 409, problem.CodeConflict, "1"},
		{errors.Join(idempotency.ErrUnavailable, errors.New("dial tcp: refused")), 503, problem.CodeUpstreamUnavailable, "5"},
	}
	for _, tc := range cases {
		f := &fakeWhatsApp{}
		h := newWhatsAppRouter(t, f, fakeIdempotency{err: tc.err})
		r := serve(h, http.MethodPost, "/v1/sessions/demo_session/messages", strings.NewReader(`{"to":"34657032985","text":"x"}`),
			map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k1"})
		if r.status != tc.status || r.header.Get("Retry-After") != tc.retryAfter {
			t.Errorf("%v: %d (Retry-After %q), want %d (%q): %s", tc.err, r.status, r.header.Get("Retry-After"), tc.status, tc.retryAfter, r.body)
			continue
		}
		if d := r.problem(t); d.Code != tc.code || strings.Contains(string(r.body), "dial tcp") {
			t.Errorf("%v: body %s", tc.err, r.body)
		}
		if len(f.Calls()) != 0 {
			t.Errorf("%v: upstream called", tc.err)
		}
	}
	// Without a key the store is not asked.
	f := &fakeWhatsApp{}
	h := newWhatsAppRouter(t, f, fakeIdempotency{err: idempotency.ErrUnavailable})
	r := serve(h, http.MethodPost, "/v1/sessions/demo_session/messages", strings.NewReader(`{"to":"34657032985","text":"x"}`),
		map[string]string{"Content-Type": "application/json"})
	if r.status != 201 {
		t.Errorf("send without a key = %d: %s", r.status, r.body)
	}
}

func TestWhatsAppRoutesRejectBadIDs(t *testing.T) {
	f := &fakeWhatsApp{}
	h := newWhatsAppRouter(t, f, nil)
	for _, target := range []string{
		"/v1/sessions/ab/contacts", "/v1/sessions/" + strings.Repeat("a", 101) + "/chats", "/v1/sessions/ses%C3%ADon/qr",
		"/v1/sessions/demo%00x/contacts", "/v1/sessions/demo.session/chats", "/v1/sessions/demo_session/chats/..%2F..%2Fx/messages",
		"/v1/sessions/demo_session/chats/34600111222@evil.com/messages", "/v1/sessions/demo_session/chats/%2E%2E/messages",
	} {
		r := serve(h, http.MethodGet, target, nil, nil)
		if r.status < 400 || r.status > 499 {
			t.Errorf("GET %s = %d, want 4xx", target, r.status)
		}
		r.problem(t)
	}
	for _, target := range []string{"/v1/sessions/a$b/connect", "/v1/sessions/a%20b/messages"} {
		if r := serve(h, http.MethodPost, target, strings.NewReader(`{}`), map[string]string{"Content-Type": "application/json"}); r.status != 400 {
			t.Errorf("POST %s = %d, want 400", target, r.status)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("upstream called: %v", calls)
	}
}
