package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// The tests of the CRM-facing /v1 WhatsApp routes (connect, QR, contacts, chats, chat messages,
// send) through a whole replica over real HTTP, against the simulator and real Redis. The
// simulator's seeded sessions: demo_session connected, sales_team showing a QR, support_desk
// disconnected.

const (
	jwtSecret   = "v1-tests-hs256-secret-0123456789abcdef"
	jwtIssuer   = "https://crm.example.test"
	jwtAudience = "inboxhub-gateway"
	sendRoute   = "POST /api/messages/{sessionId}/send"
	// v1MaxBody is the body limit of the /v1 test replicas (GATEWAY_MAX_BODY_BYTES).
	v1MaxBody = 64 << 10
)

// v1Env is a simulator and one replica set up for the /v1 routes: bearer JWTs accepted, quick
// retries, and a breaker that does not open while a table injects upstream failures.
type v1Env struct {
	sim *sim.Server
	gw  *gateway
}

func startV1(t testing.TB, extra map[string]string) *v1Env {
	t.Helper()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{QRDelay: time.Hour, Contacts: 60, Chats: 8, MessagesPerChat: 6})
	env := map[string]string{
		"GATEWAY_JWT_HS256_SECRET": jwtSecret,
		"GATEWAY_JWT_ISSUER":       jwtIssuer,
		"GATEWAY_JWT_AUDIENCE":     jwtAudience,
		"GATEWAY_MAX_BODY_BYTES":   "65536",
	}
	for k, v := range extra {
		env[k] = v
	}
	g := startGateway(t, simURL, creds, redistest.URL(t), env,
		app.WithUpstreamOptions(upstream.WithRetry(2, 5*time.Millisecond, 20*time.Millisecond), upstream.WithBreaker(1000, time.Second)))
	// Warm up: the upstream token and the session ids, so that later counts are the routes' own.
	for _, id := range []string{"demo_session", "sales_team", "support_desk"} {
		if a := g.get(t, "/v1/sessions/"+id); a.status != http.StatusOK {
			t.Fatalf("warm-up %s = %d %s", id, a.status, a.body)
		}
	}
	return &v1Env{sim: s, gw: g}
}

// upstreamCalls is every request the simulator has seen, logins included.
func (e *v1Env) upstreamCalls() int64 {
	var n int64
	for _, c := range e.sim.Counters().Requests {
		n += c
	}
	return n
}

func (e *v1Env) sends() int64 { return e.sim.Counters().Requests[sendRoute] }

// token mints a caller JWT; claims override the valid defaults (a nil value deletes a claim).
func token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": "crm-backend", "iss": jwtIssuer, "aud": jwtAudience, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "scope": strings.Join(config.Scopes, " ")}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + s
}

// bearerWithout is a valid JWT holding every scope but one.
func bearerWithout(t testing.TB, scope string) map[string]string {
	var scopes []string
	for _, s := range config.Scopes {
		if s != scope {
			scopes = append(scopes, s)
		}
	}
	return map[string]string{"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"scope": strings.Join(scopes, " ")})}
}

// v1Case is one request and the answer it must get.
type v1Case struct {
	name    string
	method  string
	path    string
	body    string            // sent as application/json unless headers set Content-Type
	headers map[string]string // "" removes a header
	setup   func(e *v1Env)    // runs before the request; faults are cleared after it
	status  int
	code    string // the problem code; "" for a success
	check   func(t *testing.T, a answer)
}

// Answers a refused request gets without any upstream call.
var refusedLocally = map[int]bool{400: true, 401: true, 403: true, 405: true, 413: true, 415: true}

func runV1(t *testing.T, e *v1Env, cases []v1Case) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(e)
				defer e.sim.SetFaults(sim.Faults{})
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			headers := map[string]string{}
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				headers["Content-Type"] = "application/json" // unless the case sets it, or sets it "" to send none
			}
			for k, v := range tc.headers {
				headers[k] = v
			}
			before := e.upstreamCalls()
			a := e.gw.request(t, method, tc.path, body, headers)
			if a.status != tc.status {
				t.Fatalf("%s %s = %d, want %d: %.300s", method, tc.path, a.status, tc.status, a.body)
			}
			if refusedLocally[tc.status] {
				if n := e.upstreamCalls() - before; n != 0 {
					t.Errorf("a refused request caused %d upstream calls", n)
				}
			}
			if tc.code != "" {
				checkProblem(t, a, tc.code)
			} else if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" && ct != "image/png" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

// problemBody is the part of a problem answer the tests read.
type problemBody struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	RequestID string `json:"requestId"`
	Errors    []struct {
		Field, Message string
	} `json:"errors"`
}

func checkProblem(t *testing.T, a answer, code string) problemBody {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal([]byte(a.body), &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, a.body)
	}
	if p.Code != code || p.Status != a.status || p.Detail == "" || p.RequestID == "" {
		t.Errorf("problem = %+v, want code %s: %s", p, code, a.body)
	}
	if code == "INVALID_REQUEST" && len(p.Errors) == 0 && !strings.Contains(p.Detail, "body") && !strings.Contains(p.Detail, "query") {
		t.Errorf("400 without the offending fields: %s", a.body)
	}
	return p
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("answer body: %v: %s", err, a.body)
	}
	return v
}

// The answer shapes, as a client reads them.
type (
	pageMeta struct {
		Page, Limit  int
		Total, Pages *int
	}
	contactItem struct {
		ID, Type, Phone, Name string
	}
	chatItem struct {
		ID, Type, Name            string
		UnreadCount, MessageCount int
		LastMessage               *struct {
			Text   string
			At     string
			FromMe bool
		}
	}
	messageItem struct {
		ID, ChatID, From, To, Type, Text, Timestamp, Status string
		FromMe                                              bool
	}
	list[T any] struct {
		Data []T
		Meta pageMeta
	}
	one[T any] struct {
		Data T
		Meta map[string]any
	}
	sessionItem struct {
		SessionID, Status, PhoneNumber string
		QR                             struct{ Available bool }
	}
	qrItem struct {
		Code      string
		ExpiresAt *time.Time
	}
)

func wantMeta(t *testing.T, got pageMeta, page, limit, total int) {
	t.Helper()
	pages := (total + limit - 1) / limit
	if got.Page != page || got.Limit != limit || got.Total == nil || *got.Total != total || got.Pages == nil || *got.Pages != pages {
		t.Errorf("meta = %+v (total %v, pages %v), want page %d limit %d total %d pages %d", got, deref(got.Total), deref(got.Pages), page, limit, total, pages)
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func isRFC3339UTC(s string) bool {
	ts, err := time.Parse(time.RFC3339, s)
	return err == nil && strings.HasSuffix(s, "Z") && !ts.IsZero()
}

const (
	demo    = "/v1/sessions/demo_session"
	sales   = "/v1/sessions/sales_team"
	support = "/v1/sessions/support_desk"
	unknown = "/v1/sessions/no_such_session"
)

func sendBody(to, text string) string {
	b, _ := json.Marshal(map[string]string{"to": to, "text": text})
	return string(b)
}

// firstChat returns the id of demo_session's most recent chat.
func firstChat(t *testing.T, e *v1Env) string {
	t.Helper()
	a := e.gw.get(t, demo+"/chats?limit=1")
	chats := decode[list[chatItem]](t, a)
	if a.status != 200 || len(chats.Data) != 1 {
		t.Fatalf("chats = %d %s", a.status, a.body)
	}
	return chats.Data[0].ID
}

func TestV1Answers2xx(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	chatID := firstChat(t, e)
	var qrJSON qrItem
	runV1(t, e, []v1Case{
		{name: "qr json", path: sales + "/qr", status: 200, check: func(t *testing.T, a answer) {
			qrJSON = decode[one[qrItem]](t, a).Data
			if !strings.HasPrefix(qrJSON.Code, "data:image/png;base64,") || qrJSON.ExpiresAt == nil || !qrJSON.ExpiresAt.After(time.Now()) {
				t.Errorf("qr = %.80s, expires %v", qrJSON.Code, qrJSON.ExpiresAt)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", a.header.Get("Cache-Control"))
			}
		}},
		{name: "qr png", path: sales + "/qr", headers: map[string]string{"Accept": "image/png"}, status: 200, check: func(t *testing.T, a answer) {
			png, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(qrJSON.Code, "data:image/png;base64,"))
			if a.header.Get("Content-Type") != "image/png" || a.header.Get("Cache-Control") != "no-store" ||
				!strings.HasPrefix(a.body, "\x89PNG\r\n\x1a\n") || a.body != string(png) {
				t.Errorf("PNG answer: %v, %d bytes", a.header, len(a.body))
			}
		}},
		{name: "qr with the reader key", path: sales + "/qr", headers: map[string]string{"X-API-Key": readerKey}, status: 200},
		{name: "contacts", path: demo + "/contacts", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[contactItem]](t, a)
			wantMeta(t, l.Meta, 1, 50, 60)
			if len(l.Data) != 50 {
				t.Fatalf("%d contacts, want 50", len(l.Data))
			}
			kinds := map[string]int{}
			for _, c := range l.Data {
				user, server, _ := strings.Cut(c.ID, "@")
				switch server {
				case "s.whatsapp.net":
					kinds["phone"]++
					if c.Phone != user || c.Type == "group" {
						t.Errorf("contact %+v: phone not read from the JID", c)
					}
				case "lid", "g.us":
					kinds[server]++
					if c.Phone != "" || (c.Type == "group") != (server == "g.us") {
						t.Errorf("contact %+v: an @%s id has no phone number", c, server)
					}
				default:
					t.Errorf("contact id %q", c.ID)
				}
			}
			if kinds["phone"] == 0 || kinds["lid"] == 0 {
				t.Errorf("contacts by kind = %v, want phone and @lid ids", kinds)
			}
		}},
		{name: "contacts page 2", path: demo + "/contacts?page=2&limit=25", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[contactItem]](t, a)
			wantMeta(t, l.Meta, 2, 25, 60)
			if len(l.Data) != 25 {
				t.Errorf("%d contacts", len(l.Data))
			}
		}},
		{name: "contacts past the end", path: demo + "/contacts?page=9&limit=25", status: 200, check: func(t *testing.T, a answer) {
			if l := decode[list[contactItem]](t, a); len(l.Data) != 0 || a.body[:10] != `{"data":[]` {
				t.Errorf("past the end: %s", a.body)
			}
		}},
		{name: "contacts search", path: demo + "/contacts?search=%40lid", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[contactItem]](t, a)
			if len(l.Data) == 0 || l.Meta.Total == nil || *l.Meta.Total != len(l.Data) {
				t.Fatalf("search: %s", a.body)
			}
			for _, c := range l.Data {
				if !strings.HasSuffix(c.ID, "@lid") {
					t.Errorf("search @lid found %s", c.ID)
				}
			}
		}},
		{name: "contacts by bearer JWT", path: demo + "/contacts?limit=1", headers: bearerWithout(t, "sessions:write"), status: 200},
		{name: "contacts with the reader key", path: demo + "/contacts?limit=1", headers: map[string]string{"X-API-Key": readerKey}, status: 200},
		{name: "chats", path: demo + "/chats", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[chatItem]](t, a)
			wantMeta(t, l.Meta, 1, 20, 8)
			var last string
			for i, ch := range l.Data {
				if ch.ID == "" || ch.MessageCount != 6 || ch.LastMessage == nil || !isRFC3339UTC(ch.LastMessage.At) {
					t.Fatalf("chat %+v", ch)
				}
				if i > 0 && ch.LastMessage.At > last {
					t.Errorf("chats not most recent first")
				}
				last = ch.LastMessage.At
			}
		}},
		{name: "chat messages", path: demo + "/chats/" + chatID + "/messages?limit=4", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[messageItem]](t, a)
			wantMeta(t, l.Meta, 1, 4, 6)
			for _, m := range l.Data {
				if m.ID == "" || m.ChatID != chatID || m.Type == "" || !isRFC3339UTC(m.Timestamp) || m.Status != strings.ToLower(m.Status) {
					t.Errorf("message %+v", m)
				}
			}
		}},
		{name: "messages of a chat the session does not have", path: demo + "/chats/34600000001@s.whatsapp.net/messages", status: 200, check: func(t *testing.T, a answer) {
			l := decode[list[messageItem]](t, a)
			wantMeta(t, l.Meta, 1, 50, 0)
		}},
		{name: "send to a formatted phone number", method: "POST", path: demo + "/messages", body: sendBody("+34 657 03 29 85", "Hola, ¿qué tal?"), status: 201, check: func(t *testing.T, a answer) {
			m := decode[one[messageItem]](t, a).Data
			if m.ID == "" || m.To != "34657032985@s.whatsapp.net" || m.ChatID != m.To || !m.FromMe || m.Text != "Hola, ¿qué tal?" || m.Type != "text" || !isRFC3339UTC(m.Timestamp) {
				t.Errorf("sent %+v", m)
			}
			if a.header.Get("Idempotent-Replayed") != "" {
				t.Error("a first send marked replayed")
			}
		}},
		{name: "send to a c.us JID", method: "POST", path: demo + "/messages", body: sendBody("34600111222@c.us", "hi"), status: 201, check: func(t *testing.T, a answer) {
			if m := decode[one[messageItem]](t, a).Data; m.To != "34600111222@s.whatsapp.net" {
				t.Errorf("sent to %s", m.To)
			}
		}},
		{name: "send to a group", method: "POST", path: demo + "/messages", body: sendBody("120363012345678901@g.us", "hola grupo"), status: 201},
		{name: "connect a QR session", method: "POST", path: sales + "/connect", status: 202, check: func(t *testing.T, a answer) {
			if s := decode[one[sessionItem]](t, a).Data; s.Status != "qr_pending" || s.SessionID != "sales_team" {
				t.Errorf("session %+v", s)
			}
		}},
		{name: "connect", method: "POST", path: support + "/connect", status: 202, check: func(t *testing.T, a answer) {
			s := decode[one[sessionItem]](t, a).Data
			if s.Status != "connecting" || s.SessionID != "support_desk" || a.header.Get("Location") != support+"/qr" {
				t.Errorf("session %+v, Location %q", s, a.header.Get("Location"))
			}
		}},
	})
	if n := e.sends(); n != 3 {
		t.Errorf("upstream sends = %d, want 3", n)
	}
}

func TestV1Answers400(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	long := strings.Repeat("a", 101)
	send := func(name, body, field string) v1Case {
		return v1Case{name: name, method: "POST", path: demo + "/messages", body: body, status: 400, code: "INVALID_REQUEST",
			check: wantField(field)}
	}
	runV1(t, e, []v1Case{
		{name: "short session id", path: "/v1/sessions/ab/contacts", status: 400, code: "INVALID_REQUEST", check: wantField("sessionId")},
		{name: "long session id", path: "/v1/sessions/" + long + "/qr", status: 400, code: "INVALID_REQUEST", check: wantField("sessionId")},
		{name: "unicode session id", method: "POST", path: "/v1/sessions/sesi%C3%B3n/connect", status: 400, code: "INVALID_REQUEST"},
		{name: "dotted session id", path: "/v1/sessions/demo.session/chats", status: 400, code: "INVALID_REQUEST"},
		{name: "bad chat id", path: demo + "/chats/not-a-jid/messages", status: 400, code: "INVALID_REQUEST", check: wantField("chatId")},
		{name: "chat id on another server", path: demo + "/chats/34600111222@evil.example/messages", status: 400, code: "INVALID_REQUEST"},
		{name: "limit 0", path: demo + "/contacts?limit=0", status: 400, code: "INVALID_REQUEST", check: wantField("limit")},
		{name: "limit 101", path: demo + "/chats?limit=101", status: 400, code: "INVALID_REQUEST", check: wantField("limit")},
		{name: "page -1", path: demo + "/chats/34600111222@s.whatsapp.net/messages?page=-1", status: 400, code: "INVALID_REQUEST", check: wantField("page")},
		{name: "limit 1e3", path: demo + "/contacts?limit=1e3", status: 400, code: "INVALID_REQUEST"},
		{name: "huge page", path: demo + "/contacts?page=99999999999999999999", status: 400, code: "INVALID_REQUEST"},
		{name: "long search", path: demo + "/contacts?search=" + long, status: 400, code: "INVALID_REQUEST", check: wantField("search")},
		{name: "unknown parameter", path: demo + "/contacts?limit=5&sort=name", status: 400, code: "INVALID_REQUEST", check: wantField("sort")},
		{name: "search on chats", path: demo + "/chats?search=x", status: 400, code: "INVALID_REQUEST", check: wantField("search")},
		{name: "query on qr", path: sales + "/qr?format=png", status: 400, code: "INVALID_REQUEST", check: wantField("format")},
		{name: "query on connect", method: "POST", path: support + "/connect?force=1", status: 400, code: "INVALID_REQUEST"},
		send("bad phone", sendBody("12345", "hola"), "to"),
		send("phone with letters", sendBody("+34 6S7 032 985", "hola"), "to"),
		send("national phone", sendBody("0657 03 29 85", "hola"), "to"),
		send("unsupported JID", sendBody("status@broadcast", "hola"), "to"),
		send("blank text", sendBody("34657032985", "   "), "text"),
		send("long text", sendBody("34657032985", strings.Repeat("x", 4097)), "text"),
		send("bad JSON", `{"to": "34657032985", "text": `, ""),
		send("unknown field", `{"to": "34657032985", "text": "hola", "type": "image"}`, "type"),
		send("wrong type", `{"to": 34657032985, "text": "hola"}`, "to"),
		send("not an object", `["34657032985", "hola"]`, ""),
		send("two objects", `{"to": "34657032985", "text": "a"} {"to": "34657032985", "text": "b"}`, ""),
		{name: "bad idempotency key", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"),
			headers: map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, status: 400, code: "INVALID_REQUEST", check: wantField("Idempotency-Key")},
	})
	if n := e.sends(); n != 0 {
		t.Errorf("upstream sends = %d, want 0", n)
	}
}

// wantField checks that a 400 names field (when field is not empty).
func wantField(field string) func(t *testing.T, a answer) {
	return func(t *testing.T, a answer) {
		t.Helper()
		if field == "" {
			return
		}
		var p problemBody
		_ = json.Unmarshal([]byte(a.body), &p)
		for _, f := range p.Errors {
			if f.Field == field {
				return
			}
		}
		t.Errorf("the 400 does not name %s: %s", field, a.body)
	}
}

// allRoutes are the /v1 WhatsApp routes with a valid request each.
func allRoutes(session string) []v1Case {
	body := sendBody("34657032985", "hola")
	return []v1Case{
		{name: "connect", method: "POST", path: session + "/connect"},
		{name: "qr", path: session + "/qr"},
		{name: "contacts", path: session + "/contacts"},
		{name: "chats", path: session + "/chats"},
		{name: "messages", path: session + "/chats/34600111222@s.whatsapp.net/messages"},
		{name: "send", method: "POST", path: session + "/messages", body: body},
	}
}

// withContentType adds the JSON content type to POSTs with a body.
func withContentType(c v1Case) v1Case {
	h := map[string]string{}
	if c.body != "" {
		h["Content-Type"] = "application/json"
	}
	for k, v := range c.headers {
		h[k] = v
	}
	c.headers = h
	return c
}

func TestV1Answers401(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	creds := map[string]map[string]string{
		"no credential":  {"X-API-Key": ""},
		"wrong key":      {"X-API-Key": "not-a-key-" + randHex(8)},
		"expired JWT":    {"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})},
		"wrong audience": {"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"aud": "someone-else"})},
	}
	var cases []v1Case
	for credName, h := range creds {
		for _, c := range allRoutes(demo) {
			c = withContentType(c)
			for k, v := range h {
				c.headers[k] = v
			}
			c.name = credName + "/" + c.name
			c.status, c.code = 401, "UNAUTHENTICATED"
			c.check = func(t *testing.T, a answer) {
				if len(a.header.Values("WWW-Authenticate")) == 0 {
					t.Error("401 without WWW-Authenticate")
				}
			}
			cases = append(cases, c)
		}
	}
	runV1(t, e, cases)
}

func TestV1Answers403(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	need := map[string]string{"connect": "sessions:write", "qr": "sessions:read", "contacts": "messages:read",
		"chats": "messages:read", "messages": "messages:read", "send": "messages:send"}
	var cases []v1Case
	for _, c := range allRoutes(demo) {
		c = withContentType(c)
		c.headers["X-API-Key"] = ""
		for k, v := range bearerWithout(t, need[c.name]) {
			c.headers[k] = v
		}
		c.name = "JWT without " + need[c.name] + "/" + c.name
		c.status, c.code = 403, "FORBIDDEN"
		cases = append(cases, c)
	}
	for _, c := range allRoutes(demo) {
		if c.method != "POST" {
			continue // the reader key holds sessions:read and messages:read
		}
		c = withContentType(c)
		c.headers["X-API-Key"] = readerKey
		c.name = "reader key/" + c.name
		c.status, c.code = 403, "FORBIDDEN"
		c.check = func(t *testing.T, a answer) {
			if !strings.Contains(a.body, "test-reader") {
				t.Errorf("the 403 does not name the caller: %s", a.body)
			}
		}
		cases = append(cases, c)
	}
	runV1(t, e, cases)
}

func TestV1Answers404(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	var cases []v1Case
	for _, c := range allRoutes(unknown) {
		c = withContentType(c)
		c.name = "unknown session/" + c.name
		c.status, c.code = 404, "SESSION_NOT_FOUND"
		cases = append(cases, c)
	}
	qrNotReady := func(detail string) func(t *testing.T, a answer) {
		return func(t *testing.T, a answer) {
			if a.header.Get("Retry-After") != "2" || !strings.Contains(a.body, detail) {
				t.Errorf("QR_NOT_READY: Retry-After %q, body %s", a.header.Get("Retry-After"), a.body)
			}
		}
	}
	cases = append(cases,
		v1Case{name: "qr of a disconnected session", path: support + "/qr", status: 404, code: "QR_NOT_READY", check: qrNotReady("/connect")},
		v1Case{name: "connect", method: "POST", path: support + "/connect", status: 202},
		v1Case{name: "qr while connecting", path: support + "/qr", status: 404, code: "QR_NOT_READY", check: qrNotReady("being prepared")},
		v1Case{name: "qr png while connecting", path: support + "/qr", headers: map[string]string{"Accept": "image/png"}, status: 404, code: "QR_NOT_READY"},
		v1Case{name: "no such route", path: demo + "/contactz", status: 404, code: "NOT_FOUND"},
	)
	runV1(t, e, cases)
}

func TestV1Answers409(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	var cases []v1Case
	for _, c := range allRoutes(support) {
		if c.name == "connect" || c.name == "qr" {
			continue
		}
		c = withContentType(c)
		c.name = "not connected/" + c.name
		c.status, c.code = 409, "SESSION_NOT_CONNECTED"
		c.check = func(t *testing.T, a answer) {
			if !strings.Contains(a.body, "/connect") || !strings.Contains(a.body, "/qr") {
				t.Errorf("the detail does not say how to reconnect: %s", a.body)
			}
		}
		cases = append(cases, c)
	}
	key := map[string]string{"Content-Type": "application/json", "Idempotency-Key": "order-4711"}
	cases = append(cases,
		v1Case{name: "connect a connected session", method: "POST", path: demo + "/connect", status: 409, code: "SESSION_ALREADY_CONNECTED"},
		v1Case{name: "qr of a connected session", path: demo + "/qr", status: 409, code: "SESSION_ALREADY_CONNECTED"},
		v1Case{name: "first send with a key", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "uno"), headers: key, status: 201},
		v1Case{name: "same key, another text", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "dos"), headers: key, status: 409, code: "CONFLICT"},
		v1Case{name: "same key, another session", method: "POST", path: support + "/messages", body: sendBody("34657032985", "uno"), headers: key, status: 409, code: "CONFLICT"},
	)
	runV1(t, e, cases)
	if n := e.sends(); n != 2 { // the not-connected one reached the upstream, and the first keyed send
		t.Errorf("upstream sends = %d, want 2", n)
	}
}

func TestV1Answers413And415(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	big := sendBody("34657032985", strings.Repeat("a", v1MaxBody))
	runV1(t, e, []v1Case{
		{name: "large body", method: "POST", path: demo + "/messages", body: big, headers: map[string]string{"Content-Type": "application/json"}, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "large body on connect", method: "POST", path: support + "/connect", body: big, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "no content type", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"), headers: map[string]string{"Content-Type": ""}, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "text/plain", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"), headers: map[string]string{"Content-Type": "text/plain"}, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "form", method: "POST", path: demo + "/messages", body: "to=34657032985&text=hola", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
	})
	// Without a Content-Length (chunked), the limit holds while the body is read.
	req, _ := http.NewRequest(http.MethodPost, e.gw.url+demo+"/messages", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("X-API-Key", e.gw.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), "PAYLOAD_TOO_LARGE") {
		t.Errorf("chunked large body = %d %s", resp.StatusCode, b)
	}
	if n := e.sends(); n != 0 {
		t.Errorf("upstream sends = %d", n)
	}
}

func TestV1Answers429(t *testing.T) {
	t.Parallel()
	// The caller's own limit: 5 requests a minute.
	e := startV1(t, map[string]string{"GATEWAY_CALLER_RATE": "5/1m"}) // 3 of them spent warming up
	runV1(t, e, []v1Case{
		{name: "within the limit", path: demo + "/chats?limit=1", status: 200},
		{name: "within the limit again", path: demo + "/contacts?limit=1", status: 200},
		{name: "over the caller limit", path: demo + "/contacts?limit=1", status: 429, code: "RATE_LIMITED", check: wantRetryAfter},
		{name: "another caller is not limited", path: demo + "/contacts?limit=1", headers: map[string]string{"X-API-Key": readerKey}, status: 200},
	})
	// The upstream's limit.
	e = startV1(t, nil)
	force429 := func(e *v1Env) { e.sim.SetFaults(sim.Faults{Force429: 2}) }
	runV1(t, e, []v1Case{
		{name: "upstream 429 on contacts", path: demo + "/contacts", setup: force429, status: 429, code: "RATE_LIMITED", check: wantRetryAfter},
		{name: "upstream 429 on send", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"),
			headers: map[string]string{"Content-Type": "application/json"}, setup: force429, status: 429, code: "RATE_LIMITED", check: wantRetryAfter},
	})
}

func wantRetryAfter(t *testing.T, a answer) {
	t.Helper()
	if a.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After: %v", a.header)
	}
}

func TestV1Answers5xx(t *testing.T) {
	t.Parallel()
	e := startV1(t, map[string]string{"UPSTREAM_TIMEOUT": "300ms"})
	route := func(pattern string, status int) func(e *v1Env) {
		return func(e *v1Env) { e.sim.SetFaults(sim.Faults{RouteStatus: map[string]int{pattern: status}}) }
	}
	all := func(status int) func(e *v1Env) {
		return func(e *v1Env) { e.sim.SetFaults(sim.Faults{AllStatus: status}) }
	}
	ctJSON := map[string]string{"Content-Type": "application/json"}
	runV1(t, e, []v1Case{
		{name: "upstream refuses the request", path: demo + "/contacts", setup: route("GET /api/contacts/{sessionId}", 422), status: 502, code: "UPSTREAM_ERROR"},
		{name: "upstream refuses the send", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"), headers: ctJSON,
			setup: route(sendRoute, 403), status: 502, code: "UPSTREAM_ERROR"},
		{name: "chats route broken", path: demo + "/chats", setup: route("GET /api/messages/{sessionId}/chats", 500), status: 503, code: "UPSTREAM_UNAVAILABLE", check: wantRetryAfter},
		{name: "connection error on connect", method: "POST", path: support + "/connect", setup: route("POST /api/sessions/{id}/connect", 500), status: 503, code: "UPSTREAM_UNAVAILABLE"},
		{name: "QR generation error", path: sales + "/qr", setup: route("GET /api/sessions/{id}/qr", 500), status: 503, code: "UPSTREAM_UNAVAILABLE"},
		{name: "upstream down", path: demo + "/chats/34600111222@s.whatsapp.net/messages", setup: all(503), status: 503, code: "UPSTREAM_UNAVAILABLE", check: wantRetryAfter},
		{name: "nginx 502", path: demo + "/contacts", setup: all(502), status: 503, code: "UPSTREAM_UNAVAILABLE"},
		{name: "send while the upstream is down", method: "POST", path: demo + "/messages", body: sendBody("34657032985", "hola"), headers: ctJSON,
			setup: all(503), status: 503, code: "UPSTREAM_UNAVAILABLE"},
		{name: "upstream too slow", path: demo + "/chats", setup: func(e *v1Env) { e.sim.SetFaults(sim.Faults{Latency: time.Second}) }, status: 504, code: "UPSTREAM_TIMEOUT"},
		{name: "recovered", path: demo + "/chats", status: 200},
	})
	if strings.Contains(e.gw.logs.String(), `"level":"ERROR","msg":"panic`) {
		t.Error("a handler panicked")
	}
}

// TestV1HostileRequests: requests built to break the gateway all get a 4xx problem answer, and
// none of them reaches the upstream.
func TestV1HostileRequests(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	alien := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "iss": jwtIssuer, "aud": jwtAudience,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "messages:send"})
	forged, _ := alien.SignedString([]byte("another-secret-of-at-least-32-bytes!!"))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "iss": jwtIssuer, "aud": jwtAudience,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": strings.Join(config.Scopes, " ")}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	okBody := sendBody("34657032985", "hola")
	ctJSON := map[string]string{"Content-Type": "application/json"}
	post := func(name, path, body string, headers map[string]string) v1Case {
		h := map[string]string{"Content-Type": "application/json"}
		for k, v := range headers {
			h[k] = v
		}
		return v1Case{name: name, method: "POST", path: path, body: body, headers: h}
	}
	cases := []v1Case{
		{name: "traversal in session id", path: "/v1/sessions/..%2f..%2fadmin/contacts"},
		{name: "traversal to another route", path: "/v1/sessions/..%2Fsessions%2Fdemo_session/contacts"},
		{name: "dot segments", path: "/v1/sessions/%2e%2e/qr"},
		{name: "literal dot segments", path: "/v1/sessions/../sessions/demo_session/contacts"},
		{name: "encoded slash in session id", path: "/v1/sessions/demo%2Fsession/chats"},
		{name: "empty session id", path: "/v1/sessions//contacts"},
		{name: "null byte in session id", path: "/v1/sessions/demo_session%00/contacts"},
		{name: "CRLF in session id", path: "/v1/sessions/demo_session%0d%0aX-Injected:%201/qr"},
		{name: "over-long session id", path: "/v1/sessions/" + strings.Repeat("s", 5000) + "/chats"},
		{name: "unicode session id", path: "/v1/sessions/d%C3%A9mo_session/contacts"},
		{name: "fullwidth session id", path: "/v1/sessions/%EF%BD%84emo_session/contacts"},
		{name: "emoji session id", method: "POST", path: "/v1/sessions/%F0%9F%98%80%F0%9F%98%80%F0%9F%98%80/connect"},
		{name: "traversal in chat id", path: demo + "/chats/..%2f..%2f..%2fsessions/messages"},
		{name: "null byte in chat id", path: demo + "/chats/34600111222%00@s.whatsapp.net/messages"},
		{name: "over-long chat id", path: demo + "/chats/" + strings.Repeat("1", 65) + "@lid/messages"},
		{name: "limit=0", path: demo + "/contacts?limit=0"},
		{name: "limit=101", path: demo + "/contacts?limit=101"},
		{name: "page=-1", path: demo + "/chats?page=-1"},
		{name: "limit=1e3", path: demo + "/chats?limit=1e3"},
		{name: "page=99999999999999999999", path: demo + "/contacts?page=99999999999999999999"},
		{name: "page=0x10", path: demo + "/contacts?page=0x10"},
		{name: "repeated limit", path: demo + "/contacts?limit=1&limit=100"},
		{name: "semicolon query", path: demo + "/contacts?page=1;limit=2"},
		{name: "bad escape in query", path: demo + "/contacts?search=%zz"},
		{name: "control character in search", path: demo + "/contacts?search=a%07b"},
		{name: "invalid UTF-8 in search", path: demo + "/contacts?search=%C0%AF"},
		{name: "unknown parameter", path: demo + "/chats?page=1&callback=alert(1)"},
		post("malformed JSON", demo+"/messages", `{"to": "34657032985", "text": "hola"`, nil),
		post("JSON with a BOM", demo+"/messages", "\ufeff"+okBody, nil),
		post("deeply nested JSON", demo+"/messages", `{"to":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`,"text":"x"}`, nil),
		post("oversized JSON", demo+"/messages", sendBody("34657032985", strings.Repeat("x", 2*v1MaxBody)), nil),
		post("unknown fields", demo+"/messages", `{"to": "34657032985", "text": "hola", "__proto__": {"admin": true}}`, nil),
		post("JSON null", demo+"/messages", `null`, nil),
		post("NUL in text", demo+"/messages", `{"to": "34657032985", "text": "a\u0000b"}`, nil),
		post("phone with letters", demo+"/messages", sendBody("+34 657 O32 985", "hola"), nil),
		post("recipient on another server", demo+"/messages", sendBody("34657032985@evil.example", "hola"), nil),
		post("SQL in recipient", demo+"/messages", sendBody("34657032985' OR '1'='1", "hola"), nil),
		post("non-ASCII idempotency key", demo+"/messages", okBody, map[string]string{"Idempotency-Key": "clé-ü"}),
		post("over-long idempotency key", demo+"/messages", okBody, map[string]string{"Idempotency-Key": strings.Repeat("k", 500)}),
		post("text/plain", demo+"/messages", okBody, map[string]string{"Content-Type": "text/plain"}),
		post("multipart", demo+"/messages", okBody, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}),
		post("JSON in latin1", demo+"/messages", okBody, map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}),
		post("almost JSON", demo+"/messages", okBody, map[string]string{"Content-Type": "application/jsonp"}),
		{name: "missing key", path: demo + "/contacts", headers: map[string]string{"X-API-Key": ""}},
		{name: "wrong key", path: demo + "/contacts", headers: map[string]string{"X-API-Key": callerKey + "x"}},
		{name: "key with spaces", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "a b"}},
		{name: "key and bearer", path: demo + "/contacts", headers: map[string]string{"Authorization": token(t, nil)}},
		{name: "basic auth", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": "Basic dXNlcjpwYXNz"}},
		{name: "empty bearer", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": "Bearer "}},
		{name: "garbage bearer", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": "Bearer a.b.c"}},
		{name: "forged JWT", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": "Bearer " + forged}},
		{name: "alg none JWT", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": "Bearer " + none}},
		{name: "expired JWT", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"exp": time.Now().Add(-10 * time.Minute).Unix(), "iat": time.Now().Add(-time.Hour).Unix()})}},
		{name: "JWT of another issuer", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"iss": "https://evil.example"})}},
		{name: "JWT without subject", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"sub": nil})}},
		{name: "JWT without scopes", path: demo + "/contacts", headers: map[string]string{"X-API-Key": "", "Authorization": token(t, jwt.MapClaims{"scope": nil})}},
		post("reader key sends", demo+"/messages", okBody, map[string]string{"X-API-Key": readerKey}),
		{name: "reader key connects", method: "POST", path: support + "/connect", headers: map[string]string{"X-API-Key": readerKey}},
		{name: "PUT on send", method: "PUT", path: demo + "/messages", body: okBody, headers: ctJSON},
		{name: "DELETE on connect", method: "DELETE", path: demo + "/connect"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d hostile requests", len(cases))
	}
	before := e.upstreamCalls()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			a := e.gw.request(t, method, c.path, body, c.headers)
			if a.status < 400 || a.status > 499 {
				t.Fatalf("%s %.100s = %d, want 4xx: %.300s", method, c.path, a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q: %.200s", ct, a.body)
			}
			if strings.Contains(a.body, "X-Injected") || a.header.Get("X-Injected") != "" {
				t.Errorf("injected header echoed")
			}
		})
	}
	if n := e.upstreamCalls() - before; n != 0 {
		t.Errorf("%d hostile requests caused %d upstream calls, want 0: %v", len(cases), n, e.sim.Counters().Requests)
	}
}

// TestV1Idempotency: a send with an Idempotency-Key reaches the upstream once, however often and
// however concurrently it is repeated, and repeats get the first answer.
func TestV1Idempotency(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	path := demo + "/messages"
	keyed := func(key string) map[string]string { return map[string]string{"Idempotency-Key": key} }

	first := e.gw.post(t, path, sendBody("+34 657 03 29 85", "Su pedido 4711 ha salido"), keyed("order-4711-shipped"))
	// The same request, written differently (key order, spacing): the same fingerprint.
	again := e.gw.post(t, path, `{ "text": "Su pedido 4711 ha salido",  "to": "+34 657 03 29 85" }`, keyed("order-4711-shipped"))
	if first.status != 201 || again.status != 201 {
		t.Fatalf("answers %d, %d: %s %s", first.status, again.status, first.body, again.body)
	}
	if first.body != again.body || again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("repeat: %q (replayed %q), first: %q", again.body, again.header.Get("Idempotent-Replayed"), first.body)
	}
	if n := e.sends(); n != 1 {
		t.Fatalf("upstream sends = %d, want 1", n)
	}
	// The same key with another body: 409, nothing sent.
	if a := e.gw.post(t, path, sendBody("+34 657 03 29 85", "Su pedido 4712 ha salido"), keyed("order-4711-shipped")); a.status != 409 {
		t.Errorf("same key, another body = %d %s", a.status, a.body)
	} else {
		checkProblem(t, a, "CONFLICT")
	}
	// Another caller may use the same key for its own message.
	other := map[string]string{"Idempotency-Key": "order-4711-shipped", "X-API-Key": "", "Authorization": token(t, nil)}
	if a := e.gw.post(t, path, sendBody("+34 657 03 29 85", "Su pedido 4711 ha salido"), other); a.status != 201 || a.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another caller = %d %s", a.status, a.body)
	}
	if n := e.sends(); n != 2 {
		t.Fatalf("upstream sends = %d, want 2", n)
	}

	// 20 concurrent identical requests with one key: one send, 20 identical answers.
	const n = 20
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	e.sim.SetFaults(sim.Faults{Latency: 100 * time.Millisecond}) // the first is still sending when the others arrive
	for i := range n {
		wg.Go(func() {
			<-start
			answers[i] = e.gw.post(t, path, sendBody("34600111222", "Recordatorio: cita mañana"), keyed("reminder-99"))
		})
	}
	close(start)
	wg.Wait()
	e.sim.SetFaults(sim.Faults{})
	replayed := 0
	for _, a := range answers {
		if a.status != 201 || a.body != answers[0].body {
			t.Fatalf("concurrent answer %d %s, want 201 %s", a.status, a.body, answers[0].body)
		}
		if a.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if got := e.sends(); got != 3 || replayed != n-1 {
		t.Errorf("upstream sends = %d (want 3), replayed answers = %d (want %d)", got, replayed, n-1)
	}

	// A failed send is not remembered: the retry with its key sends.
	e.sim.SetFaults(sim.Faults{RouteStatus: map[string]int{sendRoute: 500}})
	failed := e.gw.post(t, path, sendBody("34600111333", "hola"), keyed("retry-me"))
	e.sim.SetFaults(sim.Faults{})
	retried := e.gw.post(t, path, sendBody("34600111333", "hola"), keyed("retry-me"))
	if failed.status != 503 || retried.status != 201 || retried.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("failed %d then retried %d (%s)", failed.status, retried.status, retried.body)
	}
	if got := e.sends(); got != 5 {
		t.Errorf("upstream sends = %d, want 5 (the failed one and its retry)", got)
	}
}

// FuzzV1Request drives the whole router in process with fuzzed path segments, query strings,
// bodies and headers: never a 5xx (the simulator is healthy), never a panic, and every error a
// problem+json answer. Run: go test -run '^$' -fuzz FuzzV1Request ./internal/app/
func FuzzV1Request(f *testing.F) {
	e := startV1(f, nil)
	h := e.gw.app.Handler()
	seeds := []struct {
		route                      uint8
		session, chat, query, body string
		contentType, key           string
	}{
		{0, "demo_session", "", "", "", "", ""},
		{1, "sales_team", "", "", "", "", ""},
		{2, "demo_session", "", "page=2&limit=10&search=a", "", "", ""},
		{3, "demo_session", "", "limit=101", "", "", ""},
		{4, "demo_session", "34600111222@s.whatsapp.net", "page=1", "", "", ""},
		{5, "demo_session", "", "", `{"to":"+34 657 03 29 85","text":"hola"}`, "application/json", "k-1"},
		{5, "demo_session", "", "", `{"to":"34657032985@c.us","text":"x","y":1}`, "application/json", ""},
		{5, "support_desk", "", "", `{"to":"1@lid","text":"x"}`, "text/plain", ""},
		{6, "../../etc", "..%2f", "%zz", "\x00", "application/json; charset=utf-8", "\xff"},
		{7, "demo_session", "", "", "", "", ""},
		{2, "demo_session\x00", "", "search=%00", "", "", ""},
		{4, "demo_session", "status@broadcast", "limit=1e3", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.route, s.session, s.chat, s.query, s.body, s.contentType, s.key)
	}
	f.Fuzz(func(t *testing.T, route uint8, session, chat, query, body, contentType, key string) {
		method, path := http.MethodGet, "/v1/sessions/"+session
		switch route % 8 {
		case 0:
			method, path = http.MethodPost, path+"/connect"
		case 1:
			path += "/qr"
		case 2:
			path += "/contacts"
		case 3:
			path += "/chats"
		case 4:
			path += "/chats/" + chat + "/messages"
		case 5:
			method, path = http.MethodPost, path+"/messages"
		case 6:
			method, path = []string{"PUT", "DELETE", "PATCH", "OPTIONS"}[int(route/8)%4], path+"/"+chat
		case 7:
			path = "/v1/sessions" + session
		}
		req := httptest.NewRequest(http.MethodGet, "/", bytes.NewReader([]byte(body)))
		req.Method = method
		req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, "", query
		req.Header.Set("X-API-Key", callerKey)
		if route >= 128 {
			req.Header.Set("X-API-Key", key) // a fuzzed credential
		} else if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if route%16 == 15 {
			req.Header.Set("Accept", "image/png")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q?%q = %d: %s", method, path, query, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s %q = %d with Content-Type %q", method, path, rec.Code, rec.Header().Get("Content-Type"))
		}
	})
}
