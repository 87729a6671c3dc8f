package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/console"
)

func newEngine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	console.Register(r)
	return r
}

func get(t *testing.T, r http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

// TestConsoleServesPageWithStrictHeaders: the page and its assets are served with their types,
// the strict CSP and the other protective headers.
func TestConsoleServesPageWithStrictHeaders(t *testing.T) {
	r := newEngine()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/console", "text/html; charset=utf-8", `<script src="/console/app.js"`},
		{"/console/", "text/html; charset=utf-8", `id="sessions"`},
		{"/console/index.html", "text/html; charset=utf-8", `id="key"`},
		{"/console/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/console/app.css", "text/css; charset=utf-8", ".badge"},
	} {
		w := get(t, r, tc.path)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d", tc.path, w.Code)
		}
		h := w.Header()
		if got := h.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'",
			"img-src 'self' data:", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %q", tc.path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows unsafe sources: %q", tc.path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", tc.path, h)
		}
		if h.Get("Cache-Control") == "" {
			t.Errorf("%s: no Cache-Control", tc.path)
		}
		if !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("%s: body lacks %q", tc.path, tc.contains)
		}
	}
}

// TestConsolePageLoadsNothingElsewhere: no inline script or style (the CSP would block it) and no
// third-party URL in the embedded files; the credential never goes to localStorage.
func TestConsolePageLoadsNothingElsewhere(t *testing.T) {
	r := newEngine()
	html := get(t, r, "/console").Body.String()
	if strings.Contains(html, "<script>") || strings.Contains(html, "<style") || strings.Contains(html, " style=") || strings.Contains(html, "onclick=") {
		t.Error("index.html has inline script or style")
	}
	for _, p := range []string{"/console", "/console/app.js", "/console/app.css"} {
		body := get(t, r, p).Body.String()
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another origin", p)
		}
	}
	js := get(t, r, "/console/app.js").Body.String()
	if strings.Contains(js, "localStorage") || strings.Contains(js, "innerHTML") {
		t.Error("app.js uses localStorage or innerHTML")
	}
}

// TestConsoleUnknownFile404: only the embedded files are served.
func TestConsoleUnknownFile404(t *testing.T) {
	r := newEngine()
	for _, p := range []string{"/console/nope.js", "/console/../console.go", "/console/static/app.js", "/console/console.go"} {
		if w := get(t, r, p); w.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, w.Code)
		}
	}
}
