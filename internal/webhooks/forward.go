package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/lease"
	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// HeaderEventType names the event's type on a forwarded event (X-Gateway-Delivery holds its id).
const HeaderEventType = "X-Gateway-Event"

// forwarder drains session outboxes on this replica: at most one drainer per session fleet-wide
// (the outbox lock), at most MaxDrainers here.
type forwarder struct {
	s       *Service
	nudges  chan string
	slots   chan struct{}
	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

func newForwarder(s *Service) *forwarder {
	return &forwarder{s: s, nudges: make(chan string, 1024), slots: make(chan struct{}, s.cfg.MaxDrainers),
		running: map[string]bool{}}
}

// nudge asks for the session's outbox to be drained soon; it never blocks (the sweep catches what
// a full channel drops).
func (f *forwarder) nudge(sessionID string) {
	select {
	case f.nudges <- sessionID:
	default:
	}
}

// run starts drainers on nudges and, every SweepInterval, for every session with waiting events,
// until ctx ends.
func (f *forwarder) run(ctx context.Context) {
	t := time.NewTicker(f.s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sid := <-f.nudges:
			f.start(ctx, sid)
		case <-t.C:
			sids, err := f.s.cfg.Redis.SMembers(ctx, f.s.k.pending()).Result()
			if err != nil {
				if ctx.Err() == nil {
					f.s.noteTrouble()
					f.s.log.Warn("event forwarder: could not list the outboxes", "error", err.Error())
				}
				continue
			}
			for _, sid := range sids {
				f.start(ctx, sid)
			}
		}
	}
}

// wait returns once every drainer has stopped.
func (f *forwarder) wait() { f.wg.Wait() }

// start runs a drainer for the session if none runs here, the drainers do not hold (see
// Config.SpoolHold; the sweep starts it later), a slot is free, and the outbox lock can be taken.
func (f *forwarder) start(ctx context.Context, sid string) {
	if f.s.holding() {
		return
	}
	f.mu.Lock()
	if f.running[sid] {
		f.mu.Unlock()
		return
	}
	select {
	case f.slots <- struct{}{}:
	default:
		f.mu.Unlock()
		return // busy: the next sweep tries again
	}
	f.running[sid] = true
	f.mu.Unlock()
	done := func() {
		f.mu.Lock()
		delete(f.running, sid)
		f.mu.Unlock()
		<-f.slots
	}
	lock := lease.New(f.s.cfg.Redis, f.s.k.outboxLock(sid), f.s.cfg.DrainLease)
	ok, err := lock.Acquire(ctx)
	if err != nil || !ok {
		done()
		return
	}
	f.wg.Go(func() {
		defer done()
		f.drain(ctx, sid, lock)
	})
}

// drain delivers the session's events in outbox order until the outbox is empty, the lock is lost
// or ctx ends. The lock is renewed meanwhile and released on the way out.
func (f *forwarder) drain(parent context.Context, sid string, l *lease.Lease) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	kept := l.Start(ctx, lease.KeepOptions{OnLost: func(error) {
		f.s.log.Warn("event forwarder: lost the outbox lock", "sessionId", sid)
		cancel()
	}})
	released := false // by releaseIfEmptyScript
	defer func() {
		cancel()
		if released {
			kept.Stop()
			return
		}
		_ = kept.Release(context.Background(), 2*time.Second)
	}()
	o := outboxDrain{f: f, sid: sid, lock: l.Key(), token: l.Token(), outbox: f.s.k.outbox(sid), taken: f.s.k.outboxTaken(sid)}
	for ctx.Err() == nil && !f.s.holding() { // holding: the lock is released, the sweep resumes
		head, err := takeHeadScript.Run(ctx, f.s.cfg.Redis, []string{o.outbox, o.taken}, f.s.cfg.DedupeTTL.Milliseconds()).Text()
		if errors.Is(err, redis.Nil) {
			var stop bool
			if stop, released = o.releaseIfEmpty(ctx); stop {
				return
			}
			continue // an event arrived meanwhile
		}
		if err != nil {
			if ctx.Err() == nil {
				f.s.noteTrouble()
				f.s.log.Warn("event forwarder: could not read an outbox", "sessionId", sid, "error", err.Error())
			}
			return // the lock is released; the next sweep tries again
		}
		if !o.forwardHead(ctx, head) {
			return
		}
	}
}

// outboxDrain is the drain of one session's outbox under its lock.
type outboxDrain struct {
	f                               *forwarder
	sid, lock, token, outbox, taken string
}

// releaseIfEmpty takes the session out of the pending index and releases the lock if the outbox
// is still empty. stop: the drain ends (released: with the lock released); not stop when an event
// arrived meanwhile.
func (o outboxDrain) releaseIfEmpty(ctx context.Context) (stop, released bool) {
	s := o.f.s
	// Out of the index first: an event appended after the release is indexed again by its ingest,
	// one appended before keeps this drainer going.
	if err := s.cfg.Redis.SRem(ctx, s.k.pending(), o.sid).Err(); err != nil {
		return true, false
	}
	n, err := releaseIfEmptyScript.Run(ctx, s.cfg.Redis, []string{o.lock, o.outbox}, o.token).Int()
	if err != nil || n != 1 {
		s.cfg.Redis.SAdd(context.WithoutCancel(ctx), s.k.pending(), o.sid)
	}
	if err != nil || n != 0 {
		return true, err == nil && n == 1
	}
	return false, false
}

// forwardHead delivers the outbox's head entry, dead-letters it when delivery gave up, and pops it;
// false when the drain ends (stopped, the lock lost, or Redis failed: the entry stays for the next
// drainer).
func (o outboxDrain) forwardHead(ctx context.Context, head string) bool {
	s := o.f.s
	event, meta := splitEntry(head)
	attempts, lastErr := o.f.deliver(ctx, event, meta)
	if ctx.Err() != nil {
		return false // stopped or lost the lock: the event stays at the head for the next drainer
	}
	deadID, record := "", ""
	now := s.cfg.Clock()
	if lastErr != nil {
		deadID, record = deadLetterOf(event, o.sid, attempts, lastErr, now)
	}
	if deadID != "" {
		// Kept before it leaves the outbox: a drainer that dies between the two delivers it
		// again rather than losing it.
		if err := deadScript.Run(ctx, s.cfg.Redis, []string{s.k.dead(), s.k.deadIndex()},
			deadID, record, now.UnixMilli(), s.cfg.MaxDeadLetters).Err(); err != nil {
			return false
		}
	}
	n, err := popScript.Run(ctx, s.cfg.Redis, []string{o.outbox, o.lock, o.taken}, o.token, head).Int()
	if err != nil || n < 0 {
		return false
	}
	if deadID != "" && n == 1 {
		s.m.dead.Inc()
		s.log.Warn("event dead-lettered", "eventId", deadID, "sessionId", o.sid, "attempts", attempts,
			"error", lastErr.Error())
	}
	return true
}

// errRejected: the CRM refused the event for good (a 4xx other than 408, 425 and 429).
var errRejected = errors.New("the events URL refused the event")

// deliver posts one event until it is accepted (nil error), refused for good, or Attempts tries
// failed; it returns the number of tries and the last error. Its calls run in a "webhooks
// forward" span of a trace of its own, linked to the span that received the event, and carry
// that request's id.
func (f *forwarder) deliver(ctx context.Context, raw string, meta entryMeta) (_ int, err error) {
	s := f.s
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(raw), &head)
	ctx, span := forwardSpan(ctx, meta)
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, "")
		}
		span.End()
	}()
	for attempt := 1; ; attempt++ {
		retryAfter, err := f.post(ctx, []byte(raw), head.ID, head.Type)
		if err == nil {
			s.m.forwarded.WithLabelValues("delivered").Inc()
			if meta.ReceivedMs > 0 {
				s.m.lag.Observe(max(0, s.cfg.Clock().Sub(time.UnixMilli(meta.ReceivedMs)).Seconds()))
			}
			return attempt, nil
		}
		if ctx.Err() != nil {
			return attempt, ctx.Err()
		}
		if errors.Is(err, errRejected) {
			s.m.forwarded.WithLabelValues("rejected").Inc()
			return attempt, err
		}
		s.m.forwarded.WithLabelValues("failed").Inc()
		if attempt >= s.cfg.Attempts {
			return attempt, err
		}
		wait := retrydelay.FullJitter(retrydelay.Exponential(s.cfg.Backoff, s.cfg.MaxBackoff, attempt))
		if retryAfter > 0 {
			wait = min(max(wait, retryAfter), s.cfg.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, ctx.Err()
		case <-t.C:
		}
	}
}

// forwardSpan starts the span of an event's forwarding: a new trace (the receipt's request has
// long been answered), linked to the receipt's span when the entry carries it, with the
// receipt's request id for the calls made in it.
func forwardSpan(ctx context.Context, meta entryMeta) (context.Context, trace.Span) {
	if id := meta.Trace.RequestID(); id != "" {
		ctx = telemetry.WithRequestID(ctx, id)
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer)}
	if receipt := telemetry.LinkTo(meta.Trace); receipt.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: receipt}))
	}
	return telemetry.Tracer().Start(ctx, "webhooks forward", opts...)
}

// post sends one event, signed as the sync batches are; it returns the wait the CRM asked for.
func (f *forwarder) post(ctx context.Context, body []byte, id, typ string) (time.Duration, error) {
	s := f.s
	wait, err := crm.PostSigned(ctx, s.cfg.Client, crm.SignedPost{
		URL: s.cfg.EventsURL, Secret: s.cfg.SigningSecret, Body: body, Now: s.cfg.Clock(),
		Headers: map[string]string{"User-Agent": "inboxhub-gateway-events", crm.HeaderDelivery: id, HeaderEventType: typ},
	})
	if errors.Is(err, crm.ErrRejected) {
		return 0, fmt.Errorf("%w: %v", errRejected, err)
	}
	return wait, err
}

// outboxDepthDesc describes the events waiting in the outboxes, fleet-wide.
var outboxDepthDesc = prometheus.NewDesc("webhook_outbox_events",
	"Events waiting in the session outboxes to be forwarded to the CRM, fleet-wide (read from Redis at each scrape; every replica reports the same value, absent when Redis does not answer).",
	nil, nil)

// outboxDepth is the collector of webhook_outbox_events: one SMEMBERS and one pipelined LLEN per
// session with events waiting, at scrape time only.
type outboxDepth struct{ s *Service }

func (o outboxDepth) Describe(ch chan<- *prometheus.Desc) { ch <- outboxDepthDesc }

func (o outboxDepth) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rdb := o.s.cfg.Redis
	sids, err := rdb.SMembers(ctx, o.s.k.pending()).Result()
	if err != nil {
		return
	}
	lens := make([]*redis.IntCmd, len(sids))
	if len(sids) > 0 {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, sid := range sids {
				lens[i] = p.LLen(ctx, o.s.k.outbox(sid))
			}
			return nil
		}); err != nil {
			return
		}
	}
	var n int64
	for _, l := range lens {
		n += l.Val()
	}
	ch <- prometheus.MustNewConstMetric(outboxDepthDesc, prometheus.GaugeValue, float64(n))
}
