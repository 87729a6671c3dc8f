package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test credentials: obviously fake.
const (
	testIdentifier = "operator@example.test"
	testPassword   = "not-a-real-password"
	testAPIKey     = "test-api-key-0000"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testOptions are valid options without rate limits, a fast QR and seed 42.
func testOptions() Options {
	return Options{
		Identifier: testIdentifier, Password: testPassword, APIKey: testAPIKey, Seed: 42,
		RateAuth: NoLimit(), RateRead: NoLimit(), RateSend: NoLimit(), RateGlobal: NoLimit(),
		QRDelay: 50 * time.Millisecond,
	}
}

// startSim starts a simulator behind a real HTTP server; both stop when the test ends.
func startSim(t *testing.T, o Options) (*Server, *client) {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, &client{t: t, base: ts.URL, http: ts.Client(), apiKey: testAPIKey}
}

// client calls the simulator as the gateway would.
type client struct {
	t      *testing.T
	base   string
	http   *http.Client
	apiKey string // sent as X-API-Key when not empty
	bearer string // sent as Authorization: Bearer when not empty
	// adminKey is sent as X-Sim-Admin-Key when not empty.
	adminKey string
}

// envelope is any upstream answer.
type envelope struct {
	Success   bool            `json:"success"`
	Message   string          `json:"message"`
	Error     string          `json:"error"`
	Code      string          `json:"code"`
	Details   json.RawMessage `json:"details"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// response is an answer with its decoded envelope.
type response struct {
	*http.Response
	env envelope
	raw []byte
}

// do sends a request and decodes the envelope; body is marshalled as JSON unless nil.
func (c *client) do(method, path string, body any) response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.adminKey != "" {
		req.Header.Set("X-Sim-Admin-Key", c.adminKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	r := response{Response: resp, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.env); err != nil {
			c.t.Fatalf("%s %s: body %q: %v", method, path, raw, err)
		}
	}
	return r
}

// get is do for a GET.
func (c *client) get(path string) response { c.t.Helper(); return c.do(http.MethodGet, path, nil) }

// with returns a copy of the client with other credentials.
func (c *client) with(apiKey, bearer string) *client {
	cp := *c
	cp.apiKey, cp.bearer = apiKey, bearer
	return &cp
}

// must checks the status and decodes data into v (when v is not nil).
func (r response) must(t *testing.T, status int, v any) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.raw)
	}
	if v != nil {
		if err := json.Unmarshal(r.env.Data, v); err != nil {
			t.Fatalf("data %s: %v", r.env.Data, err)
		}
	}
}

// mustError checks an error envelope: status, success false, code, a text and a timestamp.
func (r response) mustError(t *testing.T, status int, code string) {
	t.Helper()
	if r.StatusCode != status || r.env.Success || r.env.Code != code {
		t.Fatalf("%s %s: got %d %q, want %d %q; body %s", r.Request.Method, r.Request.URL.Path,
			r.StatusCode, r.env.Code, status, code, r.raw)
	}
	if r.env.Error == "" {
		t.Errorf("error envelope without an error text: %s", r.raw)
	}
	if _, err := time.Parse(time.RFC3339, r.env.Timestamp); err != nil {
		t.Errorf("timestamp %q is not RFC 3339", r.env.Timestamp)
	}
}

// login logs in and returns the token data.
func (c *client) login() tokenData {
	c.t.Helper()
	var d tokenData
	c.do(http.MethodPost, "/api/auth/login", map[string]string{"identifier": testIdentifier, "password": testPassword}).
		must(c.t, http.StatusOK, &d)
	return d
}

type tokenData struct {
	User         map[string]any `json:"user"`
	AccessToken  string         `json:"accessToken"`
	RefreshToken string         `json:"refreshToken"`
	ExpiresIn    string         `json:"expiresIn"`
}

type pageInfo struct {
	Total int `json:"total"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Pages int `json:"pages"`
}
