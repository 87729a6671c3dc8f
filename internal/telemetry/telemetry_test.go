package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestReadTurnsTracingOnOnlyWithAnExporter: no endpoint, OTEL_TRACES_EXPORTER=none or
// OTEL_SDK_DISABLED=true leave tracing off; an endpoint turns it on.
func TestReadTurnsTracingOnOnlyWithAnExporter(t *testing.T) {
	for _, tc := range []struct {
		env map[string]string
		on  bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "gw"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces", "OTEL_TRACES_EXPORTER": "otlp"}, true},
	} {
		s, err := telemetry.Read(env(tc.env))
		if err != nil || s.On != tc.on {
			t.Errorf("%v: on=%v err=%v, want on=%v", tc.env, s.On, err, tc.on)
		}
	}
}

// TestReadRefusesWrongValues: each wrong OTEL_* value is named.
func TestReadRefusesWrongValues(t *testing.T) {
	for name, v := range map[string]string{
		"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		"OTEL_TRACES_SAMPLER": "sometimes", "OTEL_PROPAGATORS": "tracecontext,nonsense",
	} {
		if _, err := telemetry.Read(env(map[string]string{name: v})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err = %v", name, v, err)
		}
	}
	if _, err := telemetry.Read(env(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"})); err == nil {
		t.Error("a ratio above 1 was accepted")
	}
}

// TestReadDefaultsAndB3: W3C tracecontext and baggage by default; b3 when asked; the sampler
// from OTEL_TRACES_SAMPLER(_ARG).
func TestReadDefaultsAndB3(t *testing.T) {
	s, err := telemetry.Read(env(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	fields := s.Propagator.Fields() // in no fixed order (the composite propagator collects them in a map)
	slices.Sort(fields)
	if got := strings.Join(fields, ","); got != "baggage,traceparent,tracestate" {
		t.Errorf("default propagation fields = %s", got)
	}
	if s.Service != telemetry.DefaultServiceName || s.Protocol != "http/protobuf" {
		t.Errorf("defaults: %q %q", s.Service, s.Protocol)
	}
	s, err = telemetry.Read(env(map[string]string{"OTEL_PROPAGATORS": "b3", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG": "0.1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Propagator.Fields(), ","); !strings.Contains(got, "b3") {
		t.Errorf("b3 fields = %s", got)
	}
	if !strings.Contains(s.Sampler.Description(), "TraceIDRatioBased{0.1}") || s.Protocol != "http/protobuf" {
		t.Errorf("sampler %s, protocol %s", s.Sampler.Description(), s.Protocol)
	}
}

// TestTransportSendsTheRequestIDWhileTracingIsOff: off, the request id still goes along, no
// traceparent is invented, and the caller's request is not changed.
func TestTransportSendsTheRequestIDWhileTracingIsOff(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	hc := &http.Client{Transport: telemetry.Transport(nil)}
	req, _ := http.NewRequestWithContext(telemetry.WithRequestID(context.Background(), "req-1"), http.MethodGet, srv.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Get("X-Request-ID") != "req-1" || got.Get("Traceparent") != "" {
		t.Errorf("sent X-Request-ID %q, traceparent %q", got.Get("X-Request-ID"), got.Get("Traceparent"))
	}
	if req.Header.Get("X-Request-ID") != "" {
		t.Error("the caller's request was changed")
	}
}

// TestClientSpansNameThePatternNotThePath: on, an outgoing call's span is named by its route
// pattern and records neither the path nor the query (phone numbers, tokens); the callee gets the
// span's traceparent.
func TestClientSpansNameThePatternNotThePath(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.AlwaysSample(), sdktrace.WithSyncer(exp))
	restore := telemetry.Install(tp, propagation.TraceContext{})
	defer restore()
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	ctx, parent := telemetry.Start(context.Background(), "request")
	ctx = telemetry.WithURLTemplate(ctx, "/api/messages/{sessionId}/chats/{chatId}/messages")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/messages/s1/chats/5511987654321@s.whatsapp.net/messages?token=secret-tok", nil)
	resp, err := (&http.Client{Transport: telemetry.Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].Name != "GET /api/messages/{sessionId}/chats/{chatId}/messages" {
		t.Fatalf("spans: %+v", spans)
	}
	for _, a := range spans[0].Attributes {
		if v := a.Value.Emit(); strings.Contains(v, "5511987654321") || strings.Contains(v, "secret-tok") {
			t.Errorf("attribute %s records %q", a.Key, v)
		}
	}
	if tpHeader := got.Get("Traceparent"); !strings.Contains(tpHeader, spans[0].SpanContext.TraceID().String()) {
		t.Errorf("callee got traceparent %q", tpHeader)
	}

	// An outgoing call with no span to belong to starts no trace.
	exp.Reset()
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err = (&http.Client{Transport: telemetry.Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("an orphan call recorded %d spans", n)
	}
}

// TestLogHandlerAddsTraceFields: a line logged with a span's context carries trace_id and span_id.
func TestLogHandlerAddsTraceFields(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.AlwaysSample(), sdktrace.WithSyncer(exp))
	restore := telemetry.Install(tp, propagation.TraceContext{})
	defer restore()
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	ctx, span := telemetry.Start(context.Background(), "work")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	sc := span.SpanContext()
	if !strings.Contains(lines[0], `"trace_id":"`+sc.TraceID().String()+`"`) || !strings.Contains(lines[0], `"span_id":"`+sc.SpanID().String()+`"`) {
		t.Errorf("line in a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line outside a span: %s", lines[1])
	}
}
