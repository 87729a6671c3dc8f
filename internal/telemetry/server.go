package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// attrRequestID is the request id on a server span, to go from a trace to the access log.
const attrRequestID = attribute.Key("inboxhub.request_id")

// StartServer continues the caller's trace (the propagation headers of h, when tracing is on)
// with a server span named after the method and route pattern, and writes the span's context
// into the answer's headers (traceparent), so that the caller learns the trace id. The raw path
// is never recorded. Call it only while Enabled.
func StartServer(ctx context.Context, h, answer http.Header, method, route, requestID string) (context.Context, trace.Span) {
	ctx = Propagator().Extract(ctx, propagation.HeaderCarrier(h))
	ctx, span := Tracer().Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(method), semconv.HTTPRoute(route), attrRequestID.String(requestID)))
	Propagator().Inject(ctx, propagation.HeaderCarrier(answer))
	return ctx, span
}

// EndServer records the answer's status on a server span and ends it (a 5xx is an error).
func EndServer(span trace.Span, status int) {
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// Start starts an internal span of the gateway's own work (a sync page, a job) under ctx's span.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}
