package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps base (http.DefaultTransport when nil) so that every request it sends carries
// the request id of its context in X-Request-ID (unless the request sets one) and, while tracing
// is on, runs in a client span whose context goes along in the propagation headers
// (traceparent, tracestate). The span is named after the method and the route pattern given with
// WithURLTemplate, never the raw path, and records no query, header or error text. Wrapping a
// wrapped transport returns it unchanged.
func Transport(base http.RoundTripper) http.RoundTripper {
	if _, ok := base.(*transport); ok {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base}
}

type transport struct{ base http.RoundTripper }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	id := RequestID(ctx)
	on := Enabled()
	if !on && (id == "" || req.Header.Get(HeaderRequestID) != "") {
		return t.base.RoundTrip(req)
	}
	var span trace.Span
	if on {
		ctx, span = Tracer().Start(ctx, clientSpanName(req.Method, urlTemplate(ctx)),
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(clientAttributes(req, urlTemplate(ctx))...))
		defer span.End()
	}
	// A RoundTripper must not change the caller's request: the headers go on a copy.
	out := req.Clone(ctx)
	if id != "" && out.Header.Get(HeaderRequestID) == "" {
		out.Header.Set(HeaderRequestID, id)
	}
	if on {
		Propagator().Inject(ctx, propagation.HeaderCarrier(out.Header))
	}
	resp, err := t.base.RoundTrip(out)
	if span != nil {
		endClientSpan(span, resp, err)
	}
	return resp, err
}

func clientSpanName(method, template string) string {
	if template == "" {
		return method
	}
	return method + " " + template
}

func clientAttributes(req *http.Request, template string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(req.Method)}
	host, port := req.URL.Hostname(), req.URL.Port()
	if host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	if template != "" {
		attrs = append(attrs, semconv.URLTemplate(template))
	}
	return attrs
}

// endClientSpan records the answer's status, or the kind of transport failure (never its text:
// a *url.Error repeats the URL).
func endClientSpan(span trace.Span, resp *http.Response, err error) {
	if err != nil {
		kind := "transport"
		var ne net.Error
		switch {
		case errors.Is(err, context.Canceled):
			kind = "canceled"
		case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			kind = "timeout"
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(kind))
		span.SetStatus(codes.Error, kind)
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
}
