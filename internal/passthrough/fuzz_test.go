package passthrough_test

import (
	"bufio"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/passthrough"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// wireRecorder is the upstream client's transport in FuzzRelayedPath: it records the URL each
// request would have gone to and answers 200 {} without a network.
type wireRecorder struct {
	mu   sync.Mutex
	sent []*url.URL
}

func (w *wireRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	w.mu.Lock()
	w.sent = append(w.sent, req.URL)
	w.mu.Unlock()
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
}

func (w *wireRecorder) take() []*url.URL {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.sent
	w.sent = nil
	return out
}

// fuzzKey is the caller key of FuzzRelayedPath (every scope); fixed and obviously fake.
const fuzzKey = "test-fuzz-passthrough-000000000000"

// FuzzRelayedPath sends fuzzed request lines (method and request target, parsed as the HTTP
// server parses them) through the real router, caller authentication, passthrough and upstream
// client, whose transport only records where each request would go. Whatever the target, a
// request that reaches the upstream goes to a path under the base URL's /api/ that is on the
// allow-list, never /api/auth, with no empty segment and no ".." anywhere, no percent-escape (so no
// encoded slash, backslash, dot or double encoding survives), no backslash or control character,
// and session ids and JIDs that pass their patterns; and no query parameter named page or limit
// is out of range. Every request that does not reach it is answered 4xx problem+json, never 5xx.
// Run: go test ./internal/passthrough -run '^$' -fuzz '^FuzzRelayedPath$' -fuzztime 2m -parallel 1
func FuzzRelayedPath(f *testing.F) {
	gin.SetMode(gin.ReleaseMode)
	wire := &wireRecorder{}
	const base = "http://upstream.invalid/inboxhub"
	up, err := upstream.New(base, upstream.Credentials{APIKey: "test_upstream_fuzz"},
		upstream.WithHTTPClient(&http.Client{Transport: wire}), upstream.WithRetry(1, 1, 1), upstream.WithBreaker(1<<30, 1))
	if err != nil {
		f.Fatal(err)
	}
	authn, err := auth.New(auth.Options{APIKeys: []config.APIKey{{Name: "fuzz", SHA256: sha256.Sum256([]byte(fuzzKey)), Scopes: config.Scopes}}})
	if err != nil {
		f.Fatal(err)
	}
	r := gin.New()
	r.ContextWithFallback = true
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false // as the gateway's router (handlers.newEngine)
	r.NoRoute(middleware.NotFound())
	r.NoMethod(middleware.MethodNotAllowed())
	r.Use(middleware.RequestID(), middleware.Errors(slog.New(slog.DiscardHandler)), middleware.BodyLimit(1<<20))
	r.Any("/api/*path", authn.Middleware(), passthrough.New(up).Handle)

	for _, s := range []struct{ method, target string }{
		{"GET", "/api/sessions"}, {"GET", "/api/sessions/demo_session/status"}, {"GET", "/api/sessions/12/qr"},
		{"GET", "/api/contacts/demo_session/info/34600111222@s.whatsapp.net"}, {"GET", "/api/messages/demo_session/34600111222@c.us?limit=5&page=2"},
		{"PUT", "/api/messages/demo_session/120363000000000000@g.us/read"}, {"DELETE", "/api/sessions/demo_session"},
		{"GET", "/api/sessions/../auth/profile"}, {"GET", "/api/sessions/%2e%2e/auth/profile"}, {"GET", "/api/sessions/%252e%252e/auth"},
		{"GET", "/api/sessions/demo%2Fsession/status"}, {"GET", "/api/sessions/demo%5Csession"}, {"GET", "/api//sessions"},
		{"GET", "/api/sessions/./demo_session"}, {"GET", "/api/sessions/demo%00session"}, {"GET", "/api/contacts/..%2F..%2Fauth"},
		{"GET", "/api/sessions/%E2%80%AEdemo"}, {"GET", "/api/messages/demo_session/..@.."}, {"GET", "/api/auth/login"},
		{"GET", "/API/sessions"}, {"GET", "//api/sessions"}, {"GET", "/api/sessions?page=0"}, {"GET", "/api/sessions;x=1"},
		{"GET", "http://evil.example/api/sessions"}, {"GET", "/api/sessions#frag"}, {"GET", "/api/contacts/" + strings.Repeat("a", 101)},
		{"OPTIONS", "*"}, {"CONNECT", "upstream.invalid:443"}, {"get", "/api/sessions"},
	} {
		f.Add(s.method, s.target)
	}
	allowed := passthrough.AllowList()
	f.Fuzz(func(t *testing.T, method, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: gw.invalid\r\nX-API-Key: " + fuzzKey + "\r\n\r\n")))
		if err != nil {
			return // the server would have refused the request line itself
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		sent := wire.take()
		if len(sent) == 0 {
			if rec.Code < 400 || rec.Code >= 500 || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %q was not relayed but answered %d %q", method, target, rec.Code, rec.Header().Get("Content-Type"))
			}
			return
		}
		if len(sent) != 1 || rec.Code != http.StatusOK {
			t.Fatalf("%s %q: %d upstream requests, answer %d", method, target, len(sent), rec.Code)
		}
		u := sent[0]
		p, ok := strings.CutPrefix(u.EscapedPath(), "/inboxhub/api/")
		switch {
		case !ok || u.Host != "upstream.invalid" || u.Fragment != "" || u.User != nil:
			t.Fatalf("%s %q went to %s", method, target, u)
		case strings.ContainsAny(p, `%\`) || strings.Contains(p, "..") || strings.ContainsFunc(p, func(r rune) bool { return r < 0x21 || r >= 0x7f }):
			t.Fatalf("%s %q went to the escaped path %q", method, target, u.EscapedPath())
		case path.Clean("/"+p) != "/"+p || strings.HasPrefix(p, "auth/") || p == "auth":
			t.Fatalf("%s %q went to the unclean or forbidden path %q", method, target, u.EscapedPath())
		}
		segs := append([]string{"api"}, strings.Split(p, "/")...)
		if !slices.ContainsFunc(allowed, func(rt passthrough.Route) bool { return rt.Method == req.Method && fits(rt.Pattern, segs) }) {
			t.Fatalf("%s %q went to %q, which no allowed route matches", method, target, u.EscapedPath())
		}
		for _, name := range []string{"page", "limit"} {
			for _, v := range u.Query()[name] {
				if strings.TrimLeft(v, "0123456789") != "" || v == "" || strings.TrimLeft(v, "0") == "" {
					t.Fatalf("%s %q relayed %s=%q", method, target, name, v)
				}
			}
		}
	})
}

// fits reports whether the segments of a relayed path fill the route pattern with well-formed
// parameters (FuzzRelayedPath's own reading, independent of the handler's).
func fits(pattern string, segs []string) bool {
	pat := strings.Split(pattern[1:], "/")
	if len(pat) != len(segs) {
		return false
	}
	for i, s := range pat {
		v := segs[i]
		switch s {
		case ":id", ":sessionId":
			if len(v) > 100 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
				return false
			}
		case ":chatId", ":contactId":
			user, host, ok := strings.Cut(v, "@")
			digits := strings.TrimPrefix(v, "+")
			isPhone := len(digits) >= 5 && len(digits) <= 20 && strings.Trim(digits, "0123456789") == ""
			if !isPhone && (!ok || user == "" || host == "" || strings.ContainsAny(host, "@/:") || user == "." || user == "..") {
				return false
			}
		default:
			if s != v {
				return false
			}
		}
	}
	return true
}
