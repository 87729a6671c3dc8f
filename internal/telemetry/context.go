package telemetry

import (
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderRequestID carries the request id: read from callers, echoed to them, and sent on every
// outgoing call made for the request.
const HeaderRequestID = "X-Request-ID"

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyURLTemplate
)

// WithRequestID returns ctx carrying the request id, in one allocation (context.WithValue would
// take two: its own and the id's boxing).
func WithRequestID(ctx context.Context, id string) context.Context {
	return &requestIDContext{Context: ctx, id: id}
}

// RequestID returns the request id ctx carries, "" when none.
func RequestID(ctx context.Context) string {
	if c, ok := ctx.Value(keyRequestID).(*requestIDContext); ok {
		return c.id
	}
	return ""
}

// requestIDContext is a context carrying a request id; everything else comes from its parent.
type requestIDContext struct {
	context.Context
	id string
}

// Value answers keyRequestID with the context itself (no boxing), anything else from the parent.
func (c *requestIDContext) Value(key any) any {
	if key == keyRequestID {
		return c
	}
	return c.Context.Value(key)
}

// WithURLTemplate returns ctx naming the route pattern of the outgoing call about to be made
// (such as /api/sessions/{id}/contacts), which its span is named after instead of the raw path.
// It adds nothing while tracing is off.
func WithURLTemplate(ctx context.Context, template string) context.Context {
	if !Enabled() {
		return ctx
	}
	return context.WithValue(ctx, keyURLTemplate, template)
}

func urlTemplate(ctx context.Context) string {
	t, _ := ctx.Value(keyURLTemplate).(string)
	return t
}

// Carrier is the context a queued job takes along to its worker: the propagation fields of the
// trace (traceparent, tracestate, baggage, or b3 when configured) and the request id.
type Carrier map[string]string

// carrierRequestID is the request id's key in a Carrier (lower case, like the propagators').
const carrierRequestID = "x-request-id"

// Inject returns the carrier of ctx: its trace context (when tracing is on) and request id; nil
// when there is neither.
func Inject(ctx context.Context) Carrier {
	c := Carrier{}
	if Enabled() {
		Propagator().Inject(ctx, propagation.MapCarrier(c))
	}
	if id := RequestID(ctx); id != "" {
		c[carrierRequestID] = id
	}
	if len(c) == 0 {
		return nil
	}
	return c
}

// Extract returns ctx with the carrier's request id and, when tracing is on, its remote span
// context as the parent of the spans that follow.
func Extract(ctx context.Context, c Carrier) context.Context {
	if len(c) == 0 {
		return ctx
	}
	if id := c[carrierRequestID]; id != "" {
		ctx = WithRequestID(ctx, id)
	}
	if Enabled() {
		ctx = Propagator().Extract(ctx, propagation.MapCarrier(c))
	}
	return ctx
}

// RequestID is the request id the carrier holds, "" when none.
func (c Carrier) RequestID() string { return c[carrierRequestID] }

// Encode is the carrier as stored beside a job ("" when empty).
func (c Carrier) Encode() string {
	if len(c) == 0 {
		return ""
	}
	b, _ := json.Marshal(map[string]string(c))
	return string(b)
}

// DecodeCarrier reads a stored carrier; anything unreadable is no carrier (a job runs without
// its trace rather than not at all).
func DecodeCarrier(s string) Carrier {
	if s == "" {
		return nil
	}
	var c Carrier
	if json.Unmarshal([]byte(s), &c) != nil {
		return nil
	}
	return c
}

// LinkTo returns the span context a stored carrier names, for a span that follows from it
// without being its child (a webhook's forward and its receipt); invalid when none.
func LinkTo(c Carrier) trace.SpanContext {
	if len(c) == 0 || !Enabled() {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(Propagator().Extract(context.Background(), propagation.MapCarrier(c)))
}

// SampledTraceID returns the trace id of the sampled span ctx carries, for a metric's exemplar;
// ok is false while tracing is off or the request is not sampled (an exemplar then points
// nowhere).
func SampledTraceID(ctx context.Context) (id string, ok bool) {
	if !Enabled() {
		return "", false
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return "", false
	}
	return sc.TraceID().String(), true
}
