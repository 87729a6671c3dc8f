package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestMessageTrafficKeepsTheSessionListCached: incoming messages (signed webhooks from the
// simulator) and sends drop the session's cached chats, but not the fleet-wide session list, which
// neither changes. Ten rounds of a message, a send and list reads cost no upstream list call after
// the warm-up (one per 5 s if the list's freshness ran out on a slow machine), where dropping the list on every
// event made each read after an event an upstream call and spent the read quota under webhook load.
func TestMessageTrafficKeepsTheSessionListCached(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	relay := newHookRelay(t)
	s, simURL := startSim(t, creds, sim.Options{WebhookURL: relay.url, WebhookSecret: hookSecret})
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false"})
	relay.to(g)

	const (
		chats    = "/v1/sessions/demo_session/chats?limit=5"
		chatsAPI = "GET /api/messages/{sessionId}/chats"
		listAPI  = "GET /api/sessions"
		rounds   = 10
	)
	mustGet := func(path string) {
		t.Helper()
		if a := g.get(t, path); a.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, a.status, a.body)
		}
	}
	mustGet("/v1/sessions")
	mustGet(chats)
	warm := s.Counters().Requests[listAPI] // the first reads, and the poller's first look
	start := time.Now()
	for i := range rounds {
		// A message arrives: its event drops the session's cached chats (seen as the next chats read
		// reaching the upstream again), and the session list is read after it.
		before := s.Counters().Requests[chatsAPI]
		if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", 1); err != nil {
			t.Fatal(err)
		}
		wait.Until(t, 5*time.Second, "the message event drops the cached chats", func() bool {
			mustGet(chats)
			return s.Counters().Requests[chatsAPI] > before
		})
		mustGet("/v1/sessions")

		// A send drops them too, at once.
		before = s.Counters().Requests[chatsAPI]
		if a := g.post(t, "/v1/sessions/demo_session/messages", sendBody("34600111222", "round"),
			map[string]string{"Content-Type": "application/json"}); a.status != http.StatusCreated {
			t.Fatalf("round %d send: %d %s", i, a.status, a.body)
		}
		mustGet(chats)
		if n := s.Counters().Requests[chatsAPI]; n == before {
			t.Fatalf("round %d: the chats read after a send was served from the cache", i)
		}
		mustGet("/v1/sessions")
	}
	elapsed := time.Since(start)
	// The list is fresh for 5 s: no upstream call after the warm-up, but one per freshness period
	// the run outlasted (a background revalidation).
	allowed := int64(elapsed / (5 * time.Second))
	if n := s.Counters().Requests[listAPI] - warm; n > allowed {
		t.Errorf("%d more upstream session-list calls for %d rounds of messages and sends in %s, want at most %d",
			n, rounds, elapsed.Round(time.Millisecond), allowed)
	}
}
