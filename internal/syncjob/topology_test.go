package syncjob_test

import (
	"context"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestSyncOnEveryTopology runs the engine's every script on each topology's strict clients (a
// script touching a key it did not declare fails) with two replicas: a queued job returned to a
// second request and canceled, a job with a sink run to its end and read by the other replica,
// and an incremental job after it that finds nothing new.
func TestSyncOnEveryTopology(t *testing.T) {
	t.Parallel()
	const contacts, chats, perChat = 60, 6, 5
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			_, url, key := startSim(t, sim.Options{Contacts: contacts, Chats: chats, MessagesPerChat: perChat})
			sk := newSink(t)
			conf := func(queue string) func(*syncjob.Config) {
				return func(c *syncjob.Config) {
					c.KeyPrefix, c.Queue = top.Prefix+"sync:", top.Prefix+queue
					c.SinkURL, c.SigningSecret, c.SinkBatch = sk.srv.URL, sk.secret, 7
				}
			}
			other := top.Another(t)
			a := newEngine(t, top.Client, newUpstream(t, url, key, top.Client), true, conf("sync"))
			b := newEngine(t, other, newUpstream(t, url, key, other), true, conf("sync"))
			idle := newEngine(t, top.Client, newUpstream(t, url, key, top.Client), false, conf("idle"))

			queued, created, err := idle.Sync(ctx, session, syncjob.Request{})
			if err != nil || !created {
				t.Fatalf("queued job: created %v, %v", created, err)
			}
			if again, created, err := b.Sync(ctx, session, syncjob.Request{}); err != nil || created || again.ID != queued.ID {
				t.Fatalf("second request while a job is queued: created %v, same job %v, %v", created, again.ID == queued.ID, err)
			}
			if j, err := b.Cancel(ctx, queued.ID); err != nil || j.State != syncjob.StateCanceled {
				t.Fatalf("cancel of the queued job: %s, %v", j.State, err)
			}

			first, created, err := a.Sync(ctx, session, syncjob.Request{})
			if err != nil || !created {
				t.Fatalf("first sync: created %v, %v", created, err)
			}
			j := waitJob(t, b, first.ID, 60*time.Second)
			if j.State != syncjob.StateSucceeded {
				t.Fatalf("first sync: %s", dump(j))
			}
			for res, n := range map[string]int{"contacts": contacts, "chats": chats, "messages": chats * perChat} {
				if got := sk.distinct(res); got != n || delivered(j)[res] != n {
					t.Errorf("%s: the sink got %d distinct, the job counts %d delivered; want %d", res, got, delivered(j)[res], n)
				}
			}
			page, err := b.Items(ctx, j.ID, "contacts", "", 1000)
			if err != nil || page.Total != contacts {
				t.Fatalf("items read by the other replica: total %d, %v", page.Total, err)
			}
			if list, err := b.SessionJobs(ctx, session, 10); err != nil || len(list) != 2 {
				t.Fatalf("session jobs: %d, %v; want the canceled and the finished one", len(list), err)
			}

			second, created, err := b.Sync(ctx, session, syncjob.Request{})
			if err != nil || !created {
				t.Fatalf("second sync: created %v, %v", created, err)
			}
			j = waitJob(t, a, second.ID, 60*time.Second)
			if j.State != syncjob.StateSucceeded {
				t.Fatalf("second sync: %s", dump(j))
			}
			for res, n := range delivered(j) {
				if n != 0 {
					t.Errorf("incremental sync delivered %d %s, want 0", n, res)
				}
			}
		})
	}
}
