package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// syncBuffer is an io.Writer safe for the server goroutine and the test to share.
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

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestRunRejectsBadConfig starts the binary's run with wrong and missing settings holding fake
// secrets: it must stop before listening, name each bad variable, and print no secret anywhere.
func TestRunRejectsBadConfig(t *testing.T) {
	const pw, key = "fake-startup-pw-8d7c", "fake-startup-key-6b5a"
	out := &syncBuffer{}
	err := run(context.Background(), nil, envOf(map[string]string{
		"INBOXHUB_PASSWORD":   pw,
		"INBOXHUB_API_KEY":    key,
		"INBOXHUB_BASE_URL":   "https://user:" + pw + "@inboxhub.example.invalid",
		"GATEWAY_CALLER_RATE": "many",
		"REDIS_URL":           "redis-sentinel://:" + pw + "@s1:26379",
	}), out)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("run error = %v, want a configuration error", err)
	}
	msg := err.Error()
	for _, v := range []string{"INBOXHUB_BASE_URL", "INBOXHUB_IDENTIFIER", "GATEWAY_CALLER_RATE", "REDIS_URL"} {
		if !strings.Contains(msg, v) {
			t.Errorf("error does not name %s:\n%s", v, msg)
		}
	}
	for _, s := range []string{pw, key} {
		if strings.Contains(msg, s) || strings.Contains(out.String(), s) {
			t.Errorf("a secret leaked into the startup error or output:\n%s\n%s", msg, out.String())
		}
	}
}

var (
	listeningRE      = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	adminListeningRE = regexp.MustCompile(`"msg":"listening","listener":"admin","addr":"([^"]+)"`)
)

// startRun runs the gateway on a free port (and its admin listener on another, unless env says
// otherwise) and returns its base URL and a function that stops it (like SIGTERM) and returns
// run's result.
func startRun(t *testing.T, args []string, env map[string]string) (string, *syncBuffer, func() error) {
	t.Helper()
	env["GATEWAY_ADDR"] = "127.0.0.1:0"
	if _, set := env["GATEWAY_ADMIN_ADDR"]; !set {
		env["GATEWAY_ADMIN_ADDR"] = "127.0.0.1:0"
	}
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, envOf(env), out) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(out.String()); m != nil {
			return "http://" + m[1], out, func() error { cancel(); return <-done }
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("run ended before listening: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("gateway did not listen within 20s:\n%s", out.String())
		}
	}
}

func get(t *testing.T, url string, headers map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDemoMode is quick-start command one: the demo serves Swagger, prints a demo key, and stops
// cleanly on a signal.
func TestDemoMode(t *testing.T) {
	base, out, stop := startRun(t, []string{"-demo"}, map[string]string{})
	if code, body := get(t, base+"/swagger/index.html", nil); code != http.StatusOK || !strings.Contains(body, "swagger") {
		t.Errorf("swagger = %d", code)
	}
	if code, body := get(t, base+"/readyz", nil); code != http.StatusOK {
		t.Errorf("readyz = %d: %s", code, body)
	}
	if !regexp.MustCompile(`Demo API key:  demo_[0-9a-f]{32}`).MatchString(out.String()) ||
		!strings.Contains(out.String(), "/swagger/index.html") {
		t.Errorf("demo banner lacks the key or the Swagger URL:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "single replica") {
		t.Errorf("no embedded-store warning:\n%s", out.String())
	}
	if err := stop(); err != nil {
		t.Errorf("run after shutdown = %v", err)
	}
	if !strings.Contains(out.String(), `"msg":"stopped"`) {
		t.Errorf("no graceful stop logged")
	}
}

// TestRunWithRedis starts the gateway configured for a real Redis and checks its startup log: the
// effective config is logged with every secret masked.
func TestRunWithRedis(t *testing.T) {
	const pw, key, ident = "fake-run-pw-1f2e", "fake-run-key-3d4c", "fake-run-ident@example.invalid"
	base, out, stop := startRun(t, nil, map[string]string{
		"INBOXHUB_BASE_URL":   "http://127.0.0.1:9", // nothing is called yet at startup
		"INBOXHUB_IDENTIFIER": ident,
		"INBOXHUB_PASSWORD":   pw,
		"INBOXHUB_API_KEY":    key,
		"REDIS_URL":           redistest.URL(t),
	})
	code, body := get(t, base+"/readyz", nil)
	if code != http.StatusOK {
		t.Errorf("readyz = %d: %s", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	logs := out.String()
	for _, s := range []string{pw, key, ident} {
		if strings.Contains(logs, s) {
			t.Errorf("secret %q in logs", s)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(logs))
	found := false
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if line["msg"] == "starting" {
			found = true
			cfg, _ := line["config"].(map[string]any)
			if cfg["upstream_password"] != "***" || cfg["redis"] == "embedded" {
				t.Errorf("startup config line = %v", cfg)
			}
		}
	}
	if !found {
		t.Errorf("no startup config line:\n%s", logs)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	base, _, stop := startRun(t, []string{"-demo"}, map[string]string{})
	addr := strings.TrimPrefix(base, "http://")
	if err := run(context.Background(), []string{"healthcheck"}, envOf(map[string]string{"GATEWAY_ADDR": addr}), io.Discard); err != nil {
		t.Errorf("healthcheck against a running gateway: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"healthcheck"}, envOf(map[string]string{"GATEWAY_ADDR": addr}), io.Discard); err == nil {
		t.Error("healthcheck succeeded against a stopped gateway")
	}
}

// TestAdminListener: the metrics and the detailed readiness are served on the admin listener and
// not on the public one; GATEWAY_ADMIN_ADDR=off serves no admin listener at all.
func TestAdminListener(t *testing.T) {
	base, out, stop := startRun(t, []string{"-demo"}, map[string]string{})
	m := adminListeningRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no admin listener logged:\n%s", out.String())
	}
	admin := "http://" + m[1]
	get(t, base+"/healthz", nil) // a request the metrics count
	if code, body := get(t, admin+"/metrics", nil); code != http.StatusOK || !strings.Contains(body, "gateway_http_requests_total") {
		t.Errorf("admin /metrics = %d", code)
	}
	if code, body := get(t, admin+"/readyz", nil); code != http.StatusOK || !strings.Contains(body, `"upstream_breaker"`) {
		t.Errorf("admin /readyz = %d %s", code, body)
	}
	if code, _ := get(t, base+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("public /metrics = %d, want 404", code)
	}
	if code, body := get(t, base+"/readyz", nil); code != http.StatusOK || strings.Contains(body, "checks") {
		t.Errorf("public /readyz = %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	_, out, stop = startRun(t, []string{"-demo"}, map[string]string{"GATEWAY_ADMIN_ADDR": "off"})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), `"listener":"admin"`) {
		t.Errorf("an admin listener started with GATEWAY_ADMIN_ADDR=off:\n%s", out.String())
	}
}
