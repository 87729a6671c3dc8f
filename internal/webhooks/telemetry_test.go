package webhooks

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestForwardLinkedToItsReceiptAndMeasured: with tracing on, an event's forwarding runs in a
// trace of its own whose "webhooks forward" span links to the span that received the webhook,
// with the call to the CRM as its child; while no drainer runs, webhook_outbox_events counts the
// waiting events, and each delivery observes webhook_forward_lag_seconds.
func TestForwardLinkedToItsReceiptAndMeasured(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.AlwaysSample(), sdktrace.WithSyncer(exp))
	restore := telemetry.Install(tp, propagation.TraceContext{})
	t.Cleanup(func() { restore(); _ = tp.Shutdown(context.Background()) })

	sink := newCRMSink(t)
	ts := newTestService(t, nil, false, sink.forwardTo)
	ctx, receipt := telemetry.Tracer().Start(context.Background(), "POST /webhooks/inbox-hub",
		trace.WithSpanKind(trace.SpanKindServer))
	for _, id := range []string{"L1", "L2"} {
		if _, err := ts.Receive(ctx, signed(messageBody("sess_link", id))); err != nil {
			t.Fatal(err)
		}
	}
	receipt.End()
	if n := ts.counter("webhook_outbox_events", nil); n != 2 {
		t.Fatalf("webhook_outbox_events = %v before any drainer ran, want 2", n)
	}

	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "both events delivered", func() bool { return len(sink.received()) == 2 })
	wait.Until(t, 5*time.Second, "the outbox gauge falls to 0", func() bool { return ts.counter("webhook_outbox_events", nil) == 0 })
	if n := ts.histogramCount("webhook_forward_lag_seconds"); n != 2 {
		t.Errorf("webhook_forward_lag_seconds observed %d deliveries, want 2", n)
	}

	var forwards []tracetest.SpanStub
	wait.Until(t, 5*time.Second, "two forward spans", func() bool {
		forwards = forwards[:0]
		for _, s := range exp.GetSpans() {
			if s.Name == "webhooks forward" {
				forwards = append(forwards, s)
			}
		}
		return len(forwards) == 2
	})
	for _, f := range forwards {
		if f.Parent.IsValid() || f.SpanContext.TraceID() == receipt.SpanContext().TraceID() {
			t.Errorf("the forward is not a trace of its own: parent %v", f.Parent)
		}
		if len(f.Links) != 1 || f.Links[0].SpanContext.SpanID() != receipt.SpanContext().SpanID() ||
			f.Links[0].SpanContext.TraceID() != receipt.SpanContext().TraceID() {
			t.Fatalf("forward links %v, want the receipt %v", f.Links, receipt.SpanContext())
		}
		calls := 0
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindClient && s.Parent.SpanID() == f.SpanContext.SpanID() {
				calls++
			}
		}
		if calls == 0 {
			t.Errorf("no call to the CRM inside the forward span")
		}
	}
}

// histogramCount is the number of observations of a histogram of the service's registry.
func (ts *testService) histogramCount(name string) uint64 {
	mfs, _ := ts.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}

// TestSplitEntry: an entry with its envelope gives the event and receipt; an event alone (an
// entry from before the envelope, or a replayed dead letter) is forwarded as it is.
func TestSplitEntry(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	ctx := telemetry.WithRequestID(context.Background(), "req-entry-test")
	ev, meta := splitEntry(newEntry(ctx, []byte(`{"id":"evt_1"}`), at, at))
	if ev != `{"id":"evt_1"}` || meta.ReceivedMs != at.UnixMilli() || meta.Trace.RequestID() != "req-entry-test" {
		t.Errorf("envelope: %q %+v", ev, meta)
	}
	for _, raw := range []string{`{"id":"evt_2","text":"a\nb"}`, "@not json\n{\"id\":\"evt_3\"}"} {
		ev, meta := splitEntry(raw)
		if meta.ReceivedMs != 0 || (raw[0] == '{' && ev != raw) || (raw[0] == '@' && ev != `{"id":"evt_3"}`) {
			t.Errorf("%q: %q %+v", raw, ev, meta)
		}
	}
}
