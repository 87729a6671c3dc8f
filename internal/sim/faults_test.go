package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaultLatency(t *testing.T) {
	s, c := startSim(t, testOptions())
	s.SetFaults(Faults{Latency: 150 * time.Millisecond})
	start := time.Now()
	c.get("/api/sessions").must(t, http.StatusOK, nil)
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("answered in %v despite 150ms of latency", elapsed)
	}
	start = time.Now()
	c.get("/health")
	if elapsed := time.Since(start); elapsed >= 150*time.Millisecond {
		t.Errorf("/health took %v: latency must only apply to /api", elapsed)
	}
}

// TestOutageReachesHealth: an outage injected with AllStatus 502, 503 or 504 (the server behind
// nginx is down) fails GET /health too, which an application error (500) does not; every
// /health request is counted apart from /api.
func TestOutageReachesHealth(t *testing.T) {
	s, c := startSim(t, testOptions())
	for _, tt := range []struct{ all, want int }{{0, 200}, {503, 503}, {502, 502}, {504, 504}, {500, 200}} {
		s.SetFaults(Faults{AllStatus: tt.all})
		if r := c.get("/health"); r.StatusCode != tt.want {
			t.Errorf("AllStatus %d: /health = %d, want %d", tt.all, r.StatusCode, tt.want)
		}
	}
	got := s.Counters()
	if got.HealthChecks != 5 || len(got.Requests) != 0 {
		t.Errorf("health checks %d, /api requests %v; want 5 and none", got.HealthChecks, got.Requests)
	}
}

func TestFaultStatuses(t *testing.T) {
	tests := []struct {
		name     string
		faults   Faults
		path     string
		method   string
		status   int
		code     string // "" with a 5xx status: nginx HTML
		okOthers bool   // another route still answers 200
	}{
		{"chats 500", Faults{RouteStatus: map[string]int{"GET /api/messages/{sessionId}/chats": 500}},
			"/api/messages/demo_session/chats", http.MethodGet, 500, codeInternal, true},
		{"connect 500", Faults{RouteStatus: map[string]int{"POST /api/sessions/{id}/connect": 500}},
			"/api/sessions/93/connect", http.MethodPost, 500, codeConnection, true},
		{"qr 500", Faults{RouteStatus: map[string]int{"GET /api/sessions/{id}/qr": 500}},
			"/api/sessions/92/qr", http.MethodGet, 500, codeQRGeneration, true},
		{"contacts 401", Faults{RouteStatus: map[string]int{"GET /api/contacts/{sessionId}": 401}},
			"/api/contacts/demo_session", http.MethodGet, 401, codeInvalidToken, true},
		{"everything 503", Faults{AllStatus: 503}, "/api/sessions", http.MethodGet, 503, codeUnavailable, false},
		{"everything 502 from nginx", Faults{AllStatus: 502}, "/api/sessions", http.MethodGet, 502, "", false},
		{"route beats all", Faults{AllStatus: 503, RouteStatus: map[string]int{"GET /api/sessions": 500}},
			"/api/sessions", http.MethodGet, 500, codeInternal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := startSim(t, testOptions())
			s.SetFaults(tt.faults)
			r := c.do(tt.method, tt.path, nil)
			switch {
			case tt.code != "":
				r.mustError(t, tt.status, tt.code)
			case r.StatusCode != tt.status || !strings.Contains(string(r.raw), "nginx"):
				t.Errorf("got %d %q, want %d and nginx's page", r.StatusCode, r.raw, tt.status)
			}
			if tt.okOthers {
				c.get("/api/sessions").must(t, http.StatusOK, nil)
			}
			if got := s.Counters().Status[tt.status]; got != 1 {
				t.Errorf("status %d counted %d times", tt.status, got)
			}
		})
	}
}

func TestForce429(t *testing.T) {
	s, c := startSim(t, testOptions())
	s.SetFaults(Faults{Force429: 2})
	for i := 0; i < 2; i++ {
		r := c.get("/api/contacts/demo_session")
		r.mustError(t, http.StatusTooManyRequests, codeRateLimit)
		if headerInt(t, r, "Retry-After") < 1 || headerInt(t, r, "RateLimit-Remaining") != 0 {
			t.Errorf("429 headers: %v", r.Header)
		}
	}
	c.get("/api/contacts/demo_session").must(t, http.StatusOK, nil)
	if got := s.Counters().RateLimited; got != 2 {
		t.Errorf("rate limited %d, want 2", got)
	}
}

func TestDropConnections(t *testing.T) {
	s, c := startSim(t, testOptions())
	s.SetFaults(Faults{DropConnections: 1})
	// A fresh connection, so that the transport cannot retry the request on a new one.
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, c.base+"/api/sessions", nil)
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := plain.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a dropped connection answered %d", resp.StatusCode)
	}
	c.get("/api/sessions").must(t, http.StatusOK, nil)
	got := s.Counters()
	if got.Requests["GET /api/sessions"] != 2 || got.Status[http.StatusOK] != 1 {
		t.Errorf("counters after a drop: %v %v", got.Requests, got.Status)
	}
}

func TestErrorTextInMessageField(t *testing.T) {
	s, c := startSim(t, testOptions())
	s.SetFaults(Faults{UseMessageField: true})
	r := c.get("/api/contacts/support_desk")
	if r.StatusCode != http.StatusBadRequest || r.env.Code != codeSessionNotConn ||
		r.env.Message != "La sesión debe estar conectada" || r.env.Error != "" {
		t.Errorf("message-field error: %d %s", r.StatusCode, r.raw)
	}
}

func TestCountersByRoutePattern(t *testing.T) {
	s, c := startSim(t, testOptions())
	c.get("/api/contacts/demo_session")
	c.get("/api/contacts/demo_session?page=2")
	c.get("/api/messages/demo_session/chats")
	c.get("/api/nothing/here").mustError(t, http.StatusNotFound, codeNotFound)
	c.get("/health")
	got := s.Counters()
	want := map[string]int64{"GET /api/contacts/{sessionId}": 2, "GET /api/messages/{sessionId}/chats": 1, "/api/": 1}
	if len(got.Requests) != len(want) {
		t.Errorf("requests %v, want %v", got.Requests, want)
	}
	for k, n := range want {
		if got.Requests[k] != n {
			t.Errorf("requests[%q] = %d, want %d", k, got.Requests[k], n)
		}
	}
	if got.Status[200] != 3 || got.Status[404] != 1 {
		t.Errorf("status %v", got.Status)
	}
	s.ResetCounters()
	if got := s.Counters(); len(got.Requests) != 0 || len(got.Status) != 0 {
		t.Errorf("after reset: %+v", got)
	}
}

func TestFaultsJSON(t *testing.T) {
	in := `{"latency":"200ms","routeStatus":{"GET /api/sessions":500},"allStatus":503,"force429":2,"dropConnections":1,"useMessageField":true}`
	var f Faults
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatal(err)
	}
	want := Faults{Latency: 200 * time.Millisecond, RouteStatus: map[string]int{"GET /api/sessions": 500},
		AllStatus: 503, Force429: 2, DropConnections: 1, UseMessageField: true}
	out, _ := json.Marshal(f)
	back, _ := json.Marshal(want)
	if string(out) != string(back) || string(out) != in {
		t.Errorf("round trip: %s, want %s", out, in)
	}
	for _, bad := range []string{`{"latency":"soon"}`, `{"allStatus":200}`, `{"routeStatus":{"x":700}}`, `{"force429":-1}`} {
		if err := json.Unmarshal([]byte(bad), &f); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
