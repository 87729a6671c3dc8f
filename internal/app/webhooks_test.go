package app_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

const (
	hookSecret = "app-test-webhook-secret-0123456789"
	crmSecret  = "app-test-crm-signing-secret-012345"
)

// hookRelay is the webhook URL given to the simulator before the gateway exists: it passes each
// delivery to the gateway's handler once set, and records it (what an attacker on the path sees).
type hookRelay struct {
	target atomic.Pointer[http.Handler]
	url    string
	mu     sync.Mutex
	seen   []capturedHook
}

// capturedHook is one delivery as it crossed the network.
type capturedHook struct {
	header http.Header
	body   string
}

func newHookRelay(t *testing.T) *hookRelay {
	t.Helper()
	r := &hookRelay{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, capturedHook{header: req.Header.Clone(), body: string(body)})
		r.mu.Unlock()
		h := r.target.Load()
		if h == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		(*h).ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/webhooks/inbox-hub"
	return r
}

// find returns the first delivery of event about sid.
func (r *hookRelay) find(event, sid string) (capturedHook, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.seen {
		if h.header.Get("X-Webhook-Event") == event && h.header.Get("X-Webhook-Session") == sid {
			return h, true
		}
	}
	return capturedHook{}, false
}

func (r *hookRelay) to(g *gateway) {
	h := g.app.Handler()
	r.target.Store(&h)
}

// crmEvents is the CRM's events receiver: it checks every delivery's signature and records the
// events, or answers 503 while down.
type crmEvents struct {
	url    string
	down   atomic.Bool
	mu     sync.Mutex
	events []webhooks.Event
	bad    int
}

func newCRMEvents(t *testing.T) *crmEvents {
	t.Helper()
	k := &crmEvents{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if k.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev webhooks.Event
		ts := r.Header.Get(crm.HeaderTimestamp)
		k.mu.Lock()
		defer k.mu.Unlock()
		if !crm.Verify(crmSecret, ts, body, r.Header.Get(crm.HeaderSignature)) || json.Unmarshal(body, &ev) != nil {
			k.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		k.events = append(k.events, ev)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	k.url = srv.URL + "/gateway-events"
	return k
}

func (k *crmEvents) received() []webhooks.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]webhooks.Event(nil), k.events...)
}

func (k *crmEvents) badDeliveries() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bad
}

func (k *crmEvents) find(pred func(webhooks.Event) bool) (webhooks.Event, bool) {
	for _, ev := range k.received() {
		if pred(ev) {
			return ev, true
		}
	}
	return webhooks.Event{}, false
}

// sessionStatus is the status GET /v1/sessions/{id} answers.
func (g *gateway) sessionStatus(t *testing.T, sid string) string {
	t.Helper()
	a := g.get(t, "/v1/sessions/"+sid)
	if a.status != http.StatusOK {
		t.Fatalf("GET session %s: %d %s", sid, a.status, a.body)
	}
	var ans struct {
		Data struct {
			Status string `json:"status"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(a.body), &ans); err != nil {
		t.Fatal(err)
	}
	return ans.Data.Status
}

// isLeader reads poller_leader from the metrics on the replica's admin listener.
func (g *gateway) isLeader(t *testing.T) bool {
	t.Helper()
	a := g.adminGet(t, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(a.body))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "inboxhub_gateway_poller_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "inboxhub_gateway_poller_leader ")) == "1"
		}
	}
	return false
}

// waitFirstPoll waits until the status poller's first poll recorded the session's status. A change
// that happens before is recorded by that poll as a first sighting (and not reported), so tests of
// reported changes start after it.
func (g *gateway) waitFirstPoll(t *testing.T, sid string) {
	t.Helper()
	wait.Until(t, 3*time.Second, "the first poll recorded "+sid, func() bool {
		st, err := g.app.Webhooks.KnownStatus(context.Background(), sid)
		return err == nil && st != ""
	})
}

func signedHook(body string, at time.Time) map[string]string {
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(body))
	return map[string]string{"X-API-Key": "", "X-Webhook-Signature": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
		"X-Webhook-Timestamp": strconv.FormatInt(at.UnixMilli(), 10)}
}

// TestWebhooksKeepSessionStateCurrent: the simulator sends signed webhooks to the gateway; a QR
// scanned and a session dropped show on GET /v1/sessions/{id} at once (the cached state, fresh for
// 5 s, is dropped), and the connection queues the automatic sync.
func TestWebhooksKeepSessionStateCurrent(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			creds := newCreds()
			relay := newHookRelay(t)
			s, simURL := startSim(t, creds, sim.Options{WebhookURL: relay.url, WebhookSecret: hookSecret, LegacyWebhooks: legacy})
			g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
				"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "true"})
			relay.to(g)

			if st := g.sessionStatus(t, "sales_team"); st != "qr_pending" {
				t.Fatalf("sales_team starts %q", st)
			}
			g.waitFirstPoll(t, "sales_team")
			// A session.qr arrives every time the QR is renewed; scanning sends session.connected.
			if err := s.ScanQR("sales_team"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			wait.Until(t, time.Second, "the scanned session shows connected", func() bool {
				return g.sessionStatus(t, "sales_team") == "connected"
			})
			t.Logf("connected visible after %s", time.Since(start).Round(time.Millisecond))
			wait.Until(t, 3*time.Second, "the automatic sync queued", func() bool {
				jobs, err := g.app.Sync.SessionJobs(context.Background(), "sales_team", 5)
				return err == nil && len(jobs) == 1 && jobs[0].Trigger == syncjob.TriggerAuto
			})

			if err := s.SetSessionStatus("sales_team", "disconnected"); err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			wait.Until(t, time.Second, "the dropped session shows disconnected", func() bool {
				return g.sessionStatus(t, "sales_team") == "disconnected"
			})
			t.Logf("disconnected visible after %s", time.Since(start).Round(time.Millisecond))
			if c := s.Counters(); c.WebhookFailures != 0 {
				t.Errorf("%d webhook deliveries failed", c.WebhookFailures)
			}
		})
	}
}

// TestEventsReachTheCRMInOrder: messages and session changes are forwarded to CRM_EVENTS_URL,
// signed, in order per session; while the CRM is down they become dead letters, which an admin
// lists and replays.
func TestEventsReachTheCRMInOrder(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	relay := newHookRelay(t)
	s, simURL := startSim(t, creds, sim.Options{WebhookURL: relay.url, WebhookSecret: hookSecret})
	crm := newCRMEvents(t)
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret,
		"GATEWAY_EVENTS_MAX_ATTEMPTS": "3", "GATEWAY_EVENTS_BACKOFF": "10ms", "GATEWAY_EVENTS_MAX_BACKOFF": "50ms"})
	relay.to(g)

	// From the simulator: five received messages, in the sync's message schema.
	if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", 5); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "five messages forwarded", func() bool { return len(crm.received()) == 5 })
	for _, ev := range crm.received() {
		if ev.Type != webhooks.TypeMessageReceived || ev.SessionID != "demo_session" || ev.Data.Message == nil ||
			ev.Data.Message.ChatID != "34600111222@s.whatsapp.net" || ev.Data.Message.FromPhone != "34600111222" {
			t.Fatalf("event %+v", ev)
		}
	}

	// In order per session: forty deliveries over two sessions, interleaved, each sent once.
	for i := range 20 {
		for _, sid := range []string{"order_a", "order_b"} {
			body := fmt.Sprintf(`{"event": "message.received", "data": {"sessionId": %q, "message": {"whatsappMessageId": "M%03d", "content": "n", "chatId": "34600111222@s.whatsapp.net"}}}`, sid, i)
			if a := g.post(t, "/webhooks/inbox-hub", body, signedHook(body, time.Now())); a.status != http.StatusAccepted {
				t.Fatalf("%d %s", a.status, a.body)
			}
		}
	}
	wait.Until(t, 5*time.Second, "forty more events", func() bool { return len(crm.received()) == 45 })
	next := map[string]int{}
	for _, ev := range crm.received()[5:] {
		if want := fmt.Sprintf("M%03d", next[ev.SessionID]); ev.Data.Message.ID != want {
			t.Fatalf("%s: got %s, want %s", ev.SessionID, ev.Data.Message.ID, want)
		}
		next[ev.SessionID]++
	}

	// The CRM goes down: the event is tried three times, then dead-lettered.
	crm.down.Store(true)
	if err := s.AddMessages("demo_session", "34600111222@s.whatsapp.net", 1); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []webhooks.DeadLetter `json:"data"`
		Meta struct{ Total int }   `json:"meta"`
	}
	wait.Until(t, 5*time.Second, "a dead letter listed", func() bool {
		a := g.get(t, "/v1/admin/dead-letters")
		return a.status == http.StatusOK && json.Unmarshal([]byte(a.body), &list) == nil && list.Meta.Total == 1
	})
	if d := list.Data[0]; d.Attempts != 3 || d.Type != webhooks.TypeMessageReceived {
		t.Fatalf("%+v", d)
	}
	// Admin only.
	if a := g.request(t, http.MethodGet, "/v1/admin/dead-letters", nil, map[string]string{"X-API-Key": readerKey}); a.status != http.StatusForbidden {
		t.Fatalf("reader: %d %s", a.status, a.body)
	}
	if a := g.post(t, "/v1/admin/dead-letters/"+list.Data[0].ID+"/replay", "", map[string]string{"X-API-Key": readerKey}); a.status != http.StatusForbidden {
		t.Fatalf("reader replay: %d %s", a.status, a.body)
	}
	// The CRM is back: the replay delivers it.
	crm.down.Store(false)
	if a := g.post(t, "/v1/admin/dead-letters/"+list.Data[0].ID+"/replay", "", nil); a.status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", a.status, a.body)
	}
	wait.Until(t, 3*time.Second, "the replayed event delivered", func() bool {
		_, ok := crm.find(func(ev webhooks.Event) bool { return ev.ID == list.Data[0].ID })
		return ok
	})
	if n := crm.badDeliveries(); n != 0 {
		t.Errorf("%d deliveries failed the signature check", n)
	}
}

// TestPollerReportsWhatWebhooksMissed: webhooks off in the simulator; of two replicas one polls,
// it reports a session dropped within an interval, and when it shuts down the other takes over.
func TestPollerReportsWhatWebhooksMissed(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{}) // no webhook URL: every webhook is "lost"
	crm := newCRMEvents(t)
	redisURL := redistest.URL(t)
	const interval = 200 * time.Millisecond
	extra := map[string]string{"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret, "GATEWAY_STATUS_POLL_INTERVAL": interval.String()}
	g1 := startGateway(t, simURL, creds, redisURL, extra)
	g2 := startGateway(t, simURL, creds, redisURL, extra)
	replicas := []*gateway{g1, g2}
	leader := func() (*gateway, int) {
		var l *gateway
		n := 0
		for _, g := range replicas {
			if g.isLeader(t) {
				l, n = g, n+1
			}
		}
		return l, n
	}
	wait.Until(t, 3*time.Second, "one leader", func() bool { _, n := leader(); return n == 1 })
	lead, _ := leader()
	wait.Until(t, 3*time.Second, "the first poll recorded the statuses", func() bool {
		st, err := g1.app.Webhooks.KnownStatus(context.Background(), "demo_session")
		return err == nil && st == "connected"
	})
	if st := g1.sessionStatus(t, "demo_session"); st != "connected" {
		t.Fatalf("demo_session starts %q", st)
	}

	if err := s.SetSessionStatus("demo_session", "disconnected"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wait.Until(t, 3*interval+time.Second, "the poller reports the drop", func() bool {
		_, ok := crm.find(func(ev webhooks.Event) bool {
			return ev.Type == webhooks.TypeSessionDisconnected && ev.SessionID == "demo_session" && ev.Source == webhooks.SourcePoller
		})
		return ok
	})
	t.Logf("session.disconnected from the poller after %s (interval %s)", time.Since(start).Round(time.Millisecond), interval)
	if st := g1.sessionStatus(t, "demo_session"); st != "disconnected" {
		t.Errorf("GET after the poller's event: %q", st)
	}
	for range 5 {
		if _, n := leader(); n != 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(interval / 2) // lets time pass: leadership is sampled over two and a half intervals
	}

	// The leader shuts down; the other replica takes over and reports the next change.
	lead.app.Close()
	var other *gateway
	for _, g := range replicas {
		if g != lead {
			other = g
		}
	}
	start = time.Now()
	wait.Until(t, 3*time.Second, "the standby leads", func() bool { return other.isLeader(t) })
	t.Logf("takeover after %s", time.Since(start).Round(time.Millisecond))
	if err := s.SetSessionStatus("demo_session", "connected"); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*interval+time.Second, "the new leader reports the reconnection", func() bool {
		_, ok := crm.find(func(ev webhooks.Event) bool {
			return ev.Type == webhooks.TypeSessionConnected && ev.SessionID == "demo_session" && ev.Source == webhooks.SourcePoller
		})
		return ok
	})
}

// resend posts a captured delivery again as an attacker can: the same signed body and signature,
// a fresh timestamp, and the session header set to session ("" drops it).
func (g *gateway) resend(t *testing.T, h capturedHook, session string) answer {
	t.Helper()
	headers := map[string]string{"X-API-Key": "", "Content-Type": "application/json",
		"X-Webhook-Signature": h.header.Get("X-Webhook-Signature"), "X-Webhook-Event": h.header.Get("X-Webhook-Event"),
		"X-Webhook-Timestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "X-Webhook-Session": session}
	return g.request(t, http.MethodPost, "/webhooks/inbox-hub", strings.NewReader(h.body), headers)
}

// TestCapturedWebhookReplayChangesNothing: a session.connected captured on the wire and re-sent with
// a fresh timestamp (with or without its session header) is not forwarded again and queues no second
// automatic sync; re-targeted at another session through the header, it is refused with 400.
func TestCapturedWebhookReplayChangesNothing(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	relay := newHookRelay(t)
	s, simURL := startSim(t, creds, sim.Options{WebhookURL: relay.url, WebhookSecret: hookSecret})
	crm := newCRMEvents(t)
	g := startGateway(t, simURL, creds, redistest.URL(t), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "true",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret})
	relay.to(g)

	connectedEvents := func(sid string) int {
		n := 0
		for _, ev := range crm.received() {
			if ev.Type == webhooks.TypeSessionConnected && ev.SessionID == sid {
				n++
			}
		}
		return n
	}
	autoSyncs := func() int {
		jobs, err := g.app.Sync.SessionJobs(context.Background(), "sales_team", 50)
		if err != nil {
			t.Fatal(err)
		}
		return len(jobs)
	}
	g.waitFirstPoll(t, "sales_team")
	if err := s.ScanQR("sales_team"); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "session.connected forwarded and the sync queued", func() bool {
		return connectedEvents("sales_team") == 1 && autoSyncs() == 1
	})
	captured, ok := relay.find("session.connected", "sales_team")
	if !ok {
		t.Fatal("no session.connected delivery captured")
	}

	for _, hdr := range []string{"sales_team", ""} {
		if a := g.resend(t, captured, hdr); a.status != http.StatusAccepted {
			t.Fatalf("replay with session header %q: %d %s", hdr, a.status, a.body)
		}
	}
	// Let the replays be confirmed (and, were they acted on, forwarded) before counting.
	wait.Until(t, 3*time.Second, "the replays confirmed", func() bool {
		n, err := g.app.Webhooks.HintsWaiting(context.Background())
		return err == nil && n == 0
	})
	time.Sleep(300 * time.Millisecond) // room for a wrongly forwarded replay to show
	if n := connectedEvents("sales_team"); n != 1 {
		t.Errorf("the CRM received session.connected %d times, want once", n)
	}
	a := g.resend(t, captured, "demo_session")
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "X-Webhook-Session") {
		t.Errorf("re-targeted replay: %d %s", a.status, a.body)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrongly forwarded replay to show
	if n := connectedEvents("demo_session"); n != 0 {
		t.Errorf("the re-targeted replay reached the CRM %d times", n)
	}
	if n := autoSyncs(); n != 1 {
		t.Errorf("%d automatic syncs, want one", n)
	}
}

// TestWebhooksSpooledWhileRedisIsDown: Redis stops; authentic webhooks are still answered 202
// (kept on the replica's disk, spooled true) instead of 500 and lost; when Redis returns they reach
// the CRM in order. A full spool answers 503 WEBHOOK_SPOOL_FULL with Retry-After.
func TestWebhooksSpooledWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	_, simURL := startSim(t, creds, sim.Options{})
	crm := newCRMEvents(t)
	rs := redistest.Start(t)
	g := startGateway(t, simURL, creds, rs.URL(), map[string]string{
		"INBOXHUB_WEBHOOK_SECRET": hookSecret, "GATEWAY_SYNC_ON_CONNECT": "false",
		"CRM_EVENTS_URL": crm.url, "CRM_SIGNING_SECRET": crmSecret,
		"GATEWAY_WEBHOOK_SPOOL_MAX_BYTES": "2500"})
	send := func(id string) answer {
		body := fmt.Sprintf(`{"event": "message.received", "data": {"sessionId": "demo_session", "message": {"whatsappMessageId": %q, "content": "n", "chatId": "34600111222@s.whatsapp.net"}}}`, id)
		return g.post(t, "/webhooks/inbox-hub", body, signedHook(body, time.Now()))
	}
	messages := func() []string {
		var ids []string
		for _, ev := range crm.received() {
			if ev.Data.Message != nil {
				ids = append(ids, ev.Data.Message.ID)
			}
		}
		return ids
	}
	if a := send("M000"); a.status != http.StatusAccepted {
		t.Fatalf("%d %s", a.status, a.body)
	}
	wait.Until(t, 3*time.Second, "the first message forwarded", func() bool { return len(messages()) == 1 })

	rs.Stop()
	for _, id := range []string{"M001", "M002", "M003"} {
		if a := send(id); a.status != http.StatusAccepted || !strings.Contains(a.body, `"spooled":true`) {
			t.Fatalf("%s with Redis down: %d %s", id, a.status, a.body)
		}
	}
	rs.Restart(t)
	wait.Until(t, 15*time.Second, "the spooled messages forwarded", func() bool { return len(messages()) == 4 })
	if got := fmt.Sprint(messages()); got != "[M000 M001 M002 M003]" {
		t.Errorf("messages forwarded %s", got)
	}

	// Down again, until the spool is full: refused with 503, never a 500, never a false 202.
	rs.Stop()
	full := false
	for i := range 20 {
		a := send(fmt.Sprintf("F%03d", i))
		if a.status == http.StatusServiceUnavailable && strings.Contains(a.body, "WEBHOOK_SPOOL_FULL") && a.header.Get("Retry-After") != "" {
			full = true
			break
		}
		if a.status != http.StatusAccepted {
			t.Fatalf("F%03d: %d %s", i, a.status, a.body)
		}
	}
	if !full {
		t.Fatal("the spool never filled")
	}
}
