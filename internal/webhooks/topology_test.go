package webhooks

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestWebhooksOnEveryTopology runs the package's scripts on each topology's strict clients (a
// script touching a key it did not declare fails) with two replicas: the events of several
// sessions, received by either replica, reach the CRM once each and in order per session; a
// session event is confirmed and recorded; an event dead-lettered while the CRM is down is
// replayed. On the cluster the sessions' keys spread over every master.
func TestWebhooksOnEveryTopology(t *testing.T) {
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			sink := newCRMSink(t)
			conf := func(c *Config) {
				sink.forwardTo(c)
				c.KeyPrefix, c.Queue, c.Attempts = top.Prefix+"wh:", top.Prefix+"webhooks", 2
			}
			a := newTestService(t, top.Client, true, conf)
			b := newTestService(t, top.Another(t), true, conf)

			const sessions, perSession = 12, 5
			for i := range perSession {
				for j := range sessions {
					replica := []*testService{a, b}[(i+j)%2]
					if _, err := replica.Receive(ctx, signed(messageBody(fmt.Sprintf("sess_%02d", j), fmt.Sprintf("M%03d", i)))); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A repeated delivery is accepted once.
			if r, err := b.Receive(ctx, signed(messageBody("sess_00", "M000"))); err != nil || !r.Duplicate {
				t.Fatalf("repeated delivery: %+v, %v", r, err)
			}
			wait.Until(t, 10*time.Second, "every event delivered", func() bool { return len(sink.received()) >= sessions*perSession })
			next := map[string]int{}
			for _, ev := range sink.received() {
				if want := fmt.Sprintf("M%03d", next[ev.SessionID]); ev.Data.Message == nil || ev.Data.Message.ID != want {
					t.Fatalf("session %s: got %+v, want message %s next", ev.SessionID, ev.Data.Message, want)
				}
				next[ev.SessionID]++
			}

			a.statuses.set("sess_00", "connected")
			b.statuses.set("sess_00", "connected")
			if _, err := b.Receive(ctx, signed(sessionBody("session.connected", "sess_00"))); err != nil {
				t.Fatal(err)
			}
			wait.Until(t, 5*time.Second, "the session event confirmed", func() bool {
				st, err := a.KnownStatus(ctx, "sess_00")
				n, _ := a.HintsWaiting(ctx)
				return err == nil && st == StatusConnected && n == 0
			})

			sink.down.Store(true)
			if _, err := a.Receive(ctx, signed(messageBody("sess_01", "3EB0DEAD"))); err != nil {
				t.Fatal(err)
			}
			var page DeadLetterPage
			wait.Until(t, 5*time.Second, "the event dead-lettered", func() bool {
				var err error
				page, err = b.DeadLetters(ctx, 1, 10)
				return err == nil && page.Total == 1
			})
			sink.down.Store(false)
			dead := page.Items[0].ID
			if _, err := b.Replay(ctx, dead); err != nil {
				t.Fatalf("replay: %v", err)
			}
			wait.Until(t, 5*time.Second, "the replayed event delivered", func() bool {
				for _, ev := range sink.received() {
					if ev.ID == dead {
						return true
					}
				}
				return false
			})
			if p, err := a.DeadLetters(ctx, 1, 10); err != nil || p.Total != 0 {
				t.Errorf("dead letters after the replay: %d, %v", p.Total, err)
			}

			if top.Name == "cluster" {
				counts := keysPerMaster(t, top.Client.(*redis.ClusterClient), top.Prefix+"wh:*")
				for addr, n := range counts {
					if n == 0 {
						t.Errorf("no webhook key on master %s: %v", addr, counts)
					}
				}
			}
		})
	}
}

// keysPerMaster counts the keys matching pattern on each master of the cluster.
func keysPerMaster(t *testing.T, c *redis.ClusterClient, pattern string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		n := 0
		iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		out[node.Options().Addr] = n
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("scan the masters: %v", err)
	}
	return out
}
