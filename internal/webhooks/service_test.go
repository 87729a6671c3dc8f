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

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
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
	time.Sleep(100 * time.Millisecond)
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
	if _, err := ts.Receive(ctx, signed(sessionBody("session.qr", "sess_qr"))); err != nil {
		t.Fatal(err)
	}
	// Session events drop the cached reads before the answer.
	if ts.cache.count("sess_qr") == 0 {
		t.Fatal("session.qr did not invalidate the session's cached reads at once")
	}
	if _, err := ts.Receive(ctx, signed(sessionBody("session.connected", "sess_qr"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the automatic sync queued", func() bool {
		return slices.Equal(ts.sync.queued(), []string{"sess_qr/auto"})
	})
	if st, _ := ts.rdb.HGet(ctx, ts.k.status(), "sess_qr").Result(); st != StatusConnected {
		t.Errorf("last known status %q", st)
	}
	// A message invalidates the session's lists, in its task.
	before := ts.cache.count("sess_msg")
	if _, err := ts.Receive(ctx, signed(messageBody("sess_msg", "3EB0INV"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the message's task dropped the lists", func() bool { return ts.cache.count("sess_msg") > before })
}

func TestNoSyncOnConnectWhenDisabled(t *testing.T) {
	ts := newTestService(t, nil, true, func(c *Config) { c.SyncOnConnect = false })
	if _, err := ts.Receive(context.Background(), signed(sessionBody("session.connected", "abc_123"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Receive(context.Background(), signed(messageBody("abc_123", "3EB0LAST"))); err != nil {
		t.Fatal(err)
	}
	// The later message's task ran, so the connected event's task (queued before it) ran too.
	eventually(t, 3*time.Second, "tasks processed", func() bool { return ts.cache.count("abc_123") >= 2 })
	time.Sleep(100 * time.Millisecond)
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
	eventually(t, 3*time.Second, "the event forwarded", func() bool { return len(sink.received()) >= 1 })
	time.Sleep(300 * time.Millisecond)
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
	eventually(t, 10*time.Second, "every event delivered", func() bool { return len(sink.received()) >= perSession*len(sessions) })
	time.Sleep(200 * time.Millisecond)
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
	eventually(t, 2*time.Second, "pending set emptied", func() bool {
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
	eventually(t, 5*time.Second, "the event dead-lettered", func() bool {
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
	eventually(t, time.Second, "the dead letter counted", func() bool { return ts.counter("events_dead_lettered_total", nil) == 1 })
	// The line moves on: the next event is tried (and dead-lettered too while the CRM is down).
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0NEXT"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the second event dead-lettered", func() bool {
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
	eventually(t, 3*time.Second, "the replayed event delivered", func() bool { return len(sink.received()) == 1 })
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
	eventually(t, 3*time.Second, "replay-all delivered", func() bool { return len(sink.received()) == 2 })
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
	eventually(t, 3*time.Second, "the next event delivered", func() bool { return len(sink.received()) == 1 })
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
	eventually(t, 3*time.Second, "delivery attempted", func() bool { return sink.requests.Load() > 0 })
	a.Shutdown()
	sink.down.Store(false)
	b := newTestService(t, a.rdb, true, sink.forwardTo)
	eventually(t, 3*time.Second, "the other replica delivered it", func() bool { return len(sink.received()) == 1 })
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
	eventually(t, 3*time.Second, "statuses recorded", func() bool {
		m, _ := ts.rdb.HGetAll(ctx, ts.k.status()).Result()
		return m["poll_1"] == StatusConnected && m["poll_2"] == StatusQRPending
	})
	if !ts.IsLeader() || ts.counter("poller_leader", nil) != 1 {
		t.Fatal("the only replica is not the leader")
	}
	calls := sessions.calls.Load()
	eventually(t, 2*time.Second, "another poll", func() bool { return sessions.calls.Load() > calls+1 })
	if len(sink.received()) != 0 {
		t.Fatalf("events for first sightings: %+v", sink.received())
	}

	sessions.set("poll_1", "disconnected")
	eventually(t, 2*time.Second, "session.disconnected emitted", func() bool { return len(sink.received()) == 1 })
	ev := sink.received()[0]
	if ev.Type != TypeSessionDisconnected || ev.SessionID != "poll_1" || ev.Source != SourcePoller ||
		ev.Data.Session == nil || ev.Data.Session.PreviousStatus != StatusConnected || ev.Data.Session.PhoneNumber != "34657032985" {
		t.Fatalf("event %+v", ev)
	}
	if ts.cache.count("poll_1") == 0 {
		t.Error("the poller's event did not invalidate the cache")
	}

	// A change the webhook reported is not reported again by the poller.
	if _, err := ts.Receive(ctx, signed(sessionBody("session.connected", "poll_2"))); err != nil {
		t.Fatal(err)
	}
	sessions.set("poll_2", "connected")
	calls = sessions.calls.Load()
	eventually(t, 2*time.Second, "two more polls", func() bool { return sessions.calls.Load() > calls+2 })
	eventually(t, 2*time.Second, "the webhook's event delivered", func() bool { return len(sink.received()) == 2 })
	time.Sleep(100 * time.Millisecond)
	got := sink.received()
	if len(got) != 2 || got[1].Source != SourceWebhook || got[1].Type != TypeSessionConnected {
		t.Fatalf("events %+v", got)
	}
	// The connected change from the poller queues the sync too (a change to connected).
	sessions.set("poll_1", "open")
	eventually(t, 3*time.Second, "sync queued by the poller's event", func() bool {
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
	eventually(t, 3*time.Second, "a leader", func() bool { return len(leaders()) == 1 })
	// For a while, never two.
	for range 20 {
		if n := len(leaders()); n != 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(25 * time.Millisecond)
	}
	old := leaders()[0]
	old.Shutdown()
	if old.IsLeader() || old.counter("poller_leader", nil) != 0 {
		t.Fatal("the stopped replica still leads")
	}
	start := time.Now()
	eventually(t, 3*time.Second, "a standby took over", func() bool { return len(leaders()) == 1 })
	t.Logf("takeover after shutdown: %s", time.Since(start).Round(time.Millisecond))
	calls := sessions.calls.Load()
	eventually(t, 2*time.Second, "the new leader polls", func() bool { return sessions.calls.Load() > calls })
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
