package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricsOneSchemeNoSubject: after JWT-authenticated requests, a replica's /metrics names
// the callers by the configured caller claim (GATEWAY_JWT_CALLER_CLAIM) or "jwt", never by the
// token's subject (an e-mail address), not even for a claim value that is not a plain name; every
// metric of the gateway's own is under inboxhub_gateway_ with its unit in the name, and
// build_info says what runs.
func TestMetricsOneSchemeNoSubject(t *testing.T) {
	t.Parallel()
	e := startV1(t, map[string]string{"GATEWAY_JWT_CALLER_CLAIM": "site"})
	const subject = "ana.souza@example.invalid"
	for _, claims := range []jwt.MapClaims{
		{"sub": subject, "site": "crm-main"},
		{"sub": subject, "site": subject}, // not a plain name: labelled "jwt"
		{"sub": subject},                  // no claim: "jwt"
	} {
		a := e.gw.request(t, http.MethodGet, "/v1/sessions", nil, map[string]string{"X-API-Key": "", "Authorization": token(t, claims)})
		if a.status != http.StatusOK {
			t.Fatalf("GET /v1/sessions with %v = %d %s", claims, a.status, a.body)
		}
	}
	m := e.gw.adminGet(t, "/metrics")
	if m.status != http.StatusOK {
		t.Fatalf("/metrics = %d", m.status)
	}
	if strings.Contains(m.body, "ana.souza") || strings.Contains(m.body, "example.invalid") {
		t.Error("/metrics holds the JWT subject")
	}
	for _, want := range []string{
		`inboxhub_gateway_http_requests_total{caller="crm-main",method="GET",route="/v1/sessions",status="200"} 1`,
		`inboxhub_gateway_http_requests_total{caller="jwt",method="GET",route="/v1/sessions",status="200"} 2`,
		`inboxhub_gateway_build_info{goversion="go`,
	} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(e.gw.logs.String(), "ana.souza") {
		t.Error("the access log holds the JWT subject")
	}

	families, err := e.gw.app.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		name := f.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue // the runtime's, the process's and the scrape handler's standard metrics
		}
		if !strings.HasPrefix(name, "inboxhub_gateway_") {
			t.Errorf("%s is not under inboxhub_gateway_", name)
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
			if !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_bytes") {
				t.Errorf("histogram %s has no unit", name)
			}
		}
	}
}
