package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

type testRouter struct {
	engine *gin.Engine
	srv    *httptest.Server
	logs   *bytes.Buffer
	ready  *Readiness
	reg    *prometheus.Registry
}

func newTestRouter(t *testing.T) *testRouter {
	t.Helper()
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	ready := &Readiness{}
	r, err := NewRouter(Deps{
		Logger: logger, HTTPMetrics: middleware.NewHTTPMetrics(reg),
		MaxBodyBytes: 1024, Readiness: ready, Version: "test",
		CORS:    func(c *gin.Context) { c.Next() },
		Require: func(string) gin.HandlerFunc { return func(c *gin.Context) { c.Next() } },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Routes that exercise the middleware the way real handlers will.
	r.GET("/test/panic", func(c *gin.Context) { panic("boom: internal detail 42") })
	r.GET("/test/error", func(c *gin.Context) { middleware.Fail(c, errors.New("db password=hunter2 at 10.0.0.7")) })
	r.GET("/test/upstream/:kind", func(c *gin.Context) {
		errs := map[string]error{
			"auth":          upstream.ErrAuthFailed,
			"limited":       &upstream.RateLimitError{RetryAfter: 2500e6, Source: "gateway"},
			"not-connected": upstream.ErrSessionNotConnected,
			"unavailable":   upstream.ErrUnavailable,
			"timeout":       upstream.ErrTimeout,
		}
		middleware.Fail(c, errs[c.Param("kind")])
	})
	r.POST("/test/body", func(c *gin.Context) {
		if _, err := io.ReadAll(c.Request.Body); err != nil {
			middleware.Fail(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testRouter{engine: r, srv: srv, logs: logs, ready: ready, reg: reg}
}

func (tr *testRouter) do(t *testing.T, method, path string, body io.Reader, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, tr.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestOperations200(t *testing.T) {
	tr := newTestRouter(t)
	tr.ready.Add(Check{Name: "redis", Run: func(context.Context) CheckResult { return CheckResult{OK: true} }})
	for _, path := range []string{"/healthz", "/readyz", "/swagger/index.html", "/swagger/doc.json"} {
		resp, body := tr.do(t, http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d: %s", path, resp.StatusCode, body)
		}
		if resp.Header.Get(middleware.HeaderRequestID) == "" {
			t.Errorf("GET %s: no request id", path)
		}
	}
	admin := httptest.NewServer(NewAdminRouter(AdminDeps{Logger: slog.New(slog.DiscardHandler), Registry: tr.reg, Readiness: tr.ready, Version: "test"}))
	defer admin.Close()
	_, metrics := getURL(t, admin.URL+"/metrics")
	if !bytes.Contains(metrics, []byte(`http_requests_total{caller="",method="GET",route="/healthz",status="200"} 1`)) {
		t.Errorf("metrics lack the /healthz request:\n%s", metrics)
	}
}

// TestOperationsEndpointsOffThePublicListener: the public listener has no /metrics and its
// /readyz says ready or draining and nothing more, even with a failing check; the admin listener
// answers the metrics and the detailed readiness (degraded, 503, the failing check and its
// detail).
func TestOperationsEndpointsOffThePublicListener(t *testing.T) {
	tr := newTestRouter(t)
	tr.ready.Add(Check{Name: "redis", Run: func(context.Context) CheckResult { return CheckResult{OK: true} }})
	tr.ready.Add(Check{Name: "upstream_token", Run: func(context.Context) CheckResult {
		return CheckResult{Error: "upstream rejected the gateway credentials", Detail: map[string]any{"fingerprint": "0123abcd"}}
	}})
	if resp, body := tr.do(t, http.MethodGet, "/metrics", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("public /metrics = %d: %s", resp.StatusCode, body)
	}
	resp, body := tr.do(t, http.MethodGet, "/readyz", nil, nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ready"}` {
		t.Errorf("public /readyz = %d %s, want 200 and the status alone", resp.StatusCode, body)
	}

	admin := httptest.NewServer(NewAdminRouter(AdminDeps{Logger: slog.New(slog.DiscardHandler), Registry: tr.reg, Readiness: tr.ready, Version: "test"}))
	defer admin.Close()
	code, body := getURL(t, admin.URL+"/readyz")
	var rep ReadinessReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || rep.Status != StatusDegraded || rep.Checks["upstream_token"].Error == "" ||
		rep.Checks["upstream_token"].Detail["fingerprint"] != "0123abcd" || !rep.Checks["redis"].OK {
		t.Errorf("admin /readyz = %d %s", code, body)
	}
	if code, _ := getURL(t, admin.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("admin /metrics = %d", code)
	}
	if code, _ := getURL(t, admin.URL+"/v1/sessions"); code != http.StatusNotFound {
		t.Errorf("the admin listener serves the API: %d", code)
	}

	// Draining: the public /readyz turns 503, the detailed view says so too.
	tr.ready.Drain()
	resp, body = tr.do(t, http.MethodGet, "/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != `{"status":"draining"}` {
		t.Errorf("public /readyz while draining = %d %s", resp.StatusCode, body)
	}
	if code, body := getURL(t, admin.URL+"/readyz"); code != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"status":"draining"`)) {
		t.Errorf("admin /readyz while draining = %d %s", code, body)
	}
}

func getURL(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestProblemAnswers checks the problem+json envelope and the status/code mapping of package
// problem through the whole middleware chain.
func TestProblemAnswers(t *testing.T) {
	tr := newTestRouter(t)
	cases := []struct {
		name, method, path string
		body               io.Reader
		status             int
		code               string
		retryAfter         string
	}{
		{"unknown route", http.MethodGet, "/nope", nil, 404, problem.CodeNotFound, ""},
		{"wrong method", http.MethodDelete, "/healthz", nil, 405, problem.CodeMethodNotAllowed, ""},
		{"panic", http.MethodGet, "/test/panic", nil, 500, problem.CodeInternal, ""},
		{"unknown error", http.MethodGet, "/test/error", nil, 500, problem.CodeInternal, ""},
		{"body too large", http.MethodPost, "/test/body", strings.NewReader(strings.Repeat("x", 4096)), 413, problem.CodePayloadTooLarge, ""},
		{"upstream auth", http.MethodGet, "/test/upstream/auth", nil, 502, problem.CodeUpstreamAuthFailed, ""},
		{"quota", http.MethodGet, "/test/upstream/limited", nil, 429, problem.CodeRateLimited, "3"},
		{"not connected", http.MethodGet, "/test/upstream/not-connected", nil, 409, problem.CodeSessionNotConnected, ""},
		{"unavailable", http.MethodGet, "/test/upstream/unavailable", nil, 503, problem.CodeUpstreamUnavailable, "5"},
		{"timeout", http.MethodGet, "/test/upstream/timeout", nil, 504, problem.CodeUpstreamTimeout, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tr.do(t, tc.method, tc.path, tc.body, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type = %q", ct)
			}
			var d problem.Details
			if err := json.Unmarshal(body, &d); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if d.Code != tc.code || d.Status != tc.status || d.Title == "" || d.Detail == "" || d.Type == "" {
				t.Errorf("body = %s", body)
			}
			if d.RequestID == "" || d.RequestID != resp.Header.Get(middleware.HeaderRequestID) {
				t.Errorf("requestId %q does not match header %q", d.RequestID, resp.Header.Get(middleware.HeaderRequestID))
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			for _, leak := range []string{"boom", "internal detail", "hunter2", "10.0.0.7", "goroutine"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("answer leaks %q: %s", leak, body)
				}
			}
		})
	}
	// The 500s are logged in full, with their request ids.
	logs := tr.logs.String()
	if !strings.Contains(logs, "boom: internal detail 42") || !strings.Contains(logs, "hunter2") {
		t.Errorf("internal errors not logged in full:\n%s", logs)
	}
}

func TestRequestIDPropagation(t *testing.T) {
	tr := newTestRouter(t)
	resp, _ := tr.do(t, http.MethodGet, "/healthz", nil, map[string]string{middleware.HeaderRequestID: "crm-abc.123"})
	if got := resp.Header.Get(middleware.HeaderRequestID); got != "crm-abc.123" {
		t.Errorf("request id = %q, want the caller's", got)
	}
	resp, _ = tr.do(t, http.MethodGet, "/healthz", nil, map[string]string{middleware.HeaderRequestID: "bad id\"<script>"})
	if got := resp.Header.Get(middleware.HeaderRequestID); got == "" || strings.ContainsAny(got, " \"<") {
		t.Errorf("malformed request id echoed: %q", got)
	}
}

// TestAccessLogRedaction sends every kind of credential a caller might send and checks that the
// access log has the request but none of them.
func TestAccessLogRedaction(t *testing.T) {
	tr := newTestRouter(t)
	secrets := map[string]string{
		"Authorization": "Bearer fake.jwt.token-9f8e7d",
		"X-API-Key":     "fake-caller-key-5c4b3a",
		"Cookie":        "session=fake-cookie-2a1b",
	}
	tr.do(t, http.MethodGet, "/healthz?access_token=fake-qs-token-77&password=fake-qs-pw-66&page=2", nil, secrets)
	logs := tr.logs.String()
	if !strings.Contains(logs, `"route":"/healthz"`) || !strings.Contains(logs, "page=2") {
		t.Fatalf("access log line missing:\n%s", logs)
	}
	for _, s := range []string{"9f8e7d", "5c4b3a", "2a1b", "fake-qs-token-77", "fake-qs-pw-66"} {
		if strings.Contains(logs, s) {
			t.Errorf("access log leaks %q:\n%s", s, logs)
		}
	}
}
