package passthrough_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/passthrough"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Callers' gateway keys (generated per run): one with every scope, one that may only read
// sessions, one that may read and write sessions but is no admin.
var (
	fullKey   = "test-full-" + randHex(12)
	readerKey = "test-reader-" + randHex(12)
	writerKey = "test-writer-" + randHex(12)
)

// The upstream client is what the passthrough relays through.
var _ passthrough.RawDoer = (*upstream.Client)(nil)

// countingDoer counts the requests that reach the upstream client.
type countingDoer struct {
	next  passthrough.RawDoer
	calls atomic.Int64
}

func (d *countingDoer) Do(ctx context.Context, req upstream.RawRequest) (*upstream.RawResponse, error) {
	d.calls.Add(1)
	return d.next.Do(ctx, req)
}

// doerFunc is a RawDoer made of a function (a fake upstream client).
type doerFunc func(ctx context.Context, req upstream.RawRequest) (*upstream.RawResponse, error)

func (f doerFunc) Do(ctx context.Context, req upstream.RawRequest) (*upstream.RawResponse, error) {
	return f(ctx, req)
}

// gateway serves the passthrough over real HTTP behind request ids, error mapping and real
// caller authentication, as the router mounts it.
func gateway(t *testing.T, doer passthrough.RawDoer, opts ...passthrough.Option) string {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	authn, err := auth.New(auth.Options{APIKeys: []config.APIKey{
		{Name: "full", SHA256: sha256.Sum256([]byte(fullKey)), Scopes: config.Scopes},
		{Name: "reader", SHA256: sha256.Sum256([]byte(readerKey)), Scopes: []string{"sessions:read"}},
		{Name: "writer", SHA256: sha256.Sum256([]byte(writerKey)), Scopes: []string{"sessions:read", "sessions:write"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.ContextWithFallback = true
	r.Use(middleware.RequestID(), middleware.Errors(slog.New(slog.DiscardHandler)), middleware.BodyLimit(4<<20))
	r.Any("/api/*path", authn.Middleware(), passthrough.New(doer, opts...).Handle)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// upstreamKey is the simulator's API key: only the gateway holds it.
var upstreamKey = "test_upstream_" + randHex(8)

// startSim runs the simulator over HTTP under a base-path prefix, with a fixed clock so that
// two reads of the same data are byte-identical; it returns the simulator and its base URL.
func startSim(t *testing.T) (*sim.Server, string) {
	t.Helper()
	at := time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC)
	s, err := sim.New(sim.Options{Identifier: "gw@example.invalid", Password: "test-pw-" + randHex(6), APIKey: upstreamKey,
		RateAuth: sim.NoLimit(), RateRead: sim.NoLimit(), RateSend: sim.NoLimit(), RateGlobal: sim.NoLimit(),
		Clock: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/inboxhub/", http.StripPrefix("/inboxhub", s.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); s.Close() })
	return s, srv.URL + "/inboxhub"
}

func client(t *testing.T, baseURL string) *upstream.Client {
	t.Helper()
	c, err := upstream.New(baseURL, upstream.Credentials{APIKey: upstreamKey}, upstream.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCache(t *testing.T, opts ...cache.Option) *cache.ReadThrough {
	t.Helper()
	rt, err := cache.NewReadThrough(redistest.New(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	return rt
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// call sends a request with the caller's key (none when key is empty); rawPath is sent as is.
func call(t *testing.T, method, url, key, contentType, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func problemOf(t *testing.T, r reply) problem.Details {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want %s (status %d, body %s)", ct, problem.ContentType, r.status, r.body)
	}
	var d problem.Details
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReadsRelayedAsTheUpstreamAnswers(t *testing.T) {
	_, simURL := startSim(t)
	doer := &countingDoer{next: client(t, simURL)}
	gw := gateway(t, doer, passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))

	for _, path := range []string{
		"/api/sessions?page=1&limit=10",
		"/api/sessions/demo_session/status",
		"/api/contacts/demo_session?limit=5&search=a",
		"/api/messages/demo_session/chats?limit=3",
		"/api/sessions/no_such_session/status", // the upstream's 404, relayed as it is
	} {
		t.Run(path, func(t *testing.T) {
			direct := call(t, http.MethodGet, simURL+path, upstreamKey, "", "")
			via := call(t, http.MethodGet, gw+path, fullKey, "", "")
			if via.status != direct.status || !bytes.Equal(via.body, direct.body) {
				t.Fatalf("via the gateway: %d %s\ndirect: %d %s", via.status, via.body, direct.status, direct.body)
			}
			if via.header.Get("Content-Type") != direct.header.Get("Content-Type") {
				t.Errorf("Content-Type = %q, want %q", via.header.Get("Content-Type"), direct.header.Get("Content-Type"))
			}
			if via.header.Get(middleware.HeaderRequestID) == "" {
				t.Error("no X-Request-ID on the answer")
			}
			if via.header.Get(passthrough.HeaderCache) != "miss" {
				t.Errorf("X-Cache = %q, want miss", via.header.Get(passthrough.HeaderCache))
			}
			again := call(t, http.MethodGet, gw+path, fullKey, "", "")
			want := "hit"
			if direct.status != http.StatusOK {
				want = "miss" // only 200s are cached
			}
			if got := again.header.Get(passthrough.HeaderCache); got != want || !bytes.Equal(again.body, direct.body) {
				t.Errorf("second read: X-Cache %q, body %s; want %s and the same body", got, again.body, want)
			}
		})
	}
}

func TestSendRelayedAndDropsTheSessionsCachedReads(t *testing.T) {
	s, simURL := startSim(t)
	gw := gateway(t, client(t, simURL), passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))
	chats := gw + "/api/messages/demo_session/chats?limit=100"
	if r := call(t, http.MethodGet, chats, fullKey, "", ""); r.status != http.StatusOK {
		t.Fatalf("chats: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, chats, fullKey, "", ""); r.header.Get(passthrough.HeaderCache) != "hit" {
		t.Fatalf("second chats read not a hit: %q", r.header.Get(passthrough.HeaderCache))
	}

	body := `{"to": "34600111222@s.whatsapp.net", "message": "Hola desde el gateway", "type": "text"}`
	r := call(t, http.MethodPost, gw+"/api/messages/demo_session/send", fullKey, "application/json", body)
	if r.status/100 != 2 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	var sent struct {
		Success bool `json:"success"`
		Data    struct {
			Message struct {
				Body   string `json:"body"`
				ChatID string `json:"chatId"`
			} `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &sent); err != nil || !sent.Success || sent.Data.Message.Body != "Hola desde el gateway" {
		t.Fatalf("send answer = %s (%v)", r.body, err)
	}
	if got := s.Counters().Requests["POST /api/messages/{sessionId}/send"]; got != 1 {
		t.Errorf("sends reaching the upstream = %d, want 1", got)
	}
	after := call(t, http.MethodGet, chats, fullKey, "", "")
	if after.header.Get(passthrough.HeaderCache) != "miss" || !strings.Contains(string(after.body), "34600111222@s.whatsapp.net") {
		t.Errorf("chats after the send: X-Cache %q; want a fresh read that shows the new chat", after.header.Get(passthrough.HeaderCache))
	}
}

func TestRefusedWithoutReachingTheUpstream(t *testing.T) {
	_, simURL := startSim(t)
	doer := &countingDoer{next: client(t, simURL)}
	gw := gateway(t, doer, passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))
	long := strings.Repeat("a", 101)
	cases := []struct {
		name, method, path, key, contentType, body string
		status                                     int
		code, detail                               string
	}{
		// The gateway holds the upstream login.
		{name: "login", method: "POST", path: "/api/auth/login", body: `{"identifier":"x","password":"y"}`, contentType: "application/json", status: 403, code: "FORBIDDEN", detail: "holds the Inbox Hub login"},
		{name: "refresh", method: "POST", path: "/api/auth/refresh-token", status: 403, code: "FORBIDDEN", detail: "holds the Inbox Hub login"},
		{name: "profile", method: "GET", path: "/api/auth/profile", status: 403, code: "FORBIDDEN", detail: "holds the Inbox Hub login"},
		// Not on the allow-list.
		{name: "organizations", method: "GET", path: "/api/organizations", status: 404, code: "NOT_FOUND", detail: "not available through the gateway"},
		{name: "templates", method: "GET", path: "/api/templates/1", status: 404, code: "NOT_FOUND"},
		{name: "patch sessions", method: "PATCH", path: "/api/sessions", status: 404, code: "NOT_FOUND"},
		{name: "delete a chat", method: "DELETE", path: "/api/messages/demo_session/34600111222@s.whatsapp.net", status: 404, code: "NOT_FOUND"},
		{name: "extra segment", method: "GET", path: "/api/sessions/demo_session/status/more", status: 404, code: "NOT_FOUND"},
		// Scopes.
		{name: "reader connects", method: "POST", path: "/api/sessions/demo_session/connect", key: readerKey, status: 403, code: "FORBIDDEN", detail: `"sessions:write"`},
		{name: "reader reads contacts", method: "GET", path: "/api/contacts/demo_session", key: readerKey, status: 403, code: "FORBIDDEN", detail: `"messages:read"`},
		{name: "reader sends", method: "POST", path: "/api/messages/demo_session/send", key: readerKey, status: 403, code: "FORBIDDEN", detail: `"messages:send"`},
		{name: "no key", method: "GET", path: "/api/sessions", key: "-", status: 401, code: "UNAUTHENTICATED"},
		// Paths that could address something else than they show.
		{name: "dot dot", method: "GET", path: "/api/sessions/../auth/profile", status: 400, code: "INVALID_REQUEST"},
		{name: "encoded dot dot", method: "GET", path: "/api/sessions/%2e%2e/auth/profile", status: 400, code: "INVALID_REQUEST"},
		{name: "encoded slash", method: "GET", path: "/api/sessions/demo%2Fsession/status", status: 400, code: "INVALID_REQUEST"},
		{name: "encoded traversal", method: "GET", path: "/api/contacts/demo_session/info/..%2F..%2Fauth", status: 400, code: "INVALID_REQUEST"},
		{name: "encoded backslash", method: "GET", path: "/api/sessions/demo%5Csession", status: 400, code: "INVALID_REQUEST"},
		{name: "empty segment", method: "GET", path: "/api//sessions", status: 400, code: "INVALID_REQUEST"},
		{name: "dot", method: "GET", path: "/api/sessions/./demo_session", status: 400, code: "INVALID_REQUEST"},
		{name: "control character", method: "GET", path: "/api/sessions/demo%00session", status: 400, code: "INVALID_REQUEST"},
		// Ids, query and body.
		{name: "bad session id", method: "GET", path: "/api/sessions/demo$session/status", status: 400, code: "INVALID_REQUEST", detail: ""},
		{name: "long session id", method: "GET", path: "/api/contacts/" + long, status: 400, code: "INVALID_REQUEST"},
		{name: "bad chat id", method: "GET", path: "/api/messages/demo_session/not-a-jid", status: 400, code: "INVALID_REQUEST"},
		{name: "dot dot inside a JID", method: "PUT", path: "/api/messages/demo_session/..@../read", status: 400, code: "INVALID_REQUEST"},
		{name: "limit 0", method: "GET", path: "/api/contacts/demo_session?limit=0", status: 400, code: "INVALID_REQUEST"},
		{name: "limit 500", method: "GET", path: "/api/contacts/demo_session?limit=500", status: 400, code: "INVALID_REQUEST"},
		{name: "page text", method: "GET", path: "/api/sessions?page=two", status: 400, code: "INVALID_REQUEST"},
		{name: "long query", method: "GET", path: "/api/contacts/demo_session?search=" + strings.Repeat("x", 3000), status: 400, code: "INVALID_REQUEST"},
		{name: "bad query", method: "GET", path: "/api/sessions?page=%zz", status: 400, code: "INVALID_REQUEST"},
		{name: "text body", method: "POST", path: "/api/messages/demo_session/send", contentType: "text/plain", body: "hola", status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "broken JSON", method: "POST", path: "/api/messages/demo_session/send", contentType: "application/json", body: `{"to":`, status: 400, code: "INVALID_REQUEST"},
		{name: "duplicate member", method: "POST", path: "/api/messages/demo_session/send", contentType: "application/json", body: `{"to":"34600111222@s.whatsapp.net","message":"a","to":"34600999888@s.whatsapp.net"}`, status: 400, code: "INVALID_REQUEST", detail: "twice"},
		{name: "case variant member", method: "POST", path: "/api/messages/demo_session/send", contentType: "application/json", body: `{"to":"34600111222@s.whatsapp.net","message":"a","To":"34600999888@s.whatsapp.net"}`, status: 400, code: "INVALID_REQUEST", detail: "twice"},
		{name: "nested case variant", method: "POST", path: "/api/sessions", contentType: "application/json", body: `{"sessionId":"dup_1","sessionName":"D","meta":{"a":1,"A":2}}`, status: 400, code: "INVALID_REQUEST", detail: "twice"},
		{name: "large body", method: "POST", path: "/api/sessions", contentType: "application/json", body: `{"x":"` + strings.Repeat("x", 2<<20) + `"}`, status: 413, code: "PAYLOAD_TOO_LARGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			switch key {
			case "":
				key = fullKey
			case "-":
				key = ""
			}
			r := call(t, tc.method, gw+tc.path, key, tc.contentType, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			d := problemOf(t, r)
			if d.Code != tc.code || !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("problem = %s %q, want %s containing %q", d.Code, d.Detail, tc.code, tc.detail)
			}
			if got := doer.calls.Load(); got != 0 {
				t.Fatalf("%d calls reached the upstream, want 0", got)
			}
		})
	}
}

func TestHeadersRelayedAndDropped(t *testing.T) {
	doer := doerFunc(func(context.Context, upstream.RawRequest) (*upstream.RawResponse, error) {
		h := http.Header{}
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Connection", "X-Hop-Named, keep-alive")
		h.Set("X-Hop-Named", "hop")
		for _, k := range []string{"Keep-Alive", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
			"Set-Cookie", "Www-Authenticate", "RateLimit-Limit", "RateLimit-Remaining", "X-RateLimit-Reset",
			"Access-Control-Allow-Origin", "X-Powered-By", "X-Request-Id", "X-Cache", "Server",
			"X-Upstream-Debug", "X-Frame-Options", "Content-Security-Policy", "Strict-Transport-Security"} {
			h.Set(k, "upstream")
		}
		h.Set("Location", "https://evil.example.invalid/next")
		h.Set("Refresh", "0; url=https://evil.example.invalid/")
		h.Set("Link", "<https://evil.example.invalid/>; rel=preload")
		h.Set("Retry-After", "7")
		h.Set("ETag", `"v1"`)
		return &upstream.RawResponse{Status: http.StatusCreated, Header: h, Body: []byte(`{"success":true,"data":{"id":5}}`)}, nil
	})
	gw := gateway(t, doer)
	r := call(t, http.MethodPost, gw+"/api/sessions", fullKey, "application/json", `{"sessionId":"new_one","sessionName":"N"}`)
	if r.status != http.StatusCreated || string(r.body) != `{"success":true,"data":{"id":5}}` {
		t.Fatalf("answer = %d %s", r.status, r.body)
	}
	for _, k := range []string{"X-Hop-Named", "Keep-Alive", "Proxy-Authenticate", "Te", "Trailer", "Upgrade", "Set-Cookie",
		"Www-Authenticate", "Ratelimit-Limit", "Ratelimit-Remaining", "X-Ratelimit-Reset", "Access-Control-Allow-Origin",
		"X-Powered-By", "X-Cache", "Server", "X-Upstream-Debug", "Location", "Refresh", "Link", "X-Frame-Options",
		"Content-Security-Policy", "Strict-Transport-Security"} {
		if v := r.header.Get(k); v != "" {
			t.Errorf("%s relayed: %q", k, v)
		}
	}
	if r.header.Get("Connection") == "X-Hop-Named, keep-alive" || len(r.header.Values("Transfer-Encoding")) > 0 {
		t.Errorf("hop-by-hop headers relayed: %v", r.header)
	}
	if got := r.header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if r.header.Get("Retry-After") != "7" || r.header.Get("ETag") != `"v1"` {
		t.Errorf("end-to-end headers not relayed: %v", r.header)
	}
	if id := r.header.Get(middleware.HeaderRequestID); id == "" || id == "upstream" {
		t.Errorf("X-Request-ID = %q, want the gateway's", id)
	}
}

func TestCallerCredentialsNeverReachTheUpstream(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	fake := httptest.NewServer(http.StripPrefix("/base", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true,"data":{"sessions":[],"pagination":{"total":0,"page":1,"limit":10,"pages":0}}}`)
	})))
	t.Cleanup(fake.Close)
	gw := gateway(t, client(t, fake.URL+"/base"))

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, gw+"/api/sessions", strings.NewReader(`{"sessionId":"abc"}`))
		req.Header.Set("X-API-Key", fullKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", "session=caller-cookie-"+fullKey)
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("Proxy-Authorization", "Basic "+fullKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", method, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("upstream saw %d requests, want 2", len(seen))
	}
	for _, h := range seen {
		if got := h.Get("X-API-Key"); got != upstreamKey {
			t.Errorf("upstream X-API-Key = %q, want the gateway's upstream key", got)
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, fullKey) {
					t.Errorf("the caller's key reached the upstream in %s", k)
				}
			}
		}
		for _, k := range []string{"Cookie", "X-Forwarded-For", "Proxy-Authorization"} {
			if h.Get(k) != "" {
				t.Errorf("the caller's %s reached the upstream", k)
			}
		}
	}
}

func TestConcurrentGetsMakeOneUpstreamCall(t *testing.T) {
	s, simURL := startSim(t)
	s.SetFaults(sim.Faults{Latency: 300 * time.Millisecond})
	gw := gateway(t, client(t, simURL), passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))
	const n = 50
	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = call(t, http.MethodGet, gw+"/api/sessions/demo_session/status", fullKey, "", "")
		})
	}
	close(start)
	wg.Wait()
	for i, r := range replies {
		if r.status != http.StatusOK || !bytes.Equal(r.body, replies[0].body) {
			t.Fatalf("reply %d: %d %s", i, r.status, r.body)
		}
	}
	if got := s.Counters().Requests["GET /api/sessions/{id}/status"]; got != 1 {
		t.Errorf("%d concurrent identical GETs made %d upstream calls, want 1", n, got)
	}
}

func TestGatewayFailuresAnsweredAsProblems(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{&upstream.RateLimitError{RetryAfter: 3 * time.Second, Source: "gateway"}, 429, "RATE_LIMITED"},
		{fmt.Errorf("breaker: %w", upstream.ErrUnavailable), 503, "UPSTREAM_UNAVAILABLE"},
		{fmt.Errorf("login: %w", upstream.ErrAuthFailed), 502, "UPSTREAM_AUTH_FAILED"},
		{fmt.Errorf("slow: %w", upstream.ErrTimeout), 504, "UPSTREAM_TIMEOUT"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			doer := doerFunc(func(context.Context, upstream.RawRequest) (*upstream.RawResponse, error) { return nil, tc.err })
			for _, cached := range []bool{false, true} {
				var opts []passthrough.Option
				if cached {
					opts = append(opts, passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))
				}
				r := call(t, http.MethodGet, gateway(t, doer, opts...)+"/api/sessions", fullKey, "", "")
				if r.status != tc.status || problemOf(t, r).Code != tc.code {
					t.Errorf("cached=%v: %d %s, want %d %s", cached, r.status, r.body, tc.status, tc.code)
				}
			}
		})
	}
}

func TestStaleAnswerStandsInForAnUpstreamOutage(t *testing.T) {
	s, simURL := startSim(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	gw := gateway(t, client(t, simURL), passthrough.WithCache(newCache(t, cache.WithClock(clock)), passthrough.DefaultPolicy()))
	path := "/api/sessions/demo_session/status"
	first := call(t, http.MethodGet, gw+path, fullKey, "", "")
	if first.status != http.StatusOK {
		t.Fatalf("first read: %d", first.status)
	}
	mu.Lock()
	now = now.Add(time.Minute) // past freshness and revalidation, within stale-if-error
	mu.Unlock()
	s.SetFaults(sim.Faults{AllStatus: http.StatusServiceUnavailable})
	r := call(t, http.MethodGet, gw+path, fullKey, "", "")
	if r.status != http.StatusOK || !bytes.Equal(r.body, first.body) || r.header.Get(passthrough.HeaderCache) != "stale" {
		t.Fatalf("read during the outage = %d %q %s; want the stale 200", r.status, r.header.Get(passthrough.HeaderCache), r.body)
	}
	if r.header.Get("Age") != "60" {
		t.Errorf("Age = %q, want 60", r.header.Get("Age"))
	}
	// Nothing cached for this one: the upstream's 503 is relayed as it answered it.
	direct := call(t, http.MethodGet, simURL+"/api/sessions/sales_team/status", upstreamKey, "", "")
	other := call(t, http.MethodGet, gw+"/api/sessions/sales_team/status", fullKey, "", "")
	if other.status != http.StatusServiceUnavailable || !bytes.Equal(other.body, direct.body) {
		t.Errorf("uncached read during the outage = %d %s; want the upstream's %d %s", other.status, other.body, direct.status, direct.body)
	}
}

func TestAllowListCoversTheUpstreamRoutes(t *testing.T) {
	want := map[string]string{
		"GET /api/sessions": "sessions:read", "POST /api/sessions": "sessions:write",
		"GET /api/sessions/:id": "sessions:read", "DELETE /api/sessions/:id": "sessions:write",
		"GET /api/sessions/:id/status": "sessions:read", "GET /api/sessions/:id/qr": "sessions:read",
		"POST /api/sessions/:id/connect": "sessions:write", "POST /api/sessions/:id/disconnect": "sessions:write",
		"PUT /api/sessions/:id/webhook": "admin",
		"GET /api/contacts/:sessionId":  "messages:read", "GET /api/contacts/:sessionId/info/:contactId": "messages:read",
		"GET /api/messages/:sessionId/chats": "messages:read", "GET /api/messages/:sessionId": "messages:read",
		"GET /api/messages/:sessionId/:chatId": "messages:read",
		"POST /api/messages/:sessionId/send":   "messages:send", "PUT /api/messages/:sessionId/:chatId/read": "messages:send",
	}
	got := map[string]string{}
	for _, r := range passthrough.AllowList() {
		got[r.Method+" "+r.Pattern] = r.Scope
	}
	for k, scope := range want {
		if got[k] != scope {
			t.Errorf("%s: scope %q, want %q", k, got[k], scope)
		}
	}
	if len(got) != len(want) {
		t.Errorf("allow-list has %d routes, want %d", len(got), len(want))
	}
}

// simSession reads a session from the simulator directly, as the upstream holds it.
func simSession(t *testing.T, simURL, id string) (status int, webhookURL string) {
	t.Helper()
	r := call(t, http.MethodGet, simURL+"/api/sessions/"+id, upstreamKey, "", "")
	var env struct {
		Data struct {
			WebhookURL *string `json:"webhookUrl"`
			Session    *struct {
				WebhookURL *string `json:"webhookUrl"`
			} `json:"session"`
		} `json:"data"`
	}
	_ = json.Unmarshal(r.body, &env)
	w := env.Data.WebhookURL
	if env.Data.Session != nil {
		w = env.Data.Session.WebhookURL
	}
	if w == nil {
		return r.status, ""
	}
	return r.status, *w
}

// TestWebhookTargetIsAnAdminDecision: a key that may write sessions but is no admin can neither
// point a session's webhook elsewhere (PUT .../webhook is 403, nothing reaches the upstream) nor
// create a session with its own webhook settings, in any spelling: those are replaced by the
// gateway's own target (or dropped when none is configured). An admin's settings are relayed.
func TestWebhookTargetIsAnAdminDecision(t *testing.T) {
	const attacker = "http://127.0.0.1:9/steal"
	secret := "test-webhook-secret-" + randHex(8)
	target := upstream.Webhook{URL: "https://gateway.example.invalid/webhooks/inbox-hub", Secret: secret,
		Events: []string{"message.received", "session.connected"}}

	for _, withTarget := range []bool{true, false} {
		t.Run(fmt.Sprintf("target=%v", withTarget), func(t *testing.T) {
			s, simURL := startSim(t)
			doer := &countingDoer{next: client(t, simURL)}
			var opts []passthrough.Option
			want := ""
			if withTarget {
				opts, want = append(opts, passthrough.WithWebhookTarget(target)), target.URL
			}
			gw := gateway(t, doer, opts...)

			r := call(t, http.MethodPut, gw+"/api/sessions/demo_session/webhook", writerKey, "application/json",
				`{"webhookUrl":"`+attacker+`"}`)
			if d := problemOf(t, r); r.status != http.StatusForbidden || d.Code != problem.CodeForbidden || !strings.Contains(d.Detail, `"admin"`) {
				t.Fatalf("PUT webhook by a write key = %d %s, want 403 naming the admin scope", r.status, r.body)
			}
			if n := doer.calls.Load(); n != 0 {
				t.Fatalf("%d calls reached the upstream, want 0", n)
			}
			if got := s.Counters().Requests["PUT /api/sessions/{id}/webhook"]; got != 0 {
				t.Fatalf("the upstream saw %d webhook changes", got)
			}

			for i, body := range []string{
				`{"sessionId":"wh_%d","sessionName":"W","webhookUrl":"` + attacker + `","webhookSecret":"0123456789abcdef0123"}`,
				`{"sessionId":"wh_%d","sessionName":"W","WebhookURL":"` + attacker + `"}`,
				`{"sessionId":"wh_%d","sessionName":"W","WEBHOOKURL":"` + attacker + `","webhook_events":["message.received"]}`,
				`{"sessionId":"wh_%d","sessionName":"W","webhook\u0055rl":"` + attacker + `"}`,
				`{"sessionId":"wh_%d","sessionName":"W"}`,
			} {
				id := fmt.Sprintf("wh_%d", i)
				r := call(t, http.MethodPost, gw+"/api/sessions", writerKey, "application/json", fmt.Sprintf(body, i))
				if r.status != http.StatusCreated {
					t.Fatalf("create %d by a write key = %d %s", i, r.status, r.body)
				}
				if strings.Contains(string(r.body), secret) {
					t.Fatalf("the create answer holds the gateway's webhook secret: %s", r.body)
				}
				if _, got := simSession(t, simURL, id); got != want {
					t.Errorf("create %d: the upstream's session reports to %q, want %q", i, got, want)
				}
			}

			// An admin decides where a session's events go.
			r = call(t, http.MethodPost, gw+"/api/sessions", fullKey, "application/json",
				`{"sessionId":"by_admin","sessionName":"A","webhookUrl":"https://crm.example.invalid/hook"}`)
			if _, got := simSession(t, simURL, "by_admin"); r.status != http.StatusCreated || got != "https://crm.example.invalid/hook" {
				t.Errorf("admin create = %d, webhook %q", r.status, got)
			}
			r = call(t, http.MethodPut, gw+"/api/sessions/demo_session/webhook", fullKey, "application/json",
				`{"webhookUrl":"https://crm.example.invalid/other"}`)
			if _, got := simSession(t, simURL, "demo_session"); r.status != http.StatusOK || got != "https://crm.example.invalid/other" {
				t.Errorf("admin PUT webhook = %d %s, webhook %q", r.status, r.body, got)
			}
		})
	}
}

// TestAnswersThatAreNotJSONBecomeProblems: what the upstream answers without JSON (a proxy's HTML
// error page, a redirect, a text error) is never relayed: the caller gets the gateway's
// problem+json with the mapped status, without the upstream's body or its Location, Refresh or
// Link. JSON answers, errors included, are still relayed as they are.
func TestAnswersThatAreNotJSONBecomeProblems(t *testing.T) {
	s, simURL := startSim(t)
	// The simulator answers an injected 502 and 504 with nginx's HTML page, as the real deployment does.
	s.SetFaults(sim.Faults{RouteStatus: map[string]int{
		"GET /api/sessions/{id}/status":       http.StatusBadGateway,
		"GET /api/messages/{sessionId}/chats": http.StatusGatewayTimeout,
		"GET /api/contacts/{sessionId}":       http.StatusNotFound, // a JSON error: relayed
	}})
	gw := gateway(t, client(t, simURL), passthrough.WithCache(newCache(t), passthrough.DefaultPolicy()))
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/sessions/demo_session/status", 503, problem.CodeUpstreamUnavailable},
		{"/api/messages/demo_session/chats", 503, problem.CodeUpstreamUnavailable},
	} {
		direct := call(t, http.MethodGet, simURL+tc.path, upstreamKey, "", "")
		if !strings.Contains(direct.header.Get("Content-Type"), "text/html") {
			t.Fatalf("the simulator's %d is not HTML: %q", direct.status, direct.header.Get("Content-Type"))
		}
		r := call(t, http.MethodGet, gw+tc.path, fullKey, "", "")
		if r.status != tc.status || problemOf(t, r).Code != tc.code || strings.Contains(string(r.body), "nginx") {
			t.Errorf("%s: %d %s, want %d %s without the upstream's page", tc.path, r.status, r.body, tc.status, tc.code)
		}
	}
	direct := call(t, http.MethodGet, simURL+"/api/contacts/demo_session", upstreamKey, "", "")
	r := call(t, http.MethodGet, gw+"/api/contacts/demo_session", fullKey, "", "")
	if r.status != http.StatusNotFound || !bytes.Equal(r.body, direct.body) {
		t.Errorf("a JSON error of the upstream: %d %s, want it relayed: %d %s", r.status, r.body, direct.status, direct.body)
	}

	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		header      map[string]string
		want        int
		code        string
	}{
		{"redirect", 302, "text/html", `<a href="https://evil.example.invalid/">moved</a>`,
			map[string]string{"Location": "https://evil.example.invalid/", "Refresh": "0; url=https://evil.example.invalid/"}, 502, problem.CodeUpstreamError},
		{"html 403", 403, "text/html", `<html><body>Forbidden by WAF, rule 942100</body></html>`, nil, 502, problem.CodeUpstreamError},
		{"text 404", 404, "text/plain", `Cannot GET /api/sessions`, nil, 404, problem.CodeNotFound},
		{"text 429", 429, "text/plain", `Too many requests`, map[string]string{"Retry-After": "7"}, 429, problem.CodeRateLimited},
		{"html 500", 500, "text/html", `<pre>TypeError: at /srv/app/index.js:12</pre>`, nil, 503, problem.CodeUpstreamUnavailable},
		{"json type, broken body", 400, "application/json", `{"success":false,"error":`, nil, 502, problem.CodeUpstreamError},
		{"html 200", 200, "text/html", `<script>alert(1)</script>`, nil, 502, problem.CodeUpstreamError},
		{"no content type 200", 200, "", `{"success":true}`, nil, 502, problem.CodeUpstreamError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doer := doerFunc(func(context.Context, upstream.RawRequest) (*upstream.RawResponse, error) {
				h := http.Header{}
				if tc.contentType != "" {
					h.Set("Content-Type", tc.contentType)
				}
				for k, v := range tc.header {
					h.Set(k, v)
				}
				h.Set("Link", "<https://evil.example.invalid/>; rel=preload")
				return &upstream.RawResponse{Status: tc.status, Header: h, Body: []byte(tc.body)}, nil
			})
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				r := call(t, method, gateway(t, doer)+"/api/sessions", fullKey, "application/json", `{"sessionId":"abc","sessionName":"A"}`)
				if r.status != tc.want || problemOf(t, r).Code != tc.code {
					t.Fatalf("%s: %d %s, want %d %s", method, r.status, r.body, tc.want, tc.code)
				}
				if strings.Contains(string(r.body), tc.body) || strings.Contains(string(r.body), "evil") {
					t.Errorf("%s: the upstream's body reached the caller: %s", method, r.body)
				}
				for _, k := range []string{"Location", "Refresh", "Link"} {
					if v := r.header.Get(k); v != "" {
						t.Errorf("%s: %s relayed: %q", method, k, v)
					}
				}
				if tc.header["Retry-After"] != "" && r.header.Get("Retry-After") != tc.header["Retry-After"] {
					t.Errorf("%s: Retry-After = %q, want %q", method, r.header.Get("Retry-After"), tc.header["Retry-After"])
				}
			}
		})
	}
}
