package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestKeysSpreadOverTheClusterMasters: three replicas on a private 3-master Redis Cluster run "sync
// now" for six sessions and forward the webhook events of eight; every job succeeds, every event
// reaches the CRM, and then a SCAN of each master finds the sync keys and the webhook keys on every
// one of them (the per-session hash tags at work). The counts per master are logged (counts only:
// key names carry session ids).
func TestKeysSpreadOverTheClusterMasters(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t)
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{Sessions: 16, Contacts: 30, Chats: 5, MessagesPerChat: 3})
	crm := newCRMEvents(t)
	extra := map[string]string{"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret, "UPSTREAM_RATE_READ": "100000/1m"}
	replicas := make([]*gateway, 3)
	for i := range replicas {
		replicas[i] = startGateway(t, simURL, creds, cluster.URL(), extra)
	}

	// Six connected sessions synced, each through another replica.
	synced := []string{"demo_session", "session_07", "session_09", "session_11", "session_13", "session_15"}
	ids := make([]string, len(synced))
	for i, sid := range synced {
		a := replicas[i%3].post(t, "/v1/sessions/"+sid+"/sync", `{}`, nil)
		var started struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if a.status != http.StatusAccepted || json.Unmarshal([]byte(a.body), &started) != nil || started.Data.ID == "" {
			t.Fatalf("sync of a session: %d %s", a.status, a.body)
		}
		ids[i] = started.Data.ID
	}
	// Events of eight sessions, in turn over the replicas.
	const hooked, perSession = 8, 3
	for i := range perSession {
		for j := range hooked {
			body := fmt.Sprintf(`{"event": "message.received", "data": {"sessionId": "spread_%02d", "message": {"whatsappMessageId": "M%03d", "content": "n", "chatId": "34600111222@s.whatsapp.net"}}}`, j, i)
			if a := replicas[(i+j)%3].post(t, "/webhooks/inbox-hub", body, signedHook(body, time.Now())); a.status != http.StatusAccepted {
				t.Fatalf("webhook: %d %s", a.status, a.body)
			}
		}
	}

	ctx := context.Background()
	for i, id := range ids {
		var j syncjob.Job
		wait.Until(t, 60*time.Second, "the sync job ends", func() bool {
			var err error
			j, err = replicas[(i+1)%3].app.Sync.Job(ctx, id)
			return err == nil && syncjob.Final(j.State)
		})
		if j.State != syncjob.StateSucceeded || j.Progress["contacts"].Delivered != 30 || j.Progress["messages"].Delivered != 15 {
			t.Errorf("job %d: %s, %d contacts, %d messages delivered (want succeeded, 30, 15): %s", i, j.State,
				j.Progress["contacts"].Delivered, j.Progress["messages"].Delivered, j.Error)
		}
	}
	wait.Until(t, 10*time.Second, "every event forwarded", func() bool { return len(crm.received()) >= hooked*perSession })
	if n := len(crm.received()); n != hooked*perSession || crm.badDeliveries() != 0 {
		t.Errorf("the CRM got %d events (%d badly signed), want %d", n, crm.badDeliveries(), hooked*perSession)
	}
	if c := s.Counters(); c.Logins != 1 {
		t.Errorf("%d upstream logins for the three replicas, want 1", c.Logins)
	}

	counts := countPerMaster(t, replicas[0].app.Store.Client.(*redis.ClusterClient))
	addrs := make([]string, 0, len(counts))
	for addr := range counts {
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	if len(addrs) != 3 {
		t.Fatalf("%d masters scanned, want 3", len(addrs))
	}
	for i, addr := range addrs {
		c := counts[addr]
		t.Logf("master %d: %d keys (sync %d, webhooks %d, cache %d, other %d)", i+1, c.total, c.sync, c.webhooks, c.cache, c.other)
		if c.sync == 0 || c.webhooks == 0 {
			t.Errorf("master %d holds %d sync and %d webhook keys; want both on every master", i+1, c.sync, c.webhooks)
		}
	}
}

// keyCounts are the keys of one master by owner.
type keyCounts struct{ total, sync, webhooks, cache, other int }

// countPerMaster scans every master of the cluster and counts its keys by owner.
func countPerMaster(t *testing.T, c *redis.ClusterClient) map[string]keyCounts {
	t.Helper()
	var mu sync.Mutex
	out := map[string]keyCounts{}
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		var k keyCounts
		iter := node.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			k.total++
			switch {
			case strings.HasPrefix(key, "inboxhub-gateway:sync:"):
				k.sync++
			case strings.HasPrefix(key, "inboxhub-gateway:webhooks:"):
				k.webhooks++
			case strings.HasPrefix(key, "gw:cache:"):
				k.cache++
			default:
				k.other++
			}
		}
		mu.Lock()
		out[node.Options().Addr] = k
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("scan the masters: %v", err)
	}
	return out
}
