package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// bearerRecorder stands in front of the simulator and records every Authorization header the
// gateway sends it: the upstream tokens, which must never come back to a caller.
type bearerRecorder struct {
	next http.Handler
	mu   sync.Mutex
	seen map[string]bool
}

func (b *bearerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); v != "" {
		b.mu.Lock()
		b.seen[v] = true
		b.mu.Unlock()
	}
	b.next.ServeHTTP(w, r)
}

func (b *bearerRecorder) tokens() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for v := range b.seen {
		out = append(out, v)
	}
	return out
}

// hostileCase is one hostile request. Headers default to the full caller's X-API-Key ("" removes
// a header); raw, when set, is sent as it is over TCP instead ({KEY} is the full caller's key).
type hostileCase struct {
	name    string
	method  string
	path    string
	body    string
	headers map[string]string
	raw     string
	// personal is what the request carries that must not come back: phone numbers, message text,
	// the credential it tried.
	personal []string
}

// TestHostileRequests sends hostile requests about authentication, paths, bodies, headers and
// webhooks to a whole replica over real HTTP (real Redis, the simulator behind it). Every one is
// answered 4xx (never 5xx), none reaches the upstream (the simulator counts every request), and
// no answer, body or header, repeats a secret (the callers' keys, the JWT secret and tokens, the
// upstream's credentials and tokens, the webhook secret) or the personal data the request carried,
// and none sends the caller elsewhere (Location).
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, err := sim.New(sim.Options{Identifier: creds.identifier, Password: creds.password, APIKey: creds.apiKey,
		RateAuth: sim.NoLimit(), RateRead: sim.NoLimit(), RateSend: sim.NoLimit(), RateGlobal: sim.NoLimit(), QRDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bearers := &bearerRecorder{next: s.Handler(), seen: map[string]bool{}}
	simSrv := httptest.NewServer(bearers)
	t.Cleanup(func() { simSrv.Close(); s.Close() })
	g := startGateway(t, simSrv.URL, creds, redistest.URL(t), map[string]string{
		"GATEWAY_JWT_HS256_SECRET": jwtSecret, "GATEWAY_JWT_ISSUER": jwtIssuer, "GATEWAY_JWT_AUDIENCE": jwtAudience,
		"GATEWAY_MAX_BODY_BYTES": "65536", "INBOXHUB_WEBHOOK_SECRET": hookSecret,
		"GATEWAY_SYNC_ON_CONNECT": "0", "GATEWAY_STATUS_POLL_INTERVAL": "1h",
	}, app.WithUpstreamOptions(upstream.WithRetry(1, time.Millisecond, time.Millisecond)))
	// Warm up (the upstream token, the session ids) and let the status poller's first poll pass,
	// so that nothing else calls the upstream while the cases run.
	for _, id := range []string{"demo_session", "sales_team"} {
		if a := g.get(t, "/v1/sessions/"+id); a.status != http.StatusOK {
			t.Fatalf("warm-up %s = %d %s", id, a.status, a.body)
		}
	}
	g.waitFirstPoll(t, "demo_session")
	upstreamCalls := func() int64 {
		var n int64
		for _, c := range s.Counters().Requests {
			n += c
		}
		return n
	}

	const phone, text = "34611223344", "hostile-secret-text-7f3a"
	send := sendBody("+"+phone, text)
	sendPath := "/v1/sessions/demo_session/messages"
	personal := []string{phone, text}
	jwtOf := func(claims jwt.MapClaims) string { return strings.TrimPrefix(token(t, claims), "Bearer ") }
	bearer := func(tok string) map[string]string {
		return map[string]string{"X-API-Key": "", "Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}
	valid := jwtOf(nil)
	parts := strings.Split(valid, ".")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "crm-backend", "iss": jwtIssuer, "aud": jwtAudience,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "messages:send admin"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	otherSecret, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "crm-backend", "iss": jwtIssuer, "aud": jwtAudience,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "messages:send"}).SignedString([]byte("another-secret-0123456789abcdef0123"))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "crm-backend", "iss": jwtIssuer, "aud": jwtAudience,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "messages:send"}).SignedString([]byte(jwtSecret))
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	hook := func(body string, at time.Time, extra map[string]string) map[string]string {
		h := signedHook(body, at)
		h["Content-Type"] = "application/json"
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	msgHook := fmt.Sprintf(`{"event":"message.received","data":{"sessionId":"demo_session","message":{"whatsappMessageId":"3EB0HOSTILE","from":"%s@s.whatsapp.net","content":%q}}}`, phone, text)
	sessHook := `{"event":"session.connected","data":{"sessionId":"demo_session","phoneNumber":"+` + phone + `"}}`
	long := strings.Repeat("a", 5000)
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)

	cases := []hostileCase{
		// Authentication: every credential but a valid one is refused before anything else.
		{name: "no credential", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": ""}, personal: personal},
		{name: "empty key", method: "POST", path: sendPath, body: send, raw: "POST " + sendPath + " HTTP/1.1\r\nHost: gw\r\nX-API-Key: \r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(send)) + "\r\n\r\n" + send, personal: personal},
		{name: "wrong key", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": "test-caller-" + randHex(12)}, personal: personal},
		{name: "key in another case", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": strings.ToUpper(callerKey)}, personal: personal},
		{name: "key with a suffix", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": callerKey + "x"}, personal: personal},
		{name: "key over 256 bytes", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": callerKey + strings.Repeat("k", 300)}, personal: personal},
		{name: "key in the query", method: "POST", path: sendPath + "?api_key=" + callerKey, body: send, headers: map[string]string{"X-API-Key": ""}, personal: personal},
		{name: "key in the query as X-API-Key", method: "POST", path: sendPath + "?X-API-Key=" + callerKey, body: send, headers: map[string]string{"X-API-Key": ""}, personal: personal},
		{name: "key in a cookie", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": "", "Cookie": "X-API-Key=" + callerKey}, personal: personal},
		{name: "key as a bearer token", method: "POST", path: sendPath, body: send, headers: bearer(callerKey), personal: personal},
		{name: "key as Basic", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": "", "Authorization": "Basic " + callerKey}, personal: personal},
		{name: "key and JWT together", method: "POST", path: sendPath, body: send, headers: map[string]string{"Authorization": "Bearer " + valid}, personal: personal},
		{name: "key sent twice", method: "POST", path: sendPath, raw: "POST " + sendPath + " HTTP/1.1\r\nHost: gw\r\nX-API-Key: {KEY}\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(send)) + "\r\n\r\n" + send, personal: personal},
		{name: "reader key sends", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": readerKey}, personal: personal},
		{name: "reader key reads the admin status", method: "GET", path: "/v1/admin/status", headers: map[string]string{"X-API-Key": readerKey}},
		{name: "reader key sets a session's webhook", method: "PUT", path: "/api/sessions/demo_session/webhook", body: `{"webhookUrl":"https://evil.example/hook"}`, headers: map[string]string{"X-API-Key": readerKey, "Content-Type": "application/json"}},
		{name: "garbled JWT", method: "POST", path: sendPath, body: send, headers: bearer("abc.def"), personal: personal},
		{name: "JWT alg none", method: "POST", path: sendPath, body: send, headers: bearer(none), personal: append([]string{none}, personal...)},
		{name: "JWT expired", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})), personal: personal},
		{name: "JWT without exp", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"exp": nil})), personal: personal},
		{name: "JWT for another audience", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"aud": "another-service"})), personal: personal},
		{name: "JWT of another issuer", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"iss": "https://evil.example"})), personal: personal},
		{name: "JWT not valid yet", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})), personal: personal},
		{name: "JWT nbf beyond int64", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"nbf": 9e99})), personal: personal},
		{name: "JWT of another secret", method: "POST", path: sendPath, body: send, headers: bearer(otherSecret), personal: append([]string{otherSecret}, personal...)},
		{name: "JWT HS512 with the secret", method: "POST", path: sendPath, body: send, headers: bearer(hs512), personal: append([]string{hs512}, personal...)},
		{name: "JWT tampered payload", method: "POST", path: sendPath, body: send, headers: bearer(tampered), personal: personal},
		{name: "JWT without subject", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"sub": ""})), personal: personal},
		{name: "JWT without the send scope", method: "POST", path: sendPath, body: send, headers: bearerWithout(t, "messages:send"), personal: personal},
		{name: "JWT in the query", method: "POST", path: sendPath + "?access_token=" + valid, body: send, headers: map[string]string{"X-API-Key": ""}, personal: append([]string{valid}, personal...)},
		{name: "JWT over 8 KiB", method: "POST", path: sendPath, body: send, headers: bearer(jwtOf(jwt.MapClaims{"pad": strings.Repeat("p", 9000)})), personal: personal},
		{name: "upstream login through the relay", method: "POST", path: "/api/auth/login", body: `{"identifier":"x@example.invalid","password":"hostile-pw-1"}`, headers: map[string]string{"Content-Type": "application/json"}, personal: []string{"hostile-pw-1"}},

		// Paths that could address something else than they show.
		{name: "dot dot to auth", method: "GET", path: "/api/sessions/../auth/profile"},
		{name: "encoded dot dot", method: "GET", path: "/api/sessions/%2e%2e/auth/profile"},
		{name: "double-encoded dot dot", method: "GET", path: "/api/sessions/%252e%252e/status"},
		{name: "encoded slash", method: "GET", path: "/api/sessions/demo%2Fsession/status"},
		{name: "encoded backslash", method: "GET", path: "/api/sessions/demo%5C..%5Cauth"},
		{name: "empty segment", method: "GET", path: "/api//sessions"},
		{name: "dot dot inside a JID", method: "PUT", path: "/api/messages/demo_session/..@../read"},
		{name: "v1 encoded dot dot session", method: "GET", path: "/v1/sessions/%2e%2e/contacts"},
		{name: "v1 encoded slash in a chat", method: "GET", path: "/v1/sessions/demo_session/chats/" + phone + "@s.whatsapp.net%2F..%2F/messages", personal: []string{phone}},
		{name: "overlong session id", method: "GET", path: "/v1/sessions/" + strings.Repeat("s", 300) + "/contacts"},
		{name: "overlong chat id", method: "GET", path: "/v1/sessions/demo_session/chats/" + strings.Repeat("9", 300) + "@s.whatsapp.net/messages"},
		{name: "overlong path", method: "GET", path: "/api/sessions/" + long},
		{name: "null byte in a session id", method: "GET", path: "/v1/sessions/demo%00session/contacts"},
		{name: "null byte in the relay", method: "GET", path: "/api/sessions/demo%00session"},
		{name: "right-to-left override", method: "GET", path: "/v1/sessions/demo%E2%80%AEnoisses/contacts"},
		{name: "Cyrillic look-alike", method: "GET", path: "/v1/sessions/d%D0%B5mo_session/contacts"},
		{name: "fullwidth dots", method: "GET", path: "/api/sessions/%EF%BC%8E%EF%BC%8E/status"},
		{name: "phone number in an unknown route", method: "GET", path: "/v1/contacts/" + phone, personal: []string{phone}},
		{name: "phone number in an unrelayed route", method: "DELETE", path: "/api/messages/demo_session/" + phone + "@s.whatsapp.net", personal: []string{phone}},
		{name: "page out of range", method: "GET", path: "/api/contacts/demo_session?page=0"},
		{name: "limit out of range", method: "GET", path: "/v1/sessions/demo_session/contacts?limit=100000"},

		// Bodies.
		{name: "malformed JSON", method: "POST", path: sendPath, body: `{"to":"+` + phone + `","text":`, personal: []string{phone}},
		{name: "duplicate member", method: "POST", path: sendPath, body: `{"to":"+34600000001","text":"` + text + `","to":"+` + phone + `"}`, personal: personal},
		{name: "case-variant member", method: "POST", path: sendPath, body: `{"to":"+34600000001","text":"` + text + `","TO":"+` + phone + `"}`, personal: personal},
		{name: "Kelvin-sign variant", method: "POST", path: "/v1/sessions/demo_session/sync", body: `{"full":true,"\u212aind":"x","kind":"y"}`},
		{name: "huge number", method: "POST", path: sendPath, body: `{"to":1` + strings.Repeat("0", 400) + `,"text":"` + text + `"}`, personal: personal},
		{name: "deep nesting", method: "POST", path: sendPath, body: deep},
		{name: "oversized body", method: "POST", path: sendPath, body: `{"to":"+` + phone + `","text":"` + strings.Repeat("x", 70<<10) + `"}`, personal: []string{phone}},
		{name: "text/plain body", method: "POST", path: sendPath, body: send, headers: map[string]string{"Content-Type": "text/plain"}, personal: personal},
		{name: "form body", method: "POST", path: sendPath, body: "to=%2B" + phone + "&text=" + text, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, personal: personal},
		{name: "multipart body", method: "POST", path: sendPath, body: "--b\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n" + phone + "\r\n--b--\r\n", headers: map[string]string{"Content-Type": "multipart/form-data; boundary=b"}, personal: []string{phone}},
		{name: "two JSON values", method: "POST", path: sendPath, body: send + send, personal: personal},
		{name: "invalid UTF-8", method: "POST", path: sendPath, body: "{\"to\":\"+" + phone + "\",\"text\":\"\xff\xfe\"}", personal: []string{phone}},
		{name: "unknown member", method: "POST", path: sendPath, body: `{"to":"+` + phone + `","text":"` + text + `","webhookUrl":"https://evil.example"}`, personal: personal},
		{name: "array body", method: "POST", path: sendPath, body: `[` + send + `]`, personal: personal},
		{name: "relay duplicate member", method: "POST", path: "/api/messages/demo_session/send", body: `{"to":"` + phone + `@s.whatsapp.net","message":"` + text + `","to":"34600000001@s.whatsapp.net"}`, headers: map[string]string{"Content-Type": "application/json"}, personal: personal},
		{name: "relay text body", method: "POST", path: "/api/messages/demo_session/send", body: "to=" + phone, headers: map[string]string{"Content-Type": "text/plain"}, personal: []string{phone}},

		// Headers.
		{name: "huge header", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-Padding": strings.Repeat("h", 2<<20)}, personal: personal},
		{name: "CRLF in a header", method: "GET", path: "/v1/admin/status", raw: "GET /v1/admin/status HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + readerKey + "\r\nX-Note: a\rX-API-Key: {KEY}\r\n\r\n"},
		{name: "folded header", method: "GET", path: "/v1/admin/status", raw: "GET /v1/admin/status HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + readerKey + "\r\n {KEY}\r\n\r\n"},
		{name: "CRLF in the request target", method: "GET", path: "/v1/admin/status", raw: "GET /v1/admin/status\r\nX-API-Key: {KEY} HTTP/1.1\r\nHost: gw\r\n\r\n"},
		{name: "spoofed X-Forwarded-For", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": "", "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}, personal: personal},
		{name: "Host of another site", method: "GET", path: "/v1/admin/status", headers: map[string]string{"X-API-Key": readerKey, "Host": "evil.example", "X-Forwarded-Host": "evil.example"}},
		{name: "two Host headers", method: "GET", path: "/v1/admin/status", raw: "GET /v1/admin/status HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\nX-API-Key: {KEY}\r\n\r\n"},
		{name: "method override header", method: "GET", path: "/v1/admin/status", headers: map[string]string{"X-API-Key": readerKey, "X-HTTP-Method-Override": "DELETE"}},
		{name: "Content-Length and chunked", method: "POST", path: sendPath, raw: "POST " + sendPath + " HTTP/1.1\r\nHost: gw\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "absolute-form target of another host", method: "GET", path: "/api", raw: "GET http://evil.example/api HTTP/1.1\r\nHost: gw\r\nX-API-Key: {KEY}\r\n\r\n"},
		{name: "trailing slash", method: "GET", path: "/v1/sessions/"},
		{name: "forged request id", method: "POST", path: sendPath, body: send, headers: map[string]string{"X-API-Key": "", "X-Request-ID": "<script>" + phone}, personal: personal},

		// Webhooks: only an authentic, fresh delivery whose headers agree with its signed body.
		{name: "webhook without signature", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: map[string]string{"X-API-Key": "", "Content-Type": "application/json"}, personal: personal},
		{name: "webhook bad signature", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: hook(msgHook, time.Now(), map[string]string{"X-Webhook-Signature": "sha256=" + strings.Repeat("0", 64)}), personal: personal},
		{name: "webhook signature of another body", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: hook(sessHook, time.Now(), nil), personal: personal},
		{name: "webhook replayed after 10 minutes", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: hook(msgHook, time.Now().Add(-10*time.Minute), nil), personal: personal},
		{name: "webhook from the future", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: hook(msgHook, time.Now().Add(time.Hour), nil), personal: personal},
		{name: "webhook without timestamp", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: hook(msgHook, time.Now(), map[string]string{"X-Webhook-Timestamp": ""}), personal: personal},
		{name: "webhook session header mismatch", method: "POST", path: "/webhooks/inbox-hub", body: sessHook, headers: hook(sessHook, time.Now(), map[string]string{"X-Webhook-Session": "sales_team"}), personal: []string{phone}},
		{name: "webhook message session only in the header", method: "POST", path: "/webhooks/inbox-hub", body: strings.Replace(msgHook, `"sessionId":"demo_session",`, "", 1),
			headers: hook(strings.Replace(msgHook, `"sessionId":"demo_session",`, "", 1), time.Now(), map[string]string{"X-Webhook-Session": "demo_session"}), personal: personal},
		{name: "webhook signed but not JSON", method: "POST", path: "/webhooks/inbox-hub", body: "to=" + phone, headers: hook("to="+phone, time.Now(), nil), personal: []string{phone}},
		{name: "webhook oversized", method: "POST", path: "/webhooks/inbox-hub", body: `{"event":"message.received","pad":"` + strings.Repeat("x", 70<<10) + `"}`,
			headers: hook(`{"event":"message.received","pad":"`+strings.Repeat("x", 70<<10)+`"}`, time.Now(), nil)},
		{name: "webhook with an API key instead", method: "POST", path: "/webhooks/inbox-hub", body: msgHook, headers: map[string]string{"Content-Type": "application/json"}, personal: personal},
	}

	if len(cases) < 60 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := upstreamCalls()
			a := sendHostile(t, g, tc)
			var d struct{ Code string }
			_ = json.Unmarshal([]byte(a.body), &d)
			t.Logf("%d %s", a.status, d.Code)
			if a.status < 400 || a.status > 499 {
				t.Fatalf("status %d, want 4xx: %.300s", a.status, a.body)
			}
			if tc.raw == "" && a.status != http.StatusRequestHeaderFieldsTooLarge && !strings.HasPrefix(a.header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("status %d with Content-Type %q, want a problem", a.status, a.header.Get("Content-Type"))
			}
			if loc := a.header.Get("Location"); loc != "" {
				t.Errorf("the answer sends the caller to %q", loc)
			}
			if n := upstreamCalls() - before; n != 0 {
				t.Errorf("the upstream saw %d requests", n)
			}
			var head strings.Builder
			for k, vs := range a.header {
				head.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
			secrets := append([]string{callerKey, readerKey, creds.password, creds.apiKey, jwtSecret, hookSecret, valid}, bearers.tokens()...)
			for _, secret := range append(secrets, tc.personal...) {
				if len(secret) >= 8 && (strings.Contains(a.body, secret) || strings.Contains(head.String(), secret)) {
					t.Errorf("the answer repeats a secret or personal datum (%d bytes) of the request: %.300s", len(secret), a.body)
				}
			}
		})
	}
	if len(bearers.tokens()) == 0 {
		t.Error("no upstream token was seen: the leak check of tokens checked nothing")
	}
}

// sendHostile sends one case: through the HTTP client, or raw over TCP.
func sendHostile(t *testing.T, g *gateway, tc hostileCase) answer {
	t.Helper()
	if tc.raw == "" {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		h := map[string]string{}
		if tc.body != "" {
			h["Content-Type"] = "application/json"
		}
		host := ""
		for k, v := range tc.headers {
			if k == "Host" {
				host = v
				continue
			}
			h[k] = v
		}
		req, err := http.NewRequest(tc.method, g.url+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(g.url)
		if err != nil {
			t.Fatal(err)
		}
		// The path is sent exactly as written (Opaque), escapes and dot segments included.
		req.URL = &url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: "//" + u.Host + strings.SplitN(tc.path, "?", 2)[0]}
		if _, q, ok := strings.Cut(tc.path, "?"); ok {
			req.URL.RawQuery = q
		}
		req.Host = host
		req.Header.Set("X-API-Key", g.key)
		for k, v := range h {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, strings.ReplaceAll(tc.raw, "{KEY}", g.key)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}
