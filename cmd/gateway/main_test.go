package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
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

// startRun runs the gateway on a free port (and its admin listener on another, without a drain
// delay, unless env says otherwise) and returns its base URL and a function that stops it (like SIGTERM) and returns
// run's result.
func startRun(t *testing.T, args []string, env map[string]string) (string, *syncBuffer, func() error) {
	t.Helper()
	env["GATEWAY_ADDR"] = "127.0.0.1:0"
	if _, set := env["GATEWAY_ADMIN_ADDR"]; !set {
		env["GATEWAY_ADMIN_ADDR"] = "127.0.0.1:0"
	}
	if _, set := env["GATEWAY_DRAIN_DELAY"]; !set {
		env["GATEWAY_DRAIN_DELAY"] = "0s"
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
			if rt, _ := line["runtime"].(map[string]any); rt == nil || rt["gcPercent"] == nil {
				t.Errorf("startup line without the runtime's memory policy: %v", line["runtime"])
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
	if code, body := get(t, admin+"/metrics", nil); code != http.StatusOK || !strings.Contains(body, "inboxhub_gateway_http_requests_total") {
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

// TestMain lets TestDrainOnSIGTERM run this test binary as the gateway itself: with
// GATEWAY_TEST_RUN_MAIN=1 it runs main (signal handling and exit code included) instead of the
// tests.
func TestMain(m *testing.M) {
	if os.Getenv("GATEWAY_TEST_RUN_MAIN") == "1" {
		os.Args = []string{"gateway"}
		main() // exits 1 on an error
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDrainOnSIGTERM runs the gateway as a process (main, as the binary runs it) with a sync job's
// event stream open, and sends it SIGTERM: /readyz turns 503 first while requests are still
// served, the stream then ends with its reconnect event, and the process exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GATEWAY_TEST_RUN_MAIN=1", "GATEWAY_DEMO=1",
		"GATEWAY_ADDR=127.0.0.1:0", "GATEWAY_ADMIN_ADDR=off",
		"GATEWAY_SYNC_WORKERS=0", // the job stays queued: its stream stays open
		"GATEWAY_DRAIN_DELAY=5s", "GATEWAY_SHUTDOWN_TIMEOUT=10s")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var base, key string
	keyRE := regexp.MustCompile(`Demo API key:  (demo_[0-9a-f]{32})`)
	wait.Until(t, 30*time.Second, "the gateway listens", func() bool {
		m, k := listeningRE.FindStringSubmatch(out.String()), keyRE.FindStringSubmatch(out.String())
		if m != nil && k != nil {
			base, key = "http://"+m[1], k[1]
		}
		return base != ""
	})
	auth := map[string]string{"X-API-Key": key}

	req, _ := http.NewRequest(http.MethodPost, base+"/v1/sessions/demo_session/sync", strings.NewReader("{}"))
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var started struct {
		Data struct{ ID string } `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&started)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || started.Data.ID == "" {
		t.Fatalf("sync = %d %+v\n%s", resp.StatusCode, started, out.String())
	}

	// The job's event stream: its events, in order, until it ends.
	req, _ = http.NewRequest(http.MethodGet, base+"/v1/sync-jobs/"+started.Data.ID+"/events", nil)
	req.Header.Set("X-API-Key", key)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	var mu sync.Mutex
	var events []string
	streamEnded := make(chan struct{})
	go func() {
		defer close(streamEnded)
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				mu.Lock()
				events = append(events, name)
				mu.Unlock()
			}
		}
	}()
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(events) }
	wait.Until(t, 10*time.Second, "the stream's first event", func() bool { return len(seen()) > 0 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "/readyz answers 503", func() bool {
		code, _ := get(t, base+"/readyz", nil)
		return code == http.StatusServiceUnavailable
	})
	if ev := seen(); slices.Contains(ev, "reconnect") {
		t.Errorf("the stream ended (%v) before /readyz turned 503", ev)
	}
	if code, body := get(t, base+"/v1/sync-jobs/"+started.Data.ID, auth); code != http.StatusOK {
		t.Errorf("a request while draining = %d %s, want it served", code, body)
	}

	select {
	case <-streamEnded:
	case <-time.After(30 * time.Second):
		t.Fatalf("the stream did not end; events %v\n%s", seen(), out.String())
	}
	if ev := seen(); len(ev) < 2 || ev[0] != "progress" || ev[len(ev)-1] != "reconnect" {
		t.Errorf("stream events %v, want progress first and reconnect last", ev)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the gateway exited with %v, want 0\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the gateway did not exit\n%s", out.String())
	}
	if logs := out.String(); !strings.Contains(logs, `"msg":"draining`) || !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("no drain or stop logged:\n%s", logs)
	}
}
