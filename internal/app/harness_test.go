package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/logbuf"
	"github.com/inboxhub-gateway/gateway/internal/sim"
)

// fakeCreds are the generated upstream credentials of one test's simulator.
type fakeCreds struct{ identifier, password, apiKey string }

func newCreds() fakeCreds {
	return fakeCreds{
		identifier: "gw-" + randHex(4) + "@example.invalid",
		password:   "test-pw-" + randHex(8),
		apiKey:     "test_upstream_" + randHex(8),
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startSim runs the simulator over real HTTP. Rates left zero in o get "no limit" here, since
// most tests are about tokens, not quotas.
func startSim(t testing.TB, creds fakeCreds, o sim.Options) (*sim.Server, string) {
	t.Helper()
	o.Identifier, o.Password, o.APIKey = creds.identifier, creds.password, creds.apiKey
	for _, r := range []*sim.Rate{&o.RateAuth, &o.RateRead, &o.RateSend, &o.RateGlobal} {
		if *r == (sim.Rate{}) {
			*r = sim.NoLimit()
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); s.Close() })
	return s, srv.URL
}

// gateway is one replica under test, served over real HTTP: its API at url, its admin listener
// (metrics, detailed readiness) at adminURL.
type gateway struct {
	app      *app.App
	url      string
	adminURL string
	key      string
	logs     *syncBuffer
}

// callerKey is the gateway API key of the tests' caller (generated per run), holding every scope.
var callerKey = "test-caller-" + randHex(12)

// readerKey is a second caller's key (named test-reader) holding only sessions:read and
// messages:read, for the 403 answers.
var readerKey = "test-reader-" + randHex(12)

func keysFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.json")
	body := fmt.Sprintf(`[{"name": "test-crm", "key": %q, "scopes": [%s]},
		{"name": "test-reader", "key": %q, "scopes": ["sessions:read", "messages:read"]}]`, callerKey,
		`"`+strings.Join(config.Scopes, `","`)+`"`, readerKey)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startGateway builds a replica from an environment (through config.Load, as production does)
// pointed at the simulator and the given Redis.
func startGateway(t testing.TB, simURL string, creds fakeCreds, redisURL string, extra map[string]string, opts ...app.Option) *gateway {
	t.Helper()
	env := map[string]string{
		"INBOXHUB_BASE_URL":     simURL,
		"INBOXHUB_IDENTIFIER":   creds.identifier,
		"INBOXHUB_PASSWORD":     creds.password,
		"INBOXHUB_API_KEY":      creds.apiKey,
		"REDIS_URL":             redisURL,
		"GATEWAY_API_KEYS_FILE": keysFile(t),
		"GATEWAY_CALLER_RATE":   "0",
		// The hostile suites fail authentication on purpose, many times, from 127.0.0.1;
		// TestAuthFailuresLockOutTheAddress turns the throttle on.
		"GATEWAY_AUTH_FAILURE_RATE": "0",
		"UPSTREAM_RATE_READ":        "0",
		"UPSTREAM_RATE_SEND":        "0",
		"UPSTREAM_RATE_AUTH":        "100/1m",
		// Each replica its own webhook spool, as on separate machines.
		"GATEWAY_WEBHOOK_SPOOL_DIR": t.TempDir(),
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] }, app.ConfigChecks()...)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	var logOut io.Writer = logs
	if _, bench := t.(*testing.B); bench {
		// Benchmarks log as production does, one write per line, to /dev/null instead of a buffer
		// that would grow by hundreds of megabytes.
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Buffered as in cmd/gateway.
		buffered := logbuf.New(f, 0, 0)
		t.Cleanup(func() { _ = buffered.Close(); _ = f.Close() })
		logOut = buffered
	}
	ctx, cancel := context.WithCancel(context.Background())
	// As in cmd/gateway: the access log writes its lines to the JSON handler's writer itself.
	opts = append([]app.Option{app.WithLogOutput(logOut)}, opts...)
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(logOut, nil)), "test", opts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	admin := httptest.NewServer(a.AdminHandler())
	t.Cleanup(func() {
		srv.Close()
		admin.Close()
		cancel()
		a.Close()
		assertNoSecrets(t, logs.String(), creds)
	})
	return &gateway{app: a, url: srv.URL, adminURL: admin.URL, key: callerKey, logs: logs}
}

// adminGet asks the replica's admin listener (no credential: it has none).
func (g *gateway) adminGet(t testing.TB, path string) answer {
	t.Helper()
	resp, err := client.Get(g.adminURL + path)
	if err != nil {
		return answer{status: -1, body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// assertNoSecrets fails when a log holds an upstream credential.
func assertNoSecrets(t testing.TB, logs string, creds fakeCreds) {
	t.Helper()
	for _, s := range []string{creds.password, creds.apiKey, callerKey, readerKey} {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the gateway's logs")
		}
	}
}

// client is shared by the tests; enough idle connections for bursts of concurrent calls.
var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0},
}

type answer struct {
	status int
	body   string
	header http.Header
	took   time.Duration
}

func (g *gateway) get(t testing.TB, path string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", g.key)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{status: -1, body: err.Error(), took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header, took: time.Since(start)}
}

// burst sends n concurrent GETs spread over the replicas and returns their answers.
func burst(t *testing.T, gws []*gateway, n int, path string) []answer {
	return burstPaths(t, gws, n, func(int) string { return path })
}

// uncachedPath is a different page of the contacts of the connected seeded session for each i, so
// that every request is a cache miss and reaches the upstream (tests of the token lifecycle need
// the upstream calls, not the cache's coalescing).
func uncachedPath(i int) string {
	return fmt.Sprintf("/v1/sessions/demo_session/contacts?limit=1&page=%d", i%100000+1)
}

// burstPaths sends n concurrent GETs, request i to path(i), spread over the replicas.
func burstPaths(t *testing.T, gws []*gateway, n int, path func(int) string) []answer {
	t.Helper()
	out := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = gws[i%len(gws)].get(t, path(i))
		})
	}
	close(start)
	wg.Wait()
	return out
}

// statuses counts answers by status.
func statuses(as []answer) map[int]int {
	m := map[int]int{}
	for _, a := range as {
		m[a.status]++
	}
	return m
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// request sends one request to the replica. X-API-Key is the full caller's key unless headers
// set it; a header given as "" is not sent (so {"X-API-Key": ""} sends no credential).
func (g *gateway) request(t testing.TB, method, path string, body io.Reader, headers map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, g.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", g.key)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{status: -1, body: err.Error(), took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header, took: time.Since(start)}
}

// post sends a JSON body (Content-Type: application/json unless headers say otherwise).
func (g *gateway) post(t testing.TB, path, body string, headers map[string]string) answer {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	return g.request(t, http.MethodPost, path, strings.NewReader(body), h)
}
