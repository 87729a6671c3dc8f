package frappe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// siteUser and siteSession describe what the stand-in site holds when it starts.
type siteUser struct {
	Email     string   `json:"email"`
	Roles     []string `json:"roles"`
	UserType  string   `json:"user_type,omitempty"`
	APIKey    string   `json:"api_key,omitempty"`
	APISecret string   `json:"api_secret,omitempty"`
}

type siteSession struct {
	SessionID string      `json:"session_id"`
	Name      string      `json:"session_name,omitempty"`
	Status    string      `json:"status"`
	Assigned  [][2]string `json:"assigned,omitempty"`
}

type siteConfig struct {
	Conf     map[string]any `json:"conf"`
	TimeZone string         `json:"time_zone"`
	Users    []siteUser     `json:"users"`
	Sessions []siteSession  `json:"sessions"`
	Control  string         `json:"control_token"`
}

// fakeSite is the kit served over the stand-in for Frappe (tests/fake_site.py), a real HTTP server
// in a python3 process on 127.0.0.1.
type fakeSite struct {
	url     string
	control string
	stderr  string // the file the site's stderr goes to
}

// python3 returns the interpreter, or skips the test where there is none (./scripts/test installs
// it, and there a missing one fails the test).
func python3(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("REQUIRE_REDIS") == "1" {
			t.Fatal("python3 is required (apt-get install python3)")
		}
		t.Skip("no python3")
	}
	return py
}

// startSite starts the stand-in site with cfg and stops it when the test ends.
func startSite(t *testing.T, cfg siteConfig) *fakeSite {
	t.Helper()
	cfg.Control = "ctl-" + randHex(16)
	if cfg.TimeZone == "" {
		cfg.TimeZone = "Europe/Madrid"
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python3(t), "-B", filepath.Join("tests", "fake_site.py"))
	cmd.Env = append(os.Environ(), "FAKE_SITE_CONFIG="+string(raw), "PYTHONDONTWRITEBYTECODE=1")
	stderr, err := os.Create(filepath.Join(t.TempDir(), "site.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stderr.Close() })
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		u, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			t.Fatalf("the stand-in site did not start: %q\n%s", line, readFile(stderr.Name()))
		}
		return &fakeSite{url: u, control: cfg.Control, stderr: stderr.Name()}
	case <-time.After(60 * time.Second):
		t.Fatalf("the stand-in site did not start within a minute\n%s", readFile(stderr.Name()))
	}
	return nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// ingestURL is the kit's ingest method on the site (CRM_SINK_URL and CRM_EVENTS_URL).
func (s *fakeSite) ingestURL() string { return s.url + "/api/method/inboxhub_gateway.api.ingest" }

func (s *fakeSite) do(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Fake-Control", s.control)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, readFile(s.stderr))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s\n%s", method, path, resp.StatusCode, raw, readFile(s.stderr))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

// ingestCounts are the kit's own answers to the batches, summed per resource.
type ingestCounts struct {
	Created, Updated, Unchanged, Skipped, Failed, Batches int
}

// siteState is what the site holds for one session.
type siteState struct {
	Session    map[string]any `json:"session"`
	Counts     struct{ Contacts, Conversations, Messages, Logs int }
	Duplicates struct{ Contacts, Conversations, Messages int }
	Names      struct{ Contacts, Conversations, Messages []string }
	Logs       []struct {
		EventType string `json:"event_type"`
		Status    string `json:"status"`
		WebhookID string `json:"webhook_id"`
	}
	Ingest   map[string]map[string]ingestCounts `json:"ingest"`
	Failures []map[string]any                   `json:"failures"`
	Errors   []string                           `json:"errors"`
}

func (s *fakeSite) state(t *testing.T, sessionID string) siteState {
	t.Helper()
	var st siteState
	s.do(t, http.MethodGet, "/_fake/state?session_id="+sessionID, nil, &st)
	return st
}

func (s *fakeSite) phase(t *testing.T, name string) {
	t.Helper()
	s.do(t, http.MethodPost, "/_fake/phase", map[string]string{"name": name}, nil)
}

// gatewayUnderTest is one gateway replica over real HTTP, with an API key holding every scope.
type gatewayUnderTest struct {
	url string
	key string
	app *app.App
}

// simCreds are the generated upstream credentials of one test's simulator.
type simCreds struct{ identifier, password, apiKey string }

func startSim(t *testing.T, o sim.Options) (*sim.Server, string, simCreds) {
	t.Helper()
	c := simCreds{"gw-" + randHex(4) + "@example.invalid", "test-pw-" + randHex(8), "test_upstream_" + randHex(8)}
	o.Identifier, o.Password, o.APIKey = c.identifier, c.password, c.apiKey
	o.RateAuth, o.RateRead, o.RateSend, o.RateGlobal = sim.NoLimit(), sim.NoLimit(), sim.NoLimit(), sim.NoLimit()
	o.Logger = slog.New(slog.DiscardHandler)
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); s.Close() })
	return s, srv.URL, c
}

// startGateway builds a replica from an environment, as production does, pointed at the simulator
// and at a Redis database of its own.
func startGateway(t *testing.T, simURL string, creds simCreds, redisURL string, extra map[string]string) *gatewayUnderTest {
	t.Helper()
	return startGatewayOn(t, httptest.NewUnstartedServer(nil), simURL, creds, redisURL, extra)
}

// startGatewayOn serves the replica on srv, a server not started yet whose address is already
// known (for a site that must know the gateway's URL before the gateway knows the site's).
func startGatewayOn(t *testing.T, srv *httptest.Server, simURL string, creds simCreds, redisURL string, extra map[string]string) *gatewayUnderTest {
	t.Helper()
	key := "test-crm-" + randHex(12)
	keys := filepath.Join(t.TempDir(), "keys.json")
	body := fmt.Sprintf(`[{"name": "test-crm", "key": %q, "scopes": ["%s"]}]`, key, strings.Join(config.Scopes, `","`))
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"INBOXHUB_BASE_URL":       simURL,
		"INBOXHUB_IDENTIFIER":     creds.identifier,
		"INBOXHUB_PASSWORD":       creds.password,
		"INBOXHUB_API_KEY":        creds.apiKey,
		"REDIS_URL":               redisURL,
		"GATEWAY_API_KEYS_FILE":   keys,
		"GATEWAY_CALLER_RATE":     "0",
		"UPSTREAM_RATE_READ":      "0",
		"UPSTREAM_RATE_SEND":      "0",
		"UPSTREAM_RATE_AUTH":      "100/1m",
		"GATEWAY_SYNC_ON_CONNECT": "false",
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, app.ConfigChecks()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(func() { srv.Close(); cancel(); a.Close() })
	return &gatewayUnderTest{url: srv.URL, key: key, app: a}
}

// call sends a request with the gateway API key and decodes a JSON answer into out.
func (g *gatewayUnderTest) call(t *testing.T, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", g.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %v: %s", method, path, resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode
}

// syncJob is the part of a sync job the tests read.
type syncJob struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Error    string `json:"error"`
	Progress map[string]struct {
		Fetched, New, Changed, Unchanged, Delivered, Failed int
	} `json:"progress"`
}

// runSync starts a sync of sessionID and waits until the job ends.
func (g *gatewayUnderTest) runSync(t *testing.T, sessionID string) syncJob {
	t.Helper()
	var started struct{ Data syncJob }
	if code := g.call(t, http.MethodPost, "/v1/sessions/"+sessionID+"/sync", map[string]any{}, &started); code != http.StatusAccepted {
		t.Fatalf("sync %s: %d", sessionID, code)
	}
	var job syncJob
	wait.Until(t, 3*time.Minute, "the sync job ends", func() bool {
		var got struct{ Data syncJob }
		g.call(t, http.MethodGet, "/v1/sync-jobs/"+started.Data.ID, nil, &got)
		job = got.Data
		switch job.State {
		case "succeeded", "partial", "failed", "canceled":
			return true
		}
		return false
	})
	return job
}

// redisURL is a Redis database of this test's own.
func redisURL(t *testing.T) string { return redistest.URL(t) }
