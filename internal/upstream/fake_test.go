package upstream

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// prefix is where the fake upstream is mounted: the client's base URL ends in it, so a client
// that drops or doubles part of the URL hits the catch-all and fails the test.
const prefix = "/prefix"

var testCreds = Credentials{Identifier: "ops@example.com", Password: "s3cret-Passw0rd!", APIKey: "key-0123456789abcdef"}

// recorded is one request the fake upstream received.
type recorded struct {
	Method, Path, Query, APIKey, Auth, ContentType string
	Body                                           []byte
}

// fake is an Inbox Hub upstream for tests: handlers registered on mux with Go 1.22 patterns
// (paths without the prefix); every request is recorded.
type fake struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu   sync.Mutex
	reqs []recorded
}

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{t: t, mux: http.NewServeMux()}
	outer := http.NewServeMux()
	outer.Handle(prefix+"/", http.StripPrefix(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			APIKey: r.Header.Get("X-API-Key"), Auth: r.Header.Get("Authorization"),
			ContentType: r.Header.Get("Content-Type"), Body: body})
		f.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		f.mux.ServeHTTP(w, r)
	})))
	outer.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside the base path: %s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	f.srv = httptest.NewServer(outer)
	t.Cleanup(f.srv.Close)
	return f
}

// client returns a client of the fake with fast retries and a breaker that does not get in the way;
// opts override those.
func (f *fake) client(opts ...Option) *Client {
	f.t.Helper()
	base := []Option{WithRetry(3, time.Millisecond, 5*time.Millisecond), WithTimeout(5 * time.Second),
		WithBreaker(1000, time.Minute)}
	c, err := New(f.srv.URL+prefix, testCreds, append(base, opts...)...)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	return c
}

func (f *fake) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fake) hits() int { return len(f.requests()) }

func (f *fake) paths() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ok(data any) map[string]any { return map[string]any{"success": true, "data": data} }

func fail(code, text string) map[string]any {
	return map[string]any{"success": false, "error": text, "code": code, "timestamp": "2025-11-07T10:00:00Z"}
}

// contactsOK answers the contacts route with one page.
func contactsOK(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, ok(map[string]any{
		"contacts":   []map[string]any{{"id": "34600000001@s.whatsapp.net", "name": "Ana"}},
		"pagination": map[string]any{"total": 1, "page": 1, "limit": 50, "pages": 1},
	}))
}

// fakeTokens is a TokenSource: generation g hands out values[g-1] (the last one once exhausted);
// Rejected moves to the next generation when the rejected one is current.
type fakeTokens struct {
	mu       sync.Mutex
	gen      int64
	values   []string
	rejected []AccessToken
	err      error
}

func newTokens(values ...string) *fakeTokens { return &fakeTokens{gen: 1, values: values} }

func (f *fakeTokens) Token(context.Context) (AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return AccessToken{}, f.err
	}
	i := min(int(f.gen-1), len(f.values)-1)
	return AccessToken{Value: f.values[i], Generation: f.gen}, nil
}

func (f *fakeTokens) Rejected(_ context.Context, t AccessToken) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected = append(f.rejected, t)
	if t.Generation == f.gen {
		f.gen++
	}
}

func (f *fakeTokens) rejections() []AccessToken {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AccessToken(nil), f.rejected...)
}

// fakeLimiter records the categories it is asked for and answers err.
type fakeLimiter struct {
	mu    sync.Mutex
	asked []Category
	err   error
}

func (l *fakeLimiter) Wait(_ context.Context, c Category) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, c)
	return l.err
}

func (l *fakeLimiter) categories() []Category {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Category(nil), l.asked...)
}

// profileAccepts serves GET /api/auth/profile, which confirms a 401: 200 for the given tokens,
// 401 INVALID_TOKEN for any other.
func profileAccepts(f *fake, tokens ...string) {
	f.mux.HandleFunc("GET /api/auth/profile", func(w http.ResponseWriter, r *http.Request) {
		for _, tok := range tokens {
			if r.Header.Get("Authorization") == "Bearer "+tok {
				writeJSON(w, 200, ok(map[string]any{"user": map[string]any{"id": "u1"}}))
				return
			}
		}
		writeJSON(w, 401, fail("INVALID_TOKEN", "expired"))
	})
}
