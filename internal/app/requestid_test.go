package app_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestRequestIDReachesUpstreamWithTracingOff: with tracing off, the caller's X-Request-ID goes
// with every upstream call made for its request (cached reads' misses and the
// passthrough relay) and with the page calls of a sync job the request queued.
func TestRequestIDReachesUpstreamWithTracingOff(t *testing.T) {
	if telemetry.Enabled() {
		t.Fatal("tracing is on; this test is about tracing off")
	}
	creds := newCreds()
	seen, simURL := startRecordingSim(t, creds, sim.Options{Contacts: 30, Chats: 3, MessagesPerChat: 2})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)

	for _, tc := range []struct{ path, upstream string }{
		{"/v1/sessions", "/api/sessions"},
		{"/v1/sessions/demo_session/contacts?limit=5", "/api/contacts/demo_session"},
		{"/v1/sessions/demo_session/chats?limit=2", "/api/messages/demo_session/chats"},
		{"/api/messages/demo_session?limit=2", "/api/messages/demo_session"},
	} {
		id := "crm-" + time.Now().Format("150405.000000000")
		a := g.request(t, http.MethodGet, tc.path, nil, map[string]string{"X-Request-ID": id})
		if a.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", tc.path, a.status, a.body)
		}
		if !sawRequestID(seen, tc.upstream, id) {
			t.Errorf("GET %s: the simulator got no %s with X-Request-ID %q", tc.path, tc.upstream, id)
		}
	}

	const jobRequest = "crm-sync-0c4e"
	a := g.post(t, "/v1/sessions/demo_session/sync", `{}`, map[string]string{"X-Request-ID": jobRequest})
	if a.status != http.StatusAccepted && a.status != http.StatusOK {
		t.Fatalf("sync = %d %s", a.status, a.body)
	}
	var ans struct{ Data syncjob.Job }
	if err := json.Unmarshal([]byte(a.body), &ans); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 60*time.Second, "the job ends", func() bool {
		j, err := g.app.Sync.Job(t.Context(), ans.Data.ID)
		return err == nil && syncjob.Final(j.State)
	})
	if !sawRequestID(seen, "/api/contacts/demo_session", jobRequest) {
		t.Errorf("the sync job's page calls did not carry the X-Request-ID of the request that queued it")
	}
}

// sawRequestID is true when the simulator got a request for path carrying X-Request-ID id.
func sawRequestID(seen *seenHeaders, path, id string) bool {
	for _, h := range seen.all() {
		if h.Get("Path") == path && h.Get("X-Request-Id") == id {
			return true
		}
	}
	return false
}
