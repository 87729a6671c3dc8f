package handlers

import (
	"net/http"
	"strings"
	"testing"
)

// TestSecurityHeadersOnEveryAnswer: pages (Swagger UI, the console), JSON, problem and text
// answers all carry a Content-Security-Policy that forbids framing, nosniff and X-Frame-Options;
// the routes of pages and their assets also carry Referrer-Policy: no-referrer; a page's policy
// runs no inline or evaluated script, and an answer that is not a page gets the policy that
// loads nothing.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	tr := newTestRouter(t)
	for _, tc := range []struct {
		path string
		page bool
	}{
		{"/swagger/index.html", true},
		{"/console", true},
		{"/console/app.js", false},
		{"/swagger/doc.json", false},
		{"/swagger/swagger-ui-bundle.js", false},
		{"/swagger/nope.html", false},
		{"/healthz", false},
		{"/no/such/route", false},
	} {
		resp, _ := tr.do(t, http.MethodGet, tc.path, nil, nil)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src") {
			t.Errorf("%s (%d): Content-Security-Policy %q", tc.path, resp.StatusCode, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: nosniff %q, X-Frame-Options %q", tc.path, h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"))
		}
		pageRoute := strings.HasPrefix(tc.path, "/swagger/") || strings.HasPrefix(tc.path, "/console")
		if pageRoute && h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q on a route of pages", tc.path, h.Get("Referrer-Policy"))
		}
		isHTML := strings.HasPrefix(h.Get("Content-Type"), "text/html")
		if isHTML != tc.page {
			t.Errorf("%s: Content-Type %q", tc.path, h.Get("Content-Type"))
		}
		if tc.page {
			script := directive(csp, "script-src")
			if script == "" || strings.Contains(script, "unsafe") || strings.Contains(csp, "*") {
				t.Errorf("%s: the page may run scripts from elsewhere or inline: %q", tc.path, csp)
			}
			continue
		}
		if !strings.HasPrefix(tc.path, "/console") && !strings.HasPrefix(csp, "default-src 'none'") {
			t.Errorf("%s: an answer that is not a page has the policy %q", tc.path, csp)
		}
	}
}

// directive returns the sources of one directive of a policy, "" when it is absent.
func directive(policy, name string) string {
	for d := range strings.SplitSeq(policy, ";") {
		if f := strings.Fields(d); len(f) > 0 && f[0] == name {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}
