package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// installTracing turns tracing on for the test with an in-memory exporter (every span, W3C
// tracecontext and baggage), as Setup would with an OTLP endpoint. Tests that use it are not
// parallel: the provider is OpenTelemetry's global. Spans are told apart by trace id.
func installTracing(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.ParentBased(sdktrace.AlwaysSample()), sdktrace.WithSyncer(exp))
	restore := telemetry.Install(tp, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() { restore(); _ = tp.Shutdown(t.Context()) })
	return exp
}

// seenHeaders is what the simulator received: the traceparent and X-Request-ID of each request.
type seenHeaders struct {
	mu   sync.Mutex
	reqs []http.Header
}

func (s *seenHeaders) all() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.reqs...)
}

// startRecordingSim runs the simulator over real HTTP behind a handler that records the
// propagation headers of every request it gets.
func startRecordingSim(t *testing.T, creds fakeCreds, o sim.Options) (*seenHeaders, string) {
	t.Helper()
	o.Identifier, o.Password, o.APIKey = creds.identifier, creds.password, creds.apiKey
	for _, r := range []*sim.Rate{&o.RateAuth, &o.RateRead, &o.RateSend, &o.RateGlobal} {
		if *r == (sim.Rate{}) {
			*r = sim.NoLimit()
		}
	}
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	seen := &seenHeaders{}
	h := s.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.mu.Lock()
		seen.reqs = append(seen.reqs, http.Header{
			"Traceparent":  r.Header.Values("Traceparent"),
			"X-Request-Id": r.Header.Values("X-Request-Id"),
			"Path":         {r.URL.Path},
		})
		seen.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); s.Close() })
	return seen, srv.URL
}

// spansOf returns the ended spans of one trace.
func spansOf(exp *tracetest.InMemoryExporter, id trace.TraceID) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// callerTrace is the trace context of the caller's own span, as a CRM would send it.
const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
)

// TestTracingFollowsARequestAcrossSystems: a request carrying a traceparent gives one trace whose
// root is the router's server span, a child of the caller's span; the cache's Redis commands and
// the upstream call belong to it; the simulator receives the same trace id (in traceparent) and
// the caller's X-Request-ID; the answer carries both back. Spans name route patterns: a phone
// number in the path reaches no span.
func TestTracingFollowsARequestAcrossSystems(t *testing.T) {
	exp := installTracing(t)
	creds := newCreds()
	seen, simURL := startRecordingSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)

	const requestID = "crm-req-7f3a"
	a := g.request(t, http.MethodGet, "/v1/sessions", nil, map[string]string{
		"Traceparent": "00-" + callerTraceID + "-" + callerSpanID + "-01", "X-Request-ID": requestID})
	if a.status != http.StatusOK {
		t.Fatalf("GET /v1/sessions = %d %s", a.status, a.body)
	}
	if got := a.header.Get("X-Request-ID"); got != requestID {
		t.Errorf("answer X-Request-ID = %q, want the caller's", got)
	}
	if tp := a.header.Get("Traceparent"); !strings.HasPrefix(tp, "00-"+callerTraceID+"-") {
		t.Errorf("answer traceparent = %q, want the caller's trace", tp)
	}

	tid, _ := trace.TraceIDFromHex(callerTraceID)
	var spans tracetest.SpanStubs
	wait.Until(t, 10*time.Second, "the request's spans are exported", func() bool {
		spans = spansOf(exp, tid)
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer {
				return true
			}
		}
		return false
	})
	var root *tracetest.SpanStub
	byKind := map[string]int{}
	for i, s := range spans {
		switch {
		case s.SpanKind == trace.SpanKindServer:
			root = &spans[i]
		case s.SpanKind == trace.SpanKindClient && strings.HasPrefix(s.Name, "GET /api/sessions"):
			byKind["upstream"]++
		case s.SpanKind == trace.SpanKindClient && hasAttr(s, "db.system.name", "redis") || hasAttr(s, "db.system", "redis"):
			byKind["redis"]++
		}
	}
	if root == nil || root.Name != "GET /v1/sessions" {
		t.Fatalf("no server span named after the route: %v", names(spans))
	}
	if root.Parent.SpanID().String() != callerSpanID || !root.Parent.IsRemote() {
		t.Errorf("server span's parent = %v, want the caller's span %s", root.Parent.SpanID(), callerSpanID)
	}
	if byKind["upstream"] == 0 || byKind["redis"] == 0 {
		t.Errorf("trace holds %v, want the upstream call and the cache's Redis commands: %v", byKind, names(spans))
	}

	// The replica's own background reads (the status poller) reach the simulator too, outside any
	// request: the request's call is the one in the caller's trace.
	var listed bool
	for _, h := range seen.all() {
		if h.Get("Path") != "/api/sessions" || !strings.HasPrefix(h.Get("Traceparent"), "00-"+callerTraceID+"-") {
			continue
		}
		listed = true
		t.Logf("simulator received traceparent %s", h.Get("Traceparent"))
		if got := h.Get("X-Request-Id"); got != requestID {
			t.Errorf("the simulator got X-Request-ID %q, want %q", got, requestID)
		}
	}
	if !listed {
		t.Fatal("the simulator saw no GET /api/sessions in the caller's trace")
	}

	// The request's duration links to its trace: an exemplar in the OpenMetrics exposition.
	req, _ := http.NewRequest(http.MethodGet, g.adminURL+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(om), `route="/v1/sessions"`) || !strings.Contains(string(om), `# {trace_id="`+callerTraceID+`"}`) {
		t.Errorf("no exemplar with the request's trace id on /v1/sessions' duration in the OpenMetrics exposition")
	}

	// A phone number in the path: the span is named by the pattern, and no attribute holds it.
	const phone = "5511987654321"
	_ = g.request(t, http.MethodGet, "/v1/sessions/demo_session/chats/"+phone+"@s.whatsapp.net/messages", nil, map[string]string{
		"Traceparent": "00-" + callerTraceID + "-" + callerSpanID + "-01"})
	wait.Until(t, 10*time.Second, "the second request's server span", func() bool {
		for _, s := range spansOf(exp, tid) {
			if s.Name == "GET /v1/sessions/:sessionId/chats/:chatId/messages" {
				return true
			}
		}
		return false
	})
	for _, s := range exp.GetSpans() {
		raw, _ := json.Marshal(struct {
			Name  string
			Attrs any
		}{s.Name, s.Attributes})
		if strings.Contains(string(raw), phone) {
			t.Errorf("span %q records the phone number: %s", s.Name, raw)
		}
	}
}

// TestTracingCarriesASyncJobsTrace: "sync now" queued by a request carrying a traceparent runs,
// on a worker, in the same trace: the job's attempt is a child of the request's server span and
// its page spans (each with its upstream call) are children of the attempt.
func TestTracingCarriesASyncJobsTrace(t *testing.T) {
	exp := installTracing(t)
	creds := newCreds()
	_, simURL := startRecordingSim(t, creds, sim.Options{Contacts: 30, Chats: 3, MessagesPerChat: 2})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)

	a := g.post(t, "/v1/sessions/demo_session/sync", `{}`, map[string]string{
		"Traceparent": "00-" + callerTraceID + "-" + callerSpanID + "-01"})
	if a.status != http.StatusAccepted && a.status != http.StatusOK {
		t.Fatalf("sync = %d %s", a.status, a.body)
	}
	var ans struct{ Data syncjob.Job }
	if err := json.Unmarshal([]byte(a.body), &ans); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 60*time.Second, "the job ends", func() bool {
		j, err := g.app.Sync.Job(t.Context(), ans.Data.ID)
		return err == nil && syncjob.Final(j.State)
	})
	tid, _ := trace.TraceIDFromHex(callerTraceID)
	var spans tracetest.SpanStubs
	wait.Until(t, 10*time.Second, "the job's spans are exported", func() bool {
		spans = spansOf(exp, tid)
		return count(spans, "sync page") > 0 && count(spans, "jobs process") > 0
	})
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var server trace.SpanID
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		if s.SpanKind == trace.SpanKindServer && s.Name == "POST /v1/sessions/:sessionId/sync" {
			server = s.SpanContext.SpanID()
		}
	}
	if !server.IsValid() {
		t.Fatalf("no server span for the sync request: %v", names(spans))
	}
	for _, s := range spans {
		if s.Name != "sync page" {
			continue
		}
		attempt, ok := byID[s.Parent.SpanID()]
		if !ok || !strings.HasPrefix(attempt.Name, "jobs process") {
			t.Fatalf("page span's parent is not the job's attempt: %v", names(spans))
		}
		if attempt.Parent.SpanID() != server {
			t.Fatalf("the job's attempt is not a child of the request that queued it")
		}
	}
	if n := count(spans, "GET /api/contacts/"); n == 0 {
		t.Errorf("no upstream page call in the job's trace: %v", names(spans))
	}
}

func count(spans tracetest.SpanStubs, prefix string) int {
	n := 0
	for _, s := range spans {
		if strings.HasPrefix(s.Name, prefix) {
			n++
		}
	}
	return n
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func hasAttr(s tracetest.SpanStub, key, value string) bool {
	for _, a := range s.Attributes {
		if string(a.Key) == key && a.Value.Emit() == value {
			return true
		}
	}
	return false
}
