package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// startSyncEngine runs a sync engine on a replica's own Redis client and upstream client (with its
// token source and shared quota), as the app wires it.
func startSyncEngine(t *testing.T, g *gateway) *syncjob.Engine {
	t.Helper()
	e, err := syncjob.New(syncjob.Config{Redis: g.app.Store.Client, Upstream: g.app.Upstream,
		PollInterval: 100 * time.Millisecond, OwnerLease: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown) // before the replica closes its Redis client
	return e
}

// TestSyncAcrossGatewayReplicas: two replicas built from configuration, sharing Redis, the token
// and the quota: concurrent "sync now" requests on both create one job, which reads everything
// within the shared quota (no 429) on one upstream login and delivers exact counts.
func TestSyncAcrossGatewayReplicas(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{Contacts: 2500, Chats: 60, MessagesPerChat: 5})
	redisURL := redistest.URL(t)
	extra := map[string]string{"UPSTREAM_RATE_READ": "100000/1m"}
	g1 := startGateway(t, simURL, creds, redisURL, extra)
	g2 := startGateway(t, simURL, creds, redisURL, extra)
	engines := []*syncjob.Engine{startSyncEngine(t, g1), startSyncEngine(t, g2)}

	ids := make([]string, 10)
	created := make([]bool, 10)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			j, c, err := engines[i%2].Sync(context.Background(), "demo_session", syncjob.Request{})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = j.ID, c
		})
	}
	wg.Wait()
	n := 0
	for i := range ids {
		if created[i] {
			n++
		}
		if ids[i] != ids[0] {
			t.Fatalf("two jobs: %s and %s", ids[0], ids[i])
		}
	}
	if n != 1 {
		t.Fatalf("%d requests created a job, want 1", n)
	}
	var j syncjob.Job
	wait.Until(t, 60*time.Second, "the job ends", func() bool {
		var err error
		j, err = engines[1].Job(context.Background(), ids[0])
		return err == nil && syncjob.Final(j.State)
	})
	if j.State != syncjob.StateSucceeded {
		t.Fatalf("job: %+v", j)
	}
	for res, want := range map[string]int{"contacts": 2500, "chats": 60, "messages": 300} {
		if got := j.Progress[res].Delivered; got != want {
			t.Errorf("%s: %d delivered, want %d", res, got, want)
		}
	}
	c := s.Counters()
	if c.RateLimited != 0 || c.Logins != 1 {
		t.Errorf("upstream saw %d 429s and %d logins, want 0 and 1", c.RateLimited, c.Logins)
	}
	if got := c.Requests["GET /api/contacts/{sessionId}"]; got != 25 {
		t.Errorf("%d contact pages, want 25", got)
	}
}

// TestSyncMetrics: a sync started through the API on a replica's own engine ends in its metrics:
// one succeeded job and the delivered items per resource.
func TestSyncMetrics(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	_, simURL := startSim(t, creds, sim.Options{Contacts: 30, Chats: 5, MessagesPerChat: 2})
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{"GATEWAY_SYNC_ON_CONNECT": "false"})
	a := g.post(t, "/v1/sessions/demo_session/sync", `{}`, nil)
	if a.status != http.StatusAccepted {
		t.Fatalf("sync = %d %s", a.status, a.body)
	}
	var started struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(a.body), &started); err != nil || started.Data.ID == "" {
		t.Fatalf("sync answer: %s", a.body)
	}
	wait.Until(t, 30*time.Second, "the job ends", func() bool {
		j, err := g.app.Sync.Job(context.Background(), started.Data.ID)
		return err == nil && syncjob.Final(j.State)
	})
	metrics := g.adminGet(t, "/metrics").body
	for _, want := range []string{
		`sync_jobs_total{state="succeeded",trigger="api"} 1`,
		`sync_items_total{resource="contacts",result="delivered"} 30`,
		`sync_items_total{resource="chats",result="delivered"} 5`,
		`sync_items_total{resource="messages",result="delivered"} 10`,
		`sync_pages_total{resource="contacts"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
