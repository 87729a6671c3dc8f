package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an in-process OTLP/HTTP collector recording what it was sent.
type receiver struct {
	mu      sync.Mutex
	reqs    []*coltracepb.ExportTraceServiceRequest
	headers []http.Header
	answer  func(n int) int // status of the n-th request (from 1)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	var m coltracepb.ExportTraceServiceRequest
	if req.URL.Path != "/v1/traces" || proto.Unmarshal(b, &m) != nil {
		http.Error(w, "not an export request", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, &m)
	r.headers = append(r.headers, req.Header.Clone())
	n := len(r.reqs)
	r.mu.Unlock()
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(n)
	}
	w.WriteHeader(status)
}

// testSpans are two spans covering what the mapping handles: a remote parent, a link, events,
// an error status, every attribute type, one resource and scope.
func testSpans() []sdktrace.ReadOnlySpan {
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	ts, _ := trace.ParseTraceState("vendor=opaque")
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
		TraceFlags: trace.FlagsSampled, Remote: true})
	self := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 1, 1, 1, 1, 1, 1, 1},
		TraceFlags: trace.FlagsSampled, TraceState: ts})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7},
		TraceFlags: trace.FlagsSampled, Remote: true})
	res := resource.NewSchemaless(attribute.String("service.name", "gateway-test"), attribute.String("service.version", "t1"))
	scope := instrumentation.Scope{Name: InstrumentationName, Version: "v0"}
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	attrs := []attribute.KeyValue{attribute.String("s", "v"), attribute.Int("i", 42), attribute.Float64("f", 1.5),
		attribute.Bool("b", true), attribute.StringSlice("ss", []string{"a", "b"}), attribute.IntSlice("is", []int{1, 2}),
		attribute.Float64Slice("fs", []float64{0.5}), attribute.BoolSlice("bs", []bool{false})}
	stubs := tracetest.SpanStubs{
		{Name: "GET /v1/sessions", SpanContext: self, Parent: parent, SpanKind: trace.SpanKindServer,
			StartTime: start, EndTime: start.Add(time.Millisecond), Attributes: attrs,
			Events: []sdktrace.Event{{Name: "retry", Time: start.Add(time.Microsecond), Attributes: attrs[:1], DroppedAttributeCount: 1}},
			Links:  []sdktrace.Link{{SpanContext: linked, Attributes: attrs[1:2]}},
			Status: sdktrace.Status{Code: codes.Error, Description: "failed"}, DroppedAttributes: 2, DroppedLinks: 1,
			Resource: res, InstrumentationScope: scope},
		{Name: "GET /api/sessions", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid,
			SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}), Parent: self, SpanKind: trace.SpanKindClient,
			StartTime: start, EndTime: start.Add(time.Second), Resource: res, InstrumentationScope: scope},
	}
	return stubs.Snapshots()
}

// TestExporterSendsWhatTheSDKExporterSends: for the same spans, the gateway's exporter posts the
// same ExportTraceServiceRequest as the SDK's otlptracehttp, to /v1/traces, with the configured
// headers and gzip.
func TestExporterSendsWhatTheSDKExporterSends(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx := context.Background()

	sdk, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ExportSpans(ctx, testSpans()); err != nil {
		t.Fatal(err)
	}
	s, err := Read(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL + "/",
			"OTEL_EXPORTER_OTLP_HEADERS":     "authorization=Bearer%20fake-test-token, x-tenant = a",
			"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := newOTLPExporter(s.exporter).ExportSpans(ctx, testSpans()); err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 2 {
		t.Fatalf("the receiver got %d requests, want 2", len(rec.reqs))
	}
	if n := len(rec.reqs[1].GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()); n != 2 {
		t.Fatalf("%d spans exported, want 2", n)
	}
	if !proto.Equal(rec.reqs[0], rec.reqs[1]) {
		t.Errorf("the requests differ:\nSDK:     %v\ngateway: %v", rec.reqs[0], rec.reqs[1])
	}
	h := rec.headers[1]
	if h.Get("Authorization") != "Bearer fake-test-token" || h.Get("X-Tenant") != "a" ||
		h.Get("Content-Type") != "application/x-protobuf" || h.Get("Content-Encoding") != "gzip" {
		t.Errorf("headers: %v", h)
	}
}

// TestExporterRetriesWhatIsRetryable: 503 is tried again until accepted; 400 is final; a
// redirect is not followed.
func TestExporterRetriesWhatIsRetryable(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		answer  func(int) int
		wantReq int
		wantErr bool
	}{
		{"503 then 200", func(n int) int { return map[bool]int{true: 503, false: 200}[n == 1] }, 2, false},
		{"400", func(int) int { return 400 }, 1, true},
	} {
		rec := &receiver{answer: tc.answer}
		srv := httptest.NewServer(rec)
		e := newOTLPExporter(exporterConfig{url: srv.URL + "/v1/traces", timeout: 5 * time.Second})
		e.retry = func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }
		err := e.ExportSpans(ctx, testSpans())
		srv.Close()
		if len(rec.reqs) != tc.wantReq || (err != nil) != tc.wantErr {
			t.Errorf("%s: %d requests, err %v", tc.name, len(rec.reqs), err)
		}
	}

	rec := &receiver{}
	target := httptest.NewServer(rec)
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL+"/v1/traces", http.StatusTemporaryRedirect))
	defer redirect.Close()
	e := newOTLPExporter(exporterConfig{url: redirect.URL + "/v1/traces", timeout: 5 * time.Second})
	if err := e.ExportSpans(ctx, testSpans()); err == nil || len(rec.reqs) != 0 {
		t.Errorf("redirect: err %v, %d requests reached its target", err, len(rec.reqs))
	}
}

// TestReadRefusesGRPCAndBadExporterValues: grpc is not built in and says what to use instead;
// a wrong header, timeout, compression or endpoint is named without repeating a header's value.
func TestReadRefusesGRPCAndBadExporterValues(t *testing.T) {
	base := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example.invalid:4318"}
	for name, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
		"OTEL_EXPORTER_OTLP_HEADERS":     "fake-secret-header-value",
		"OTEL_EXPORTER_OTLP_TIMEOUT":     "soon",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
		"OTEL_EXPORTER_OTLP_ENDPOINT":    "collector:4318",
	} {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		m[name] = v
		_, err := Read(func(k string) string { return m[k] })
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err = %v", name, v, err)
			continue
		}
		if name == "OTEL_EXPORTER_OTLP_PROTOCOL" && !strings.Contains(err.Error(), "http/protobuf") {
			t.Errorf("the grpc error does not say what to use: %v", err)
		}
		if strings.Contains(err.Error(), "fake-secret") {
			t.Errorf("the error repeats a header value: %v", err)
		}
	}
}

// TestSetupExportsOverHTTP: Setup with only an endpoint installs a provider whose spans reach
// the collector, with the service name, by the time shutdown returns.
func TestSetupExportsOverHTTP(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	shutdown, s, err := Setup(context.Background(), func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": "gw-setup-test"}[k]
	}, "v-test")
	if err != nil || !s.On {
		t.Fatalf("on=%v err=%v", s.On, err)
	}
	_, span := Tracer().Start(context.Background(), "job")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 1 {
		t.Fatalf("%d export requests, want 1", len(rec.reqs))
	}
	rs := rec.reqs[0].GetResourceSpans()[0]
	var service string
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service != "gw-setup-test" || rs.GetScopeSpans()[0].GetSpans()[0].GetName() != "job" {
		t.Errorf("exported %v", rs)
	}
}
