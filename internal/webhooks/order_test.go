package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// signedAt is a delivery of body signed with the test secret, sent at the time given.
func signedAt(body string, at time.Time) Delivery {
	return Delivery{Timestamp: strconv.FormatInt(at.UnixMilli(), 10),
		Signature: signBody(testSecret, []byte(body)), Body: strings.NewReader(body)}
}

// outboxIDs lists the message ids in a session's outbox, head first.
func outboxIDs(t *testing.T, ts *testService, sid string) []string {
	t.Helper()
	entries, err := ts.rdb.LRange(context.Background(), ts.k.outbox(sid), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		event, _ := splitEntry(e)
		var ev Event
		if err := json.Unmarshal([]byte(event), &ev); err != nil || ev.Data.Message == nil {
			t.Fatalf("outbox entry %q: %v", e, err)
		}
		ids = append(ids, ev.Data.Message.ID)
	}
	return ids
}

// TestLateEventsTakeTheirPlaceInTheOutbox: an event that reaches Redis after newer ones of its
// session (handed over from a spool) is put before them, by the upstream's signed timestamp, but
// never before a head that a drainer took for delivery (whether or not the outbox's lock is held).
func TestLateEventsTakeTheirPlaceInTheOutbox(t *testing.T) {
	sink := newCRMSink(t)
	ts := newTestService(t, nil, false, sink.forwardTo) // not started: nothing drains
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	receive := func(id string, offset time.Duration) {
		t.Helper()
		if _, err := ts.Receive(ctx, signedAt(messageBody("ord_1", id), t0.Add(offset))); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	receive("M2", 2*time.Second)
	receive("M4", 4*time.Second)
	receive("M1", time.Second)    // late: before both
	receive("M3", 3*time.Second)  // late: between
	receive("M5", 5*time.Second)  // in time: the tail
	receive("M4B", 4*time.Second) // the same millisecond as M4: after it (arrival order)
	if got, want := outboxIDs(t, ts, "ord_1"), []string{"M1", "M2", "M3", "M4", "M4B", "M5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}

	// The lock alone is held: by a drainer between two heads, or left by one that a Redis failover
	// cut off. No head is on its way to the CRM, so a late event still goes first.
	if err := ts.rdb.Set(ctx, ts.k.outboxLock("ord_1"), "a-drainer", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	receive("M0", 0)
	if got, want := outboxIDs(t, ts, "ord_1"), []string{"M0", "M1", "M2", "M3", "M4", "M4B", "M5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with the lock held and the head not taken: outbox %v, want %v", got, want)
	}

	// A drainer took the head: it may be on its way to the CRM, so it stays first.
	head, err := takeHeadScript.Run(ctx, ts.rdb, []string{ts.k.outbox("ord_1"), ts.k.outboxTaken("ord_1")}, time.Minute.Milliseconds()).Text()
	if err != nil {
		t.Fatal(err)
	}
	receive("M00", -time.Second)
	if got, want := outboxIDs(t, ts, "ord_1"), []string{"M0", "M00", "M1", "M2", "M3", "M4", "M4B", "M5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with the head taken: outbox %v, want %v", got, want)
	}

	// Popping the delivered head clears the mark: the next late event goes first again.
	if n, err := popScript.Run(ctx, ts.rdb, []string{ts.k.outbox("ord_1"), ts.k.outboxLock("ord_1"), ts.k.outboxTaken("ord_1")},
		"a-drainer", head).Int(); err != nil || n != 1 {
		t.Fatalf("pop = %d, %v", n, err)
	}
	receive("M000", -2*time.Second)
	if got, want := outboxIDs(t, ts, "ord_1"), []string{"M000", "M00", "M1", "M2", "M3", "M4", "M4B", "M5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the pop: outbox %v, want %v", got, want)
	}
}

// TestSpoolsOfTwoReplicasKeepTheSessionOrder: while Redis is down, a session's deliveries land
// alternately on two replicas' spools. When Redis returns, replica B hands its deliveries over
// first and replica A later; the CRM still gets the session's messages in the order the upstream
// sent them, because the drainers hold for SpoolHold after Redis trouble and late events take
// their place in the outbox. (Before, the CRM got B's, then A's.)
func TestSpoolsOfTwoReplicasKeepTheSessionOrder(t *testing.T) {
	rs := redistest.Start(t)
	sink := newCRMSink(t)
	a := outageService(t, rs, filepath.Join(t.TempDir(), "a"), func(c *Config) {
		sink.forwardTo(c)
		c.SpoolRetry, c.SpoolHold = time.Hour, 3*time.Second // hands over only when the test kicks it
	})
	b := outageService(t, rs, filepath.Join(t.TempDir(), "b"), func(c *Config) {
		sink.forwardTo(c)
		c.SpoolHold = 3 * time.Second
	})
	ctx := context.Background()
	rs.Stop()
	t0 := time.Now()
	for i := range 6 {
		replica := a
		if i%2 == 1 {
			replica = b
		}
		rec, err := replica.Receive(ctx, signedAt(messageBody("ord_2", fmt.Sprintf("M%d", i)), t0.Add(time.Duration(i)*time.Millisecond)))
		if err != nil || !rec.Spooled {
			t.Fatalf("delivery %d with Redis down: %+v %v", i, rec, err)
		}
	}
	rs.Restart(t)
	wait.Until(t, 10*time.Second, "replica B handed its deliveries over", func() bool {
		return b.spool.empty()
	})
	wait.Until(t, 10*time.Second, "replica A handed its deliveries over, later", func() bool {
		a.kickSpool() // what its SpoolRetry ticker does
		return a.spool.empty()
	})
	wait.UntilShowing(t, 20*time.Second, "six messages forwarded", func() bool { return len(sink.received()) == 6 },
		func() string {
			outbox, _ := a.rdb.LRange(ctx, a.k.outbox("ord_2"), 0, -1).Result()
			lock, _ := a.rdb.Get(ctx, a.k.outboxLock("ord_2")).Result()
			pending, _ := a.rdb.SMembers(ctx, a.k.pending()).Result()
			return fmt.Sprintf("forwarded %d, spools empty a=%v b=%v, outbox %d entries, lock %q, pending %v, holding a=%v b=%v",
				len(sink.received()), a.spool.empty(), b.spool.empty(), len(outbox), lock, pending, a.holding(), b.holding())
		})
	var got []string
	for _, ev := range sink.received() {
		got = append(got, ev.Data.Message.ID)
	}
	if want := []string{"M0", "M1", "M2", "M3", "M4", "M5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the CRM got %v, want %v", got, want)
	}
}
