package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// metricsUsedFile lists the metrics the chart's alert rules and Grafana dashboard read, written
// and checked against them by the deploy module's TestChartMonitoring.
const metricsUsedFile = "../../deploy/helm/inbox-gateway/metrics-used.txt"

// TestMonitoringMetricsExported: a replica that answered requests (one refused for its key, some
// over the caller limit), ran a sync and forwarded a webhook event exports, on its /metrics,
// every metric the chart's alerts and dashboard read, so that none of them queries a name the
// gateway does not have.
func TestMonitoringMetricsExported(t *testing.T) {
	t.Parallel()
	want := readMetricsUsed(t)
	creds := newCreds()
	_, simURL := startSim(t, creds, sim.Options{Contacts: 30, Chats: 3, MessagesPerChat: 2})
	crm := newCRMEvents(t)
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret,
		"GATEWAY_CALLER_RATE": "3/1m", "UPSTREAM_RATE_READ": "100000/1m"})

	// Requests: answered, and refused for a wrong key.
	if a := g.get(t, "/v1/sessions"); a.status != http.StatusOK {
		t.Fatalf("GET /v1/sessions = %d %s", a.status, a.body)
	}
	if a := g.request(t, http.MethodGet, "/v1/sessions", nil, map[string]string{"X-API-Key": "not-a-key-of-the-test"}); a.status != http.StatusUnauthorized {
		t.Fatalf("a wrong key = %d", a.status)
	}

	// A sync, to its end.
	a := g.post(t, "/v1/sessions/demo_session/sync", `{}`, nil)
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

	// A webhook, forwarded to the CRM.
	body := `{"event": "message.received", "data": {"sessionId": "demo_session", "message": {"whatsappMessageId": "MON1", "content": "n", "chatId": "34600111222@s.whatsapp.net"}}}`
	if a := g.post(t, "/webhooks/inbox-hub", body, signedHook(body, time.Now())); a.status != http.StatusAccepted {
		t.Fatalf("webhook = %d %s", a.status, a.body)
	}
	wait.Until(t, 10*time.Second, "the event forwarded", func() bool { return len(crm.received()) == 1 })

	// The caller over its limit (3 a minute, two spent above).
	for limited := false; !limited; {
		limited = g.get(t, "/v1/sessions").status == http.StatusTooManyRequests
	}

	m := g.adminGet(t, "/metrics")
	if m.status != http.StatusOK {
		t.Fatalf("/metrics = %d", m.status)
	}
	exported := map[string]bool{}
	for line := range strings.Lines(m.body) {
		if line == "" || line[0] == '#' {
			continue
		}
		exported[strings.TrimRight(strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0], "\n")] = true
	}
	for _, name := range want {
		if !exported[name] {
			t.Errorf("the chart reads %s, which a running replica does not export", name)
		}
	}
}

// readMetricsUsed is the list of metric names of metricsUsedFile.
func readMetricsUsed(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(metricsUsedFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, l)
		}
	}
	if len(names) < 10 {
		t.Fatalf("%s lists %d metrics", metricsUsedFile, len(names))
	}
	return names
}
