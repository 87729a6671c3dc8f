package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

func TestReceiveRefusesUnauthenticatedWithZeroProcessing(t *testing.T) {
	ts := newTestService(t, nil, true, nil)
	body := sessionBody("session.connected", "abc_123")
	now := time.Now()
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	cases := map[string]Delivery{
		"tampered body": {Timestamp: ms(now), Signature: signBody(testSecret, []byte(body)),
			Body: strings.NewReader(strings.Replace(body, "34657032985", "34657032986", 1))},
		"wrong secret":      {Timestamp: ms(now), Signature: signBody("another-secret", []byte(body)), Body: strings.NewReader(body)},
		"missing signature": {Timestamp: ms(now), Body: strings.NewReader(body)},
		"missing timestamp": {Signature: signBody(testSecret, []byte(body)), Body: strings.NewReader(body)},
		"stale timestamp": {Timestamp: ms(now.Add(-5*time.Minute - time.Second)), Signature: signBody(testSecret, []byte(body)),
			Body: strings.NewReader(body)},
		"future timestamp": {Timestamp: ms(now.Add(time.Minute + 5*time.Second)), Signature: signBody(testSecret, []byte(body)),
			Body: strings.NewReader(body)},
		"timestamp not a number": {Timestamp: "yesterday", Signature: signBody(testSecret, []byte(body)), Body: strings.NewReader(body)},
	}
	for name, d := range cases {
		_, err := ts.Receive(context.Background(), d)
		var ae *AuthError
		if !errors.Is(err, ErrUnauthenticated) || !errors.As(err, &ae) {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", name, err)
		}
	}
	// Nothing was done: no key of this package, no task, no invalidation, no sync.
	time.Sleep(100 * time.Millisecond) // room for work a refused delivery wrongly started to show
	keys, err := ts.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, DefaultKeyPrefix) || strings.Contains(k, ":t:evt_") || strings.Contains(k, ":pending") {
			t.Errorf("a refused delivery left %q in Redis", k)
		}
	}
	if ts.cache.count("abc_123") != 0 || len(ts.sync.queued()) != 0 {
		t.Error("a refused delivery was processed")
	}
	if got := ts.counter("webhooks_received_total", map[string]string{"result": "unauthenticated"}); got != float64(len(cases)) {
		t.Errorf("unauthenticated deliveries counted %v, want %d", got, len(cases))
	}

	// The same delivery, signed and on time, is accepted.
	rec, err := ts.Receive(context.Background(), signed(body))
	if err != nil || rec.Duplicate || rec.Type != TypeSessionConnected || rec.SessionID != "abc_123" {
		t.Fatalf("%+v %v", rec, err)
	}
}

func TestReceiveWithoutSecretRefusesAll(t *testing.T) {
	ts := newTestService(t, nil, false, func(c *Config) { c.Secret = "" })
	if _, err := ts.Receive(context.Background(), signed(sessionBody("session.connected", "abc_123"))); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("err = %v", err)
	}
}

func TestReceiveLimitsTheBody(t *testing.T) {
	ts := newTestService(t, nil, false, func(c *Config) { c.MaxBodyBytes = 1024 })
	body := `{"event": "session.connected", "data": {"sessionId": "abc_123", "reason": "` + strings.Repeat("x", 1100) + `"}}`
	_, err := ts.Receive(context.Background(), signed(body))
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 1024 {
		t.Fatalf("err = %v", err)
	}
	// Malformed but authentic: 400 material.
	if _, err := ts.Receive(context.Background(), signed(`{"event": `)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	// An unknown event: acknowledged and ignored.
	rec, err := ts.Receive(context.Background(), signed(`{"event": "group.joined", "data": {"sessionId": "abc_123"}}`))
	if err != nil || !rec.Ignored {
		t.Fatalf("%+v %v", rec, err)
	}
	if ts.counter("webhooks_received_total", map[string]string{"event": "unknown", "result": "ignored"}) != 1 {
		t.Error("the ignored event was not counted")
	}
}

func TestSessionEventsInvalidateAndQueueTheSync(t *testing.T) {
	ts := newTestService(t, nil, true, nil)
	ctx := context.Background()
	ts.statuses.set("sess_qr", "qr")
	rec, err := ts.Receive(ctx, signed(sessionBody("session.qr", "sess_qr")))
	if err != nil || !rec.Hint || rec.EventID != "" || rec.Type != TypeSessionQR {
		t.Fatalf("%+v %v", rec, err)
	}
	// A confirmed session event drops the cached reads as soon as the upstream confirmed it.
	wait.Until(t, 3*time.Second, "session.qr confirmed and the cached reads dropped", func() bool {
		return ts.cache.count("sess_qr") == 1
	})
	if n := ts.cache.listDrops("sess_qr"); n != 1 {
		t.Errorf("a status change dropped the session list %d times, want 1", n)
	}
	ts.statuses.set("sess_qr", "connected")
	if _, err := ts.Receive(ctx, signed(sessionBody("session.connected", "sess_qr"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "the automatic sync queued", func() bool {
		return slices.Equal(ts.sync.queued(), []string{"sess_qr/auto"})
	})
	if st, _ := ts.rdb.Get(ctx, ts.k.status("sess_qr")).Result(); st != StatusConnected {
		t.Errorf("last known status %q", st)
	}
	// A message invalidates the session's lists, in its task, and leaves the session list alone.
	before := ts.cache.count("sess_msg")
	if _, err := ts.Receive(ctx, signed(messageBody("sess_msg", "3EB0INV"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "the message's task dropped the lists", func() bool { return ts.cache.count("sess_msg") > before })
	if n := ts.cache.listDrops("sess_msg"); n != 0 {
		t.Errorf("a message dropped the session list %d times, want 0", n)
	}
}

func TestNoSyncOnConnectWhenDisabled(t *testing.T) {
	ts := newTestService(t, nil, true, func(c *Config) { c.SyncOnConnect = false })
	ts.statuses.set("abc_123", "connected")
	if _, err := ts.Receive(context.Background(), signed(sessionBody("session.connected", "abc_123"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Receive(context.Background(), signed(messageBody("abc_123", "3EB0LAST"))); err != nil {
		t.Fatal(err)
	}
	// The later message's task ran, so the connected event's task (queued before it) ran too.
	wait.Until(t, 3*time.Second, "tasks processed", func() bool { return ts.cache.count("abc_123") >= 2 })
	time.Sleep(100 * time.Millisecond) // room for a wrongly queued sync to show
	if q := ts.sync.queued(); len(q) != 0 {
		t.Fatalf("sync queued while disabled: %v", q)
	}
}

func TestConcurrentDuplicatesForwardOneEvent(t *testing.T) {
	sink := newCRMSink(t)
	ts := newTestService(t, nil, true, sink.forwardTo)
	body := messageBody("abc_123", "3EB0DUP")
	var wg sync.WaitGroup
	results := make([]Receipt, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Go(func() {
			d := signed(body)
			// Every copy is its own delivery (another timestamp), as the upstream's repeats are.
			d.Timestamp = strconv.FormatInt(time.Now().Add(-time.Duration(i)*time.Millisecond).UnixMilli(), 10)
			results[i], errs[i] = ts.Receive(context.Background(), d)
		})
	}
	wg.Wait()
	accepted := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !r.Duplicate {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d deliveries accepted, want 1", accepted)
	}
	wait.Until(t, 3*time.Second, "the event forwarded", func() bool { return len(sink.received()) >= 1 })
	time.Sleep(300 * time.Millisecond) // room for a wrong second event to show
	if n := len(sink.received()); n != 1 {
		t.Fatalf("the CRM received %d events, want 1", n)
	}
	if ts.counter("webhooks_received_total", map[string]string{"result": "duplicate"}) != 19 {
		t.Error("duplicates not counted")
	}
}

func TestEventsForwardedInOrderPerSession(t *testing.T) {
	sink := newCRMSink(t)
	// Two replicas share the Redis: either may drain a session, never both at once.
	a := newTestService(t, nil, true, sink.forwardTo)
	b := newTestService(t, a.rdb, true, sink.forwardTo)
	// The CRM is down for the first requests: retries hold each session's line.
	sink.failFirst.Store(5)
	const perSession = 40
	sessions := []string{"sess_a", "sess_b", "sess_c"}
	for i := range perSession {
		for j, sid := range sessions {
			replica := []*testService{a, b}[(i+j)%2]
			if _, err := replica.Receive(context.Background(), signed(messageBody(sid, fmt.Sprintf("M%03d", i)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	wait.Until(t, 10*time.Second, "every event delivered", func() bool { return len(sink.received()) >= perSession*len(sessions) })
	time.Sleep(200 * time.Millisecond) // room for a wrong extra event to show
	got := sink.received()
	if len(got) != perSession*len(sessions) || sink.badDeliveries() != 0 {
		t.Fatalf("received %d events (%d badly signed), want %d", len(got), sink.badDeliveries(), perSession*len(sessions))
	}
	next := map[string]int{}
	for _, ev := range got {
		want := fmt.Sprintf("M%03d", next[ev.SessionID])
		if ev.Type != TypeMessageReceived || ev.Data.Message == nil || ev.Data.Message.ID != want {
			t.Fatalf("session %s: got %s %+v, want message %s next", ev.SessionID, ev.Type, ev.Data.Message, want)
		}
		next[ev.SessionID]++
	}
	if a.counter("events_forwarded_total", map[string]string{"result": "failed"})+
		b.counter("events_forwarded_total", map[string]string{"result": "failed"}) < 5 {
		t.Error("the failed attempts were not counted")
	}
	// Outboxes drained, locks released, nothing pending.
	ctx := context.Background()
	for _, sid := range sessions {
		if n, _ := a.rdb.LLen(ctx, a.k.outbox(sid)).Result(); n != 0 {
			t.Errorf("outbox of %s holds %d", sid, n)
		}
	}
	wait.Until(t, 2*time.Second, "pending set emptied", func() bool {
		n, _ := a.rdb.SCard(ctx, a.k.pending()).Result()
		return n == 0
	})
}

func TestDeadLettersAndReplay(t *testing.T) {
	sink := newCRMSink(t)
	ts := newTestService(t, nil, true, func(c *Config) {
		sink.forwardTo(c)
		c.Attempts = 3
	})
	ctx := context.Background()
	sink.down.Store(true)
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0DEAD"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "the event dead-lettered", func() bool {
		p, err := ts.DeadLetters(ctx, 1, 10)
		return err == nil && p.Total == 1
	})
	if got := sink.requests.Load(); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
	page, err := ts.DeadLetters(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	d := page.Items[0]
	if d.SessionID != "abc_123" || d.Type != TypeMessageReceived || d.Attempts != 3 || d.Event.Data.Message == nil ||
		d.Event.Data.Message.ID != "3EB0DEAD" || !strings.Contains(d.LastError, "503") || strings.Contains(d.LastError, "query-secret") {
		t.Fatalf("dead letter %+v", d)
	}
	wait.Until(t, time.Second, "the dead letter counted", func() bool { return ts.counter("events_dead_lettered_total", nil) == 1 })
	// The line moves on: the next event is tried (and dead-lettered too while the CRM is down).
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0NEXT"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "the second event dead-lettered", func() bool {
		p, _ := ts.DeadLetters(ctx, 1, 10)
		return p.Total == 2
	})

	// The CRM is back: a replay delivers the event as it was.
	sink.down.Store(false)
	if _, err := ts.Replay(ctx, "evt_00000000000000000000000000000000"); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Fatalf("replay of an unknown id: %v", err)
	}
	replayed, err := ts.Replay(ctx, d.ID)
	if err != nil || replayed.ID != d.ID {
		t.Fatalf("%+v %v", replayed, err)
	}
	wait.Until(t, 3*time.Second, "the replayed event delivered", func() bool { return len(sink.received()) == 1 })
	if ev := sink.received()[0]; ev.ID != d.ID || ev.Data.Message.ID != "3EB0DEAD" {
		t.Fatalf("delivered %+v", ev)
	}
	if _, err := ts.Replay(ctx, d.ID); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Fatalf("second replay: %v", err)
	}
	n, err := ts.ReplayAll(ctx)
	if err != nil || n != 1 {
		t.Fatalf("replay all: %d %v", n, err)
	}
	wait.Until(t, 3*time.Second, "replay-all delivered", func() bool { return len(sink.received()) == 2 })
	if p, _ := ts.DeadLetters(ctx, 1, 10); p.Total != 0 {
		t.Errorf("%d dead letters left", p.Total)
	}
}

func TestRefusedEventIsDeadLetteredAtOnce(t *testing.T) {
	sink := newCRMSink(t)
	sink.failStatus = 422
	sink.failFirst.Store(1)
	ts := newTestService(t, nil, true, sink.forwardTo)
	ctx := context.Background()
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0BAD"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0GOOD"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "the next event delivered", func() bool { return len(sink.received()) == 1 })
	p, _ := ts.DeadLetters(ctx, 1, 10)
	if p.Total != 1 || p.Items[0].Attempts != 1 || sink.received()[0].Data.Message.ID != "3EB0GOOD" {
		t.Fatalf("dead letters %+v", p)
	}
}

func TestReplayWithoutForwarding(t *testing.T) {
	ts := newTestService(t, nil, false, nil)
	if _, err := ts.Replay(context.Background(), "evt_00000000000000000000000000000000"); !errors.Is(err, ErrForwardingDisabled) {
		t.Fatal(err)
	}
}

func TestShutdownLeavesTheEventForTheNextDrainer(t *testing.T) {
	sink := newCRMSink(t)
	a := newTestService(t, nil, true, func(c *Config) {
		sink.forwardTo(c)
		c.Backoff, c.MaxBackoff = 50*time.Millisecond, 50*time.Millisecond
		c.Attempts = 1000
	})
	sink.down.Store(true)
	if _, err := a.Receive(context.Background(), signed(messageBody("abc_123", "3EB0KEEP"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "delivery attempted", func() bool { return sink.requests.Load() > 0 })
	a.Shutdown()
	sink.down.Store(false)
	b := newTestService(t, a.rdb, true, sink.forwardTo)
	wait.Until(t, 3*time.Second, "the other replica delivered it", func() bool { return len(sink.received()) == 1 })
	if p, _ := b.DeadLetters(context.Background(), 1, 10); p.Total != 0 {
		t.Error("dead-lettered on shutdown")
	}
}

func TestPollerEmitsChangesNoWebhookReported(t *testing.T) {
	sink := newCRMSink(t)
	sessions := &fakeSessions{}
	sessions.set("poll_1", "connected")
	sessions.set("poll_2", "Qr_Code")
	ts := newTestService(t, nil, true, func(c *Config) {
		sink.forwardTo(c)
		c.Sessions = sessions
		c.PollInterval = 100 * time.Millisecond
	})
	ctx := context.Background()
	// First sightings are recorded, not reported.
	wait.Until(t, 3*time.Second, "statuses recorded", func() bool {
		p1, _ := ts.rdb.Get(ctx, ts.k.status("poll_1")).Result()
		p2, _ := ts.rdb.Get(ctx, ts.k.status("poll_2")).Result()
		return p1 == StatusConnected && p2 == StatusQRPending
	})
	if !ts.IsLeader() || ts.counter("poller_leader", nil) != 1 {
		t.Fatal("the only replica is not the leader")
	}
	calls := sessions.calls.Load()
	wait.Until(t, 2*time.Second, "another poll", func() bool { return sessions.calls.Load() > calls+1 })
	if len(sink.received()) != 0 {
		t.Fatalf("events for first sightings: %+v", sink.received())
	}

	sessions.set("poll_1", "disconnected")
	wait.Until(t, 2*time.Second, "session.disconnected emitted", func() bool { return len(sink.received()) == 1 })
	ev := sink.received()[0]
	if ev.Type != TypeSessionDisconnected || ev.SessionID != "poll_1" || ev.Source != SourcePoller ||
		ev.Data.Session == nil || ev.Data.Session.PreviousStatus != StatusConnected || ev.Data.Session.PhoneNumber != "34657032985" {
		t.Fatalf("event %+v", ev)
	}
	if ts.cache.count("poll_1") == 0 {
		t.Error("the poller's event did not invalidate the cache")
	}

	// One change reported by both a webhook (confirmed with the upstream) and the poller is
	// forwarded once, by whichever saw it first.
	sessions.set("poll_2", "connected")
	ts.statuses.set("poll_2", "connected")
	if _, err := ts.Receive(ctx, signed(sessionBody("session.connected", "poll_2"))); err != nil {
		t.Fatal(err)
	}
	calls = sessions.calls.Load()
	wait.Until(t, 2*time.Second, "two more polls", func() bool { return sessions.calls.Load() > calls+2 })
	wait.Until(t, 2*time.Second, "the change delivered", func() bool { return len(sink.received()) == 2 })
	time.Sleep(100 * time.Millisecond) // room for a wrong second copy of the change to show
	got := sink.received()
	if len(got) != 2 || got[1].Type != TypeSessionConnected || got[1].SessionID != "poll_2" ||
		got[1].Data.Session.PreviousStatus != StatusQRPending {
		t.Fatalf("events %+v", got)
	}
	// The connected change from the poller queues the sync too (a change to connected).
	sessions.set("poll_1", "open")
	wait.Until(t, 3*time.Second, "sync queued by the poller's event", func() bool {
		return slices.Contains(ts.sync.queued(), "poll_1/auto")
	})
}

func TestOnlyOnePollerLeadsAndAStandbyTakesOver(t *testing.T) {
	sessions := &fakeSessions{}
	sessions.set("poll_1", "connected")
	mod := func(c *Config) {
		c.Sessions = sessions
		c.PollInterval = 100 * time.Millisecond
	}
	a := newTestService(t, nil, true, mod)
	b := newTestService(t, a.rdb, true, mod)
	c := newTestService(t, a.rdb, true, mod)
	replicas := []*testService{a, b, c}
	leaders := func() []*testService {
		var out []*testService
		for _, r := range replicas {
			if r.IsLeader() {
				out = append(out, r)
			}
		}
		return out
	}
	wait.Until(t, 3*time.Second, "a leader", func() bool { return len(leaders()) == 1 })
	// For a while, never two.
	for range 20 {
		if n := len(leaders()); n != 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(25 * time.Millisecond) // lets time pass: leadership is sampled over 500 ms
	}
	old := leaders()[0]
	old.Shutdown()
	if old.IsLeader() || old.counter("poller_leader", nil) != 0 {
		t.Fatal("the stopped replica still leads")
	}
	start := time.Now()
	wait.Until(t, 3*time.Second, "a standby took over", func() bool { return len(leaders()) == 1 })
	t.Logf("takeover after shutdown: %s", time.Since(start).Round(time.Millisecond))
	calls := sessions.calls.Load()
	wait.Until(t, 2*time.Second, "the new leader polls", func() bool { return sessions.calls.Load() > calls })
}

// FuzzReceive: any authentic delivery (the fuzzed body signed with the secret) is accepted, found
// a duplicate, ignored, or refused as invalid or too large; never another error or a panic.
func FuzzReceive(f *testing.F) {
	rdb := redistest.New(f)
	s, err := New(Config{Redis: rdb, Secret: testSecret, MaxBodyBytes: 4096})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Shutdown)
	f.Add("", "", messageBody("abc_123", "3EB0F"))
	f.Add("", "", sessionBody("session.qr", "abc_123"))
	f.Add("session_status", "legacy_1", `{"data": {"status": "Qr_Code"}}`)
	f.Add("message", "", `{"event": "message", "sessionId": "s_1", "data": {"id": {"_serialized": "true_1@c.us_X"}, "fromMe": "1"}}`)
	f.Add("", "", `{"event": 5, "sessionId": {"a": 1}}`)
	f.Fuzz(func(t *testing.T, hdrEvent, hdrSession, body string) {
		d := signed(body)
		d.Event, d.Session = hdrEvent, hdrSession
		rec, err := s.Receive(context.Background(), d)
		var tl *TooLargeError
		switch {
		case err == nil:
			if !rec.Ignored && (!ValidEventID(rec.EventID) || !ValidSessionID(rec.SessionID) || !slices.Contains(Types, rec.Type)) {
				t.Fatalf("receipt %+v", rec)
			}
		case errors.Is(err, ErrInvalid), errors.As(err, &tl):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// replayed is a captured delivery re-sent now (a fresh X-Webhook-Timestamp), with the session
// header set to hdrSession ("" for none): all an attacker can change without the secret.
func replayed(body, hdrSession string, age time.Duration) Delivery {
	d := signed(body)
	d.Timestamp = strconv.FormatInt(time.Now().Add(-age).UnixMilli(), 10)
	d.Session = hdrSession
	return d
}

// TestReplayedDeliveriesChangeNothing: captured deliveries re-sent with a fresh timestamp or with
// another X-Webhook-Session change nothing: no second forward, no second automatic sync, no second
// cache drop; a header that disagrees with the signed body is refused. A session that really
// connects again (the same signed body, confirmed by the upstream) is still reported.
func TestReplayedDeliveriesChangeNothing(t *testing.T) {
	sink := newCRMSink(t)
	ts := newTestService(t, nil, true, func(c *Config) {
		sink.forwardTo(c)
		c.ConfirmRate = quota.Rate{N: 1000, Per: time.Second}
	})
	ctx := context.Background()
	settled := func(what string, events int) {
		t.Helper()
		wait.Until(t, 3*time.Second, what, func() bool {
			n, _ := ts.rdb.SCard(ctx, ts.k.hinted()).Result()
			return n == 0 && len(sink.received()) >= events
		})
		time.Sleep(150 * time.Millisecond) // room for a wrong extra event to show
		if got := len(sink.received()); got != events {
			t.Fatalf("%s: the CRM received %d events, want %d: %+v", what, got, events, sink.received())
		}
	}

	// The session shows a QR, then connects: two confirmed changes, one automatic sync.
	ts.statuses.set("abc_123", "qr")
	if _, err := ts.Receive(ctx, signed(sessionBody("session.qr", "abc_123"))); err != nil {
		t.Fatal(err)
	}
	settled("session.qr confirmed", 1)
	ts.statuses.set("abc_123", "connected")
	connected := sessionBody("session.connected", "abc_123")
	if _, err := ts.Receive(ctx, signed(connected)); err != nil {
		t.Fatal(err)
	}
	settled("session.connected confirmed", 2)
	wait.Until(t, 3*time.Second, "the automatic sync", func() bool { return len(ts.sync.queued()) == 1 })
	drops := ts.cache.count("abc_123")

	// The captured session.connected, re-sent with fresh timestamps, with and without an agreeing
	// header: hints that the upstream does not confirm.
	for i := range 5 {
		hdr := ""
		if i%2 == 1 {
			hdr = "abc_123"
		}
		rec, err := ts.Receive(ctx, replayed(connected, hdr, time.Duration(i)*time.Second))
		if err != nil || !rec.Hint || rec.SessionID != "abc_123" {
			t.Fatalf("replay %d: %+v %v", i, rec, err)
		}
	}
	settled("the replays confirmed as no change", 2)
	if q := ts.sync.queued(); len(q) != 1 {
		t.Errorf("automatic syncs %v, want one", q)
	}
	if n := ts.cache.count("abc_123"); n != drops {
		t.Errorf("the replays dropped the session's cache %d more times", n-drops)
	}
	if ts.counter("webhook_session_checks_total", map[string]string{"result": checkUnchanged}) == 0 {
		t.Error("the replays were not checked with the upstream")
	}

	// Re-targeted: the same signed body with another session in the header is refused, and
	// nothing is kept for either session.
	for _, other := range []string{"sales_team", "zz_other_9"} {
		_, err := ts.Receive(ctx, replayed(connected, other, 0))
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "X-Webhook-Session" {
			t.Fatalf("re-targeted to %s: %v", other, err)
		}
	}
	if n, _ := ts.rdb.SCard(ctx, ts.k.hinted()).Result(); n != 0 {
		t.Errorf("a re-targeted delivery left %d hints", n)
	}

	// A message and a contact event re-sent with fresh timestamps are the same events.
	msg := messageBody("abc_123", "3EB0REPLAY")
	contact := `{"event": "contact.updated", "data": {"sessionId": "abc_123", "contact": {"id": "34600111222@c.us", "name": "Ana"}}}`
	for _, body := range []string{msg, contact} {
		first, err := ts.Receive(ctx, signed(body))
		if err != nil || first.Duplicate {
			t.Fatalf("%+v %v", first, err)
		}
		for i := 1; i <= 3; i++ {
			rec, err := ts.Receive(ctx, replayed(body, "abc_123", time.Duration(i)*time.Second))
			if err != nil || !rec.Duplicate || rec.EventID != first.EventID {
				t.Fatalf("replay %d of %s: %+v %v", i, first.Type, rec, err)
			}
		}
	}
	settled("the message and the contact forwarded once each", 4)

	// A genuine repeat: the session drops and connects again. The same signed body is then
	// confirmed by the upstream, forwarded, and queues a second sync.
	ts.statuses.set("abc_123", "disconnected")
	if _, err := ts.Receive(ctx, signed(sessionBody("session.disconnected", "abc_123"))); err != nil {
		t.Fatal(err)
	}
	settled("the drop confirmed", 5)
	ts.statuses.set("abc_123", "connected")
	if _, err := ts.Receive(ctx, replayed(connected, "", 0)); err != nil {
		t.Fatal(err)
	}
	settled("the reconnection confirmed", 6)
	wait.Until(t, 3*time.Second, "the second automatic sync", func() bool { return len(ts.sync.queued()) == 2 })
	got := sink.received()
	for i, want := range []string{TypeSessionQR, TypeSessionConnected, TypeMessageReceived, TypeContactUpdated,
		TypeSessionDisconnected, TypeSessionConnected} {
		if got[i].Type != want {
			t.Errorf("event %d: %s, want %s", i, got[i].Type, want)
		}
	}
	if ev := got[5]; ev.Data.Session == nil || ev.Data.Session.PreviousStatus != StatusDisconnected || ev.Source != SourceWebhook {
		t.Errorf("the reconnection event %+v", ev.Data.Session)
	}
}

// TestSessionEventFloodCostsBoundedReads: a hundred replays of one session event cost at most the
// burst of the confirm rate in upstream reads, and change nothing.
func TestSessionEventFloodCostsBoundedReads(t *testing.T) {
	sink := newCRMSink(t)
	ts := newTestService(t, nil, true, func(c *Config) {
		sink.forwardTo(c)
		c.ConfirmRate = quota.Rate{N: 6, Per: time.Minute, Burst: 3}
	})
	ctx := context.Background()
	ts.statuses.set("abc_123", "connected")
	if err := ts.rdb.Set(ctx, ts.k.status("abc_123"), StatusConnected, 0).Err(); err != nil {
		t.Fatal(err)
	}
	body := sessionBody("session.connected", "abc_123")
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if _, err := ts.Receive(ctx, replayed(body, "", time.Duration(i)*time.Millisecond)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	wait.Until(t, 3*time.Second, "a confirming read", func() bool { return ts.statuses.calls.Load() >= 1 })
	time.Sleep(300 * time.Millisecond) // room for reads beyond the bound to show
	if n := ts.statuses.calls.Load(); n > 3 {
		t.Errorf("%d upstream reads for 100 replays, want at most the burst of 3", n)
	}
	if len(sink.received()) != 0 || len(ts.sync.queued()) != 0 || ts.cache.count("abc_123") != 0 {
		t.Errorf("the flood changed something: %d events, syncs %v, %d cache drops",
			len(sink.received()), ts.sync.queued(), ts.cache.count("abc_123"))
	}
}

// TestHeaderOnlySession: a session event whose body names no session takes the header's only for
// a session the gateway knows; an unknown one is refused without an upstream read.
func TestHeaderOnlySession(t *testing.T) {
	ts := newTestService(t, nil, true, nil)
	ctx := context.Background()
	body := `{"event": "session.disconnected", "data": {"reason": "logout"}}`
	_, err := ts.Receive(ctx, replayed(body, "never_seen", 0))
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "X-Webhook-Session" {
		t.Fatalf("unknown session: %v", err)
	}
	if ts.statuses.calls.Load() != 0 {
		t.Error("an unknown header session was read upstream")
	}
	ts.statuses.set("known_1", "disconnected")
	if err := ts.rdb.Set(ctx, ts.k.status("known_1"), StatusConnected, 0).Err(); err != nil {
		t.Fatal(err)
	}
	rec, err := ts.Receive(ctx, replayed(body, "known_1", 0))
	if err != nil || !rec.Hint || rec.SessionID != "known_1" {
		t.Fatalf("%+v %v", rec, err)
	}
	wait.Until(t, 3*time.Second, "the drop confirmed", func() bool {
		st, _ := ts.rdb.Get(ctx, ts.k.status("known_1")).Result()
		return st == StatusDisconnected
	})
}
