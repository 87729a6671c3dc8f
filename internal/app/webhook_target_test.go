package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestGatewayRegistersItselfAsWebhookTarget: an operator calls PUT
// /v1/admin/sessions/{sessionId}/webhook; the simulator, which had no webhook URL at all, then
// sends that session's events to GATEWAY_PUBLIC_URL/webhooks/inbox-hub signed with
// INBOXHUB_WEBHOOK_SECRET, so a scanned QR shows as connected at once. The secret is never
// answered; callers without the admin scope and a gateway without GATEWAY_PUBLIC_URL are refused.
func TestGatewayRegistersItselfAsWebhookTarget(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	relay := newHookRelay(t) // stands for the gateway's public address
	publicURL := strings.TrimSuffix(relay.url, "/webhooks/inbox-hub")
	s, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_PUBLIC_URL": publicURL})
	relay.to(g)
	const path = "/v1/admin/sessions/sales_team/webhook"

	if a := g.request(t, http.MethodPut, path, nil, map[string]string{"X-API-Key": readerKey}); a.status != http.StatusForbidden {
		t.Errorf("without the admin scope: %d %s", a.status, a.body)
	}

	a := g.request(t, http.MethodPut, path, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("PUT %s: %d %s", path, a.status, a.body)
	}
	if strings.Contains(a.body, hookSecret) {
		t.Errorf("the answer carries the webhook secret: %s", a.body)
	}
	var ans struct {
		Data struct {
			SessionID  string   `json:"sessionId"`
			WebhookURL string   `json:"webhookUrl"`
			Events     []string `json:"events"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(a.body), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Data.SessionID != "sales_team" || ans.Data.WebhookURL != relay.url || len(ans.Data.Events) != 10 {
		t.Errorf("answer %s, want sales_team, %s and the 10 events", a.body, relay.url)
	}
	if n := s.Counters().Requests["PUT /api/sessions/{id}/webhook"]; n != 1 {
		t.Errorf("the upstream saw %d webhook PUTs, want 1", n)
	}

	// The cached state is fresh for 5 s and the poller runs every 30 s: only the webhook, signed
	// with the gateway's secret, can make the scan visible within a second.
	if st := g.sessionStatus(t, "sales_team"); st != "qr_pending" {
		t.Fatalf("sales_team starts %q", st)
	}
	if err := s.ScanQR("sales_team"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wait.Until(t, time.Second, "the scanned session shows connected", func() bool {
		return g.sessionStatus(t, "sales_team") == "connected"
	})
	t.Logf("connected visible after %s", time.Since(start).Round(time.Millisecond))
	if c := s.Counters(); c.WebhooksSent == 0 || c.WebhookFailures != 0 {
		t.Errorf("webhooks sent %d, failed %d", c.WebhooksSent, c.WebhookFailures)
	}

	// A replica that does not know its public URL explains why it cannot register itself.
	g2 := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{"INBOXHUB_WEBHOOK_SECRET": hookSecret})
	a = g2.request(t, http.MethodPut, path, nil, nil)
	if a.status != http.StatusConflict || !strings.Contains(a.body, "GATEWAY_PUBLIC_URL") {
		t.Errorf("without GATEWAY_PUBLIC_URL: %d %s", a.status, a.body)
	}
	if n := s.Counters().Requests["PUT /api/sessions/{id}/webhook"]; n != 1 {
		t.Errorf("the upstream saw %d webhook PUTs, want still 1", n)
	}
}
