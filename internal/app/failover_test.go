package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestSyncSurvivesASentinelFailover: a replica on a Sentinel-managed Redis runs "sync now"; in
// the middle of the job the master is killed (SIGKILL) and the sentinels promote the replica. The
// job goes on through the failover within its attempt and ends succeeded with exactly the items the
// upstream holds, each once. The time from the kill to the job's end is logged.
func TestSyncSurvivesASentinelFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinel(t)
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{Contacts: 3000, Chats: 40, MessagesPerChat: 20})
	s.SetFaults(sim.Faults{Latency: 40 * time.Millisecond}) // pages take time: the kill lands mid-job
	g := startGateway(t, simURL, creds, set.URL(0), map[string]string{
		"GATEWAY_SYNC_ON_CONNECT": "false",
		"UPSTREAM_RATE_READ":      "100000/1m",
	})

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
	ctx := context.Background()
	job := func() (syncjob.Job, error) { return g.app.Sync.Job(ctx, started.Data.ID) }
	wait.Until(t, 60*time.Second, "the job has read some pages", func() bool {
		j, err := job()
		return err == nil && j.Progress["contacts"] != nil && j.Progress["contacts"].Pages >= 5
	})

	old, err := set.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var j syncjob.Job
	wait.Until(t, 3*time.Minute, "the job ends after the failover", func() bool {
		j, err = job()
		return err == nil && syncjob.Final(j.State)
	})
	now, _ := set.CurrentMaster(ctx)
	t.Logf("master %s killed; new master %s; the job ended %v after the kill", old, now, time.Since(killed).Round(100*time.Millisecond))
	if j.State != syncjob.StateSucceeded {
		t.Fatalf("job after the failover: %s (%s)", j.State, j.Error)
	}
	for res, want := range map[string]int{"contacts": 3000, "chats": 40, "messages": 800} {
		if got := j.Progress[res].Delivered; got != want {
			t.Errorf("%s: %d delivered, want %d", res, got, want)
		}
		seen := map[string]bool{}
		cursor := ""
		for {
			page, err := g.app.Sync.Items(ctx, j.ID, res, cursor, syncjob.MaxItemsLimit)
			if err != nil {
				t.Fatalf("%s items: %v", res, err)
			}
			for _, raw := range page.Items {
				var it struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(raw, &it); err != nil || it.ID == "" {
					t.Fatalf("%s item without an id: %v", res, err)
				}
				if seen[it.ID] {
					t.Errorf("%s item %s kept twice", res, it.ID)
				}
				seen[it.ID] = true
			}
			if !page.HasMore {
				break
			}
			cursor = page.NextCursor
		}
		if len(seen) != want {
			t.Errorf("%s: %d distinct items kept, want %d", res, len(seen), want)
		}
	}
}
