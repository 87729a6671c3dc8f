package handlers

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSwaggerUIInChromium loads the Swagger UI page in headless Chromium (Debian's chromium
// package, which the test script installs) and checks that the rendered page lists the v1
// operations of the OpenAPI 3 document: the generated docs are served and the UI's JavaScript
// renders them under the page's Content-Security-Policy, which blocks nothing the UI needs
// (Chromium logs every blocked action to its console, which --enable-logging copies to stderr).
// It skips only when no Chromium is installed.
func TestSwaggerUIInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no Chromium installed (apt-get install chromium)")
	}
	tr := newTestRouter(t)
	srv := httptest.NewServer(tr.engine)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=15000", "--dump-dom", srv.URL+"/swagger/index.html")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s\n%s", err, out, stderr.String())
	}
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("the page's CSP blocked something: %s", line)
		}
	}
	dom := string(out)
	for _, want := range []string{"Inbox Hub gateway", "/v1/sessions", "/v1/sessions/{sessionId}", "/readyz"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered Swagger UI lacks %q (%d bytes of DOM)", want, len(dom))
		}
	}
	if !strings.Contains(dom, `opblock`) {
		t.Errorf("no operation blocks rendered: the UI did not render the spec")
	}
	// Swagger UI stamps the version of the document it rendered: OAS3 for /openapi.json.
	if !strings.Contains(dom, ">OAS3<") {
		t.Errorf("the UI did not render the OpenAPI 3 document (no OAS3 stamp)")
	}
}
