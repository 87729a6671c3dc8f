package app_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// BenchmarkTracingCachedSessions is one cached GET /v1/sessions through the whole router, in
// process, with every production layer on (productionLayers), on two replicas of one fleet: "off" is built while tracing is off (as with no OTLP
// endpoint: no tracing middleware, no Redis hook), "on-10pct" while it is on with
// parentbased_traceidratio 0.1 and a batching processor over an exporter that drops the spans.
// The requests carry no traceparent, so about one in ten starts a recorded trace. With -count N
// the two alternate, so the machine's changing load hits both alike. scripts/bench-tracing runs
// it and compares "off" with the same request at the commit before tracing existed.
func BenchmarkTracingCachedSessions(b *testing.B) {
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	redisURL := redistest.URL(b)
	off := startGateway(b, simURL, creds, redisURL, productionLayers())

	tp := telemetry.NewProvider(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	restore := telemetry.Install(tp, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	on := startGateway(b, simURL, creds, redisURL, productionLayers())
	restore() // "off" runs with tracing off, as built; "on" re-installs it
	b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })

	for _, bc := range []struct {
		name   string
		g      *gateway
		traced bool
	}{{"off", off, false}, {"on-10pct", on, true}} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.traced {
				defer telemetry.Install(tp, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))()
			}
			h := bc.g.app.Handler()
			req := httptest.NewRequest(http.MethodGet, "/v1/sessions", nil)
			req.Header.Set("X-API-Key", bc.g.key)
			req.Header.Set("Origin", benchOrigin)
			h.ServeHTTP(httptest.NewRecorder(), req)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
