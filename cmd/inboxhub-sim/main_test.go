package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// lockedBuffer is an io.Writer the test can read while run writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// listenAddr finds the address of the "listening" log line, if it was written yet.
func (b *lockedBuffer) listenAddr() string {
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
			return line.Addr
		}
	}
	return ""
}

// startRun runs the command on a free port and returns its base URL, its output and a stop
// function that reports what run returned.
func startRun(t *testing.T, env map[string]string) (string, *lockedBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, out)
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("run did not return within 5s of cancellation")
			return nil
		}
	}
	t.Cleanup(cancel) // a test that fails before it stops the run still ends it
	wait.UntilShowing(t, 5*time.Second, "the listening line", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v; output %s", err, out)
		default:
		}
		return out.listenAddr() != ""
	}, out.String)
	return out.listenAddr(), out, stop
}

func TestRunServesAndShutsDown(t *testing.T) {
	env := map[string]string{"SIM_IDENTIFIER": "ops@example.test", "SIM_PASSWORD": "fake-password",
		"SIM_API_KEY": "fake-key", "SIM_CONTACTS": "10", "SIM_TOKEN_LIFETIME": "15m"}
	base, out, stop := startRun(t, env)
	resp, err := http.Get(base + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	body := strings.NewReader(`{"identifier":"ops@example.test","password":"fake-password"}`)
	resp, err = http.Post(base+"/api/auth/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		Data struct {
			ExpiresIn string `json:"expiresIn"`
		} `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || login.Data.ExpiresIn != "15m" {
		t.Errorf("login: %d, expiresIn %q", resp.StatusCode, login.Data.ExpiresIn)
	}
	if err := stop(); err != nil {
		t.Errorf("run returned %v after a clean shutdown", err)
	}
	for _, secret := range []string{"fake-password", "fake-key"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output reveals a configured credential: %s", out)
		}
	}
}

func TestRunGeneratesMissingCredentials(t *testing.T) {
	base, out, stop := startRun(t, map[string]string{})
	defer func() { _ = stop() }()
	var key string
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "SIM_API_KEY="); ok {
			key = v
		}
	}
	if key == "" || !strings.Contains(out.String(), "SIM_PASSWORD=") || !strings.Contains(out.String(), "SIM_IDENTIFIER=") {
		t.Fatalf("generated credentials not printed: %s", out)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/sessions", nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the printed API key got %d", resp.StatusCode)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{
		"SIM_IDENTIFIER": "a", "SIM_PASSWORD": "b", "SIM_API_KEY": "c",
		"SIM_TOKEN_LIFETIME": "7d", "SIM_RATE_AUTH": "5/15m", "SIM_RATE_READ": "0", "SIM_SEED": "99",
		"SIM_CONTACTS": "25000", "SIM_ROTATE_REFRESH": "true", "SIM_WEBHOOK_URL": "http://127.0.0.1:9/hooks",
	}
	o, generated, err := optionsFromEnv(func(k string) string { return env[k] })
	if err != nil || len(generated) != 0 {
		t.Fatalf("err %v, generated %v", err, generated)
	}
	if o.TokenLifetime != 7*24*time.Hour || o.RateAuth != (sim.Rate{N: 5, Per: 15 * time.Minute}) ||
		o.RateRead != sim.NoLimit() || o.Seed != 99 || o.Contacts != 25000 || !o.RotateRefreshTokens ||
		o.WebhookURL != env["SIM_WEBHOOK_URL"] {
		t.Errorf("options %+v", o)
	}
}

func TestOptionsFromEnvReportsEveryBadVariable(t *testing.T) {
	env := map[string]string{"SIM_TOKEN_LIFETIME": "soon", "SIM_RATE_SEND": "ten", "SIM_SEED": "x", "SIM_ROTATE_REFRESH": "maybe"}
	_, _, err := optionsFromEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("bad variables accepted")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestRunRejectsUnknownFlag(t *testing.T) {
	err := run(context.Background(), []string{"-nope"}, func(string) string { return "" }, &lockedBuffer{})
	if err == nil {
		t.Error("an unknown flag was accepted")
	}
}
