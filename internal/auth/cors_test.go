package auth

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

func TestCORS(t *testing.T) {
	f := newFixture(t)
	a, err := New(f.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	const crm = "https://crm.example.com"
	r := router(&syncBuffer{}, []string{"https://CRM.example.com/", "http://localhost:5173"}, a.Middleware())
	preflight := func(origin, method, headers string) map[string][]string {
		h := hdr("Origin", origin, "Access-Control-Request-Method", method)
		if headers != "" {
			h["Access-Control-Request-Headers"] = []string{headers}
		}
		return h
	}

	type check func(t *testing.T, a answer)
	allowed := func(origin string) check {
		return func(t *testing.T, a answer) {
			if got := a.header.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, origin)
			}
		}
	}
	noCORS := func(t *testing.T, a answer) {
		for k := range a.header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("CORS header %s: %q on an answer to a foreign origin", k, a.header.Values(k))
			}
		}
	}
	preflightOK := func(t *testing.T, a answer) {
		if a.status != http.StatusNoContent || a.body != "" {
			t.Errorf("status %d body %q, want 204 and no body", a.status, a.body)
		}
		methods := a.header.Get("Access-Control-Allow-Methods")
		for _, m := range []string{"GET", "POST", "DELETE"} {
			if !strings.Contains(methods, m) {
				t.Errorf("Access-Control-Allow-Methods %q lacks %s", methods, m)
			}
		}
		headers := a.header.Get("Access-Control-Allow-Headers")
		for _, h := range []string{"X-API-Key", "Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"} {
			if !strings.Contains(headers, h) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", headers, h)
			}
		}
		if a.header.Get("Access-Control-Max-Age") != "600" {
			t.Errorf("Access-Control-Max-Age %q, want 600", a.header.Get("Access-Control-Max-Age"))
		}
	}
	forbidden := func(t *testing.T, a answer) { problemOf(t, a, http.StatusForbidden, problem.CodeForbidden) }
	status := func(want int) check {
		return func(t *testing.T, a answer) {
			if a.status != want {
				t.Errorf("status %d, want %d; body %s", a.status, want, a.body)
			}
		}
	}
	exposes := func(t *testing.T, a answer) {
		if e := a.header.Get("Access-Control-Expose-Headers"); !strings.Contains(e, "Retry-After") || !strings.Contains(e, "X-Request-ID") {
			t.Errorf("Access-Control-Expose-Headers %q, want Retry-After and X-Request-ID", e)
		}
	}

	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string][]string
		checks  []check
	}{
		{"preflight from the CRM, no credential needed", http.MethodOptions, "/v1/sessions",
			preflight(crm, "POST", "x-api-key, content-type, idempotency-key"), []check{preflightOK, allowed(crm)}},
		{"preflight of a path with no route", http.MethodOptions, "/v1/nothing-here",
			preflight("http://localhost:5173", "GET", "Authorization"), []check{preflightOK, allowed("http://localhost:5173")}},
		{"preflight from a foreign origin", http.MethodOptions, "/v1/sessions",
			preflight("https://evil.example.com", "GET", "x-api-key"), []check{forbidden, noCORS}},
		{"preflight from a look-alike origin", http.MethodOptions, "/v1/sessions",
			preflight("https://crm.example.com.evil.example", "GET", ""), []check{forbidden, noCORS}},
		{"preflight from another scheme", http.MethodOptions, "/v1/sessions",
			preflight("http://crm.example.com", "GET", ""), []check{forbidden, noCORS}},
		{"preflight from the null origin", http.MethodOptions, "/v1/sessions",
			preflight("null", "GET", ""), []check{forbidden, noCORS}},
		{"preflight without an origin", http.MethodOptions, "/v1/sessions",
			hdr("Access-Control-Request-Method", "GET"), []check{forbidden, noCORS}},
		{"preflight asking for a header not allowed", http.MethodOptions, "/v1/sessions",
			preflight(crm, "GET", "X-API-Key, X-Forwarded-For"), []check{forbidden, noCORS}},
		{"preflight asking for TRACE", http.MethodOptions, "/v1/sessions",
			preflight(crm, "TRACE", ""), []check{forbidden, noCORS}},
		{"GET from the CRM", http.MethodGet, "/v1/sessions",
			hdr("Origin", crm, "X-API-Key", f.readKey), []check{status(http.StatusOK), allowed(crm), exposes}},
		{"GET from the CRM without a key: the page may read the 401", http.MethodGet, "/v1/sessions",
			hdr("Origin", crm), []check{status(http.StatusUnauthorized), allowed(crm)}},
		{"GET from a foreign origin", http.MethodGet, "/v1/sessions",
			hdr("Origin", "https://evil.example.com", "X-API-Key", f.readKey), []check{status(http.StatusOK), noCORS}},
		{"GET from the CRM's origin written otherwise: echoed as sent", http.MethodGet, "/v1/sessions",
			hdr("Origin", "HTTPS://crm.Example.com:443", "X-API-Key", f.readKey), []check{status(http.StatusOK), allowed("HTTPS://crm.Example.com:443"), exposes}},
		{"GET from a look-alike origin", http.MethodGet, "/v1/sessions",
			hdr("Origin", "https://crm.example.com.evil.example", "X-API-Key", f.readKey), []check{status(http.StatusOK), noCORS}},
		{"GET from the CRM's host with a path", http.MethodGet, "/v1/sessions",
			hdr("Origin", crm+"/x", "X-API-Key", f.readKey), []check{status(http.StatusOK), noCORS}},
		{"GET from another scheme", http.MethodGet, "/v1/sessions",
			hdr("Origin", "http://crm.example.com", "X-API-Key", f.readKey), []check{status(http.StatusOK), noCORS}},
		{"GET without an origin", http.MethodGet, "/v1/sessions",
			hdr("X-API-Key", f.readKey), []check{status(http.StatusOK), noCORS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(r, tt.method, tt.path, tt.headers)
			for _, c := range tt.checks {
				c(t, a)
			}
			if !slices.Contains(a.header.Values("Vary"), "Origin") {
				t.Errorf("Vary %q lacks Origin", a.header.Values("Vary"))
			}
			if a.header.Get("Access-Control-Allow-Origin") == "*" || a.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("wildcard or credentials: %v", a.header)
			}
		})
	}
}

func TestNormalizeOrigin(t *testing.T) {
	tests := map[string]string{
		"https://crm.example.com":      "https://crm.example.com",
		"https://CRM.Example.com/":     "https://crm.example.com",
		"https://crm.example.com:443":  "https://crm.example.com",
		"http://crm.example.com:80":    "http://crm.example.com",
		"http://localhost:5173":        "http://localhost:5173",
		"http://[::1]:8080":            "http://[::1]:8080",
		"HTTPS://crm.example.com":      "https://crm.example.com",
		"null":                         "",
		"":                             "",
		"*":                            "",
		"https://crm.example.com/app":  "",
		"ftp://crm.example.com":        "",
		"https://user@crm.example.com": "",
		"https://crm.example.com?x=1":  "",
		"javascript:alert(1)":          "",
	}
	for in, want := range tests {
		got, ok := normalizeOrigin(in)
		if got != want || ok != (want != "") {
			t.Errorf("normalizeOrigin(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
