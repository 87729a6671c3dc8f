package app_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/console"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// chromiumPath finds Debian's chromium (or another Chrome) on the PATH.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where browser tests save screenshots: $TEST_ARTIFACTS, or a fixed folder under
// the system temp dir (kept after the test, unlike t.TempDir).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gateway-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleServer serves a gateway replica's router with the console mounted (if the router does
// not mount it already).
func consoleServer(t *testing.T, g *gateway) string {
	t.Helper()
	engine, ok := g.app.Handler().(*gin.Engine)
	if !ok {
		t.Fatalf("the app's handler is a %T, not a *gin.Engine", g.app.Handler())
	}
	mounted := false
	for _, r := range engine.Routes() {
		if r.Method == "GET" && r.Path == "/console" {
			mounted = true
		}
	}
	if !mounted {
		console.Register(engine)
	}
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestConsoleInChromium drives the operator console in headless Chromium against the simulator
// through a gateway: a key without the admin scope sees no readiness details; the key typed in
// lists the seeded sessions with their badges and shows the admin status; "Sync now" on
// the connected session follows the job over SSE to its final counts; "Connect" on the
// disconnected session shows the QR image, and the badge turns connected after the phone scans.
// Each state is saved as a screenshot.
func TestConsoleInChromium(t *testing.T) {
	t.Parallel()
	bin := chromiumPath()
	if bin == "" {
		t.Skip("no Chromium installed (apt-get install chromium)")
	}
	const contacts, chats, perChat = 150, 8, 5
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{Contacts: contacts, Chats: chats, MessagesPerChat: perChat})
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"GATEWAY_SYNC_ON_CONNECT": "false", // only the console's click starts a sync
	})
	base := consoleServer(t, g)

	home := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.Env("HOME="+home),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts the browser, without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, 150*time.Second)
	defer cancel()

	dir := artifactDir(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (lower is JPEG)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(dir, "console-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	// waitFor polls a JavaScript predicate in the page until it is true.
	waitFor := func(what, expr string, within time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(within))); err != nil {
			shot("failed")
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.getElementById("error").innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	text := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	badgeOf := func(sid string) string {
		return fmt.Sprintf(`(document.querySelector('#sessions tr[data-session="%s"] td.status .badge') || {}).textContent`, sid)
	}

	// 0. A wrong key: the problem's code and detail are shown.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/console"),
		chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), "not-a-valid-key"),
		chromedp.Click(chromedp.CSS("#save-key")),
	); err != nil {
		t.Fatal(err)
	}
	waitFor("the 401 problem is shown", `!document.getElementById("error").hidden && document.getElementById("error-code").textContent === "UNAUTHENTICATED (401)" && document.getElementById("error-detail").textContent.length > 0`, 20*time.Second)

	// 0b. A key without the admin scope: sessions are listed, the status panel has no details.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#key"), readerKey),
		chromedp.Click(chromedp.CSS("#save-key")),
	); err != nil {
		t.Fatal(err)
	}
	waitFor("the status panel says the details need the admin scope",
		`(document.querySelector('#status-body [data-status="no-details"]') || {}).textContent === "The details (Redis, upstream token, circuit breaker) need a key with the admin scope." && document.querySelector('#status-body [data-check]') === null`, 20*time.Second)

	// 1. The key typed in lists the seeded sessions with their badges.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#key"), g.key),
		chromedp.Click(chromedp.CSS("#save-key")),
	); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"demo_session": "connected", "sales_team": "qr_pending", "support_desk": "disconnected"}
	for sid, status := range want {
		waitFor(sid+" listed as "+status, badgeOf(sid)+` === "`+status+`"`, 20*time.Second)
	}
	if !strings.Contains(text(`String(document.getElementById("error").hidden)`), "true") {
		t.Error("the error of the wrong key is still shown")
	}
	waitFor("the admin status shown", `document.querySelector('#status-body [data-check="upstream_token"]') !== null && document.querySelector('#status-body [data-check="redis"] .badge').textContent === "ok"`, 20*time.Second)
	if got := text(`sessionStorage.getItem("gateway.console.credential") === ` + strconv.Quote(g.key) +
		` && localStorage.length === 0 && !location.href.includes(` + strconv.Quote(g.key) + `) ? "ok" : "leak"`); got != "ok" {
		t.Errorf("the key is not kept in sessionStorage only: %s", got)
	}
	shot("sessions")

	// 2. "Sync now" on the connected session: progress over SSE up to the final counts.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[data-action="sync"][data-session="demo_session"]`))); err != nil {
		t.Fatal(err)
	}
	waitFor("the sync job succeeds", `document.getElementById("sync-state").textContent === "succeeded"`, 90*time.Second)
	for res, n := range map[string]int{"contacts": contacts, "chats": chats, "messages": chats * perChat} {
		row := text(fmt.Sprintf(`document.querySelector('#sync-progress [data-resource="%s"] .counts').textContent`, res))
		if want := fmt.Sprintf("delivered %d ·", n); !strings.Contains(row, want) || !strings.Contains(row, "done") {
			t.Errorf("%s row %q, want %q and phase done", res, row, want)
		}
	}
	if tr := text(`document.getElementById("sync-panel").dataset.transport`); tr != "sse" {
		t.Errorf("progress followed by %q, want sse", tr)
	}
	waitFor("recent jobs list the job", `document.querySelector('#jobs tr[data-job="' + document.getElementById("sync-job").textContent + '"]') !== null`, 10*time.Second)
	if got := text(`document.querySelector('#jobs tbody tr td:nth-child(4)').textContent`); got != fmt.Sprintf("%d delivered / %d fetched", contacts, contacts) {
		t.Errorf("recent jobs: contacts cell %q", got)
	}
	shot("sync")

	// 3. "Connect" on the disconnected session shows the QR; the phone's scan connects it.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[data-action="connect"][data-session="support_desk"]`))); err != nil {
		t.Fatal(err)
	}
	waitFor("the QR image is shown", `(() => { const i = document.getElementById("qr-img"); return !i.hidden && i.complete && i.naturalWidth > 0; })()`, 30*time.Second)
	waitFor("the countdown runs", `/Expires in \d+ s/.test(document.getElementById("qr-countdown").textContent)`, 5*time.Second)
	shot("qr")
	if err := s.ScanQR("support_desk"); err != nil {
		t.Fatal(err)
	}
	waitFor("support_desk becomes connected", badgeOf("support_desk")+` === "connected"`, 20*time.Second)
	if got := text(`document.getElementById("qr-message").textContent`); got != "Connected." {
		t.Errorf("QR panel says %q after the scan", got)
	}
	if got := text(`String(document.getElementById("qr-img").offsetParent === null)`); got != "true" {
		t.Error("the QR image is still shown after the session connected")
	}
	shot("connected")
}
