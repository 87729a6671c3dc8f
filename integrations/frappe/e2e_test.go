package frappe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

const (
	e2eContacts        = 120
	e2eChats           = 40
	e2eMessagesPerChat = 8
)

// TestSyncIntoTheApp drives real gateway syncs (simulator, real Redis) into the kit's ingest,
// served over the stand-in for Frappe that enforces the WhatsApp app's schema, and counts rows.
//
//  1. The site already holds what the app's own sync wrote: the first page of contacts and chats
//     and the first page of messages of five chats, half the phone ids spelled @c.us.
//  2. A first gateway sync: every item is in the site exactly once; the app's rows are updated
//     (their names are all still there), not duplicated.
//  3. A re-sync adds nothing.
//  4. A sync from a gateway with an empty Redis (it delivers every item again) creates nothing and
//     changes nothing.
func TestSyncIntoTheApp(t *testing.T) {
	t.Parallel()
	_, simURL, creds := startSim(t, sim.Options{Contacts: e2eContacts, Chats: e2eChats, MessagesPerChat: e2eMessagesPerChat})
	secret := "crm-signing-" + randHex(16)
	site := startSite(t, siteConfig{
		Conf:     map[string]any{"inboxhub_signing_secret": secret},
		Sessions: []siteSession{{SessionID: "demo_session", Name: "Demo", Status: "Connected"}},
	})
	wantMessages := e2eChats * e2eMessagesPerChat

	var seeded struct {
		Contacts, Conversations, Messages []string
		Cus                               struct{ Contacts, Conversations int }
	}
	site.do(t, http.MethodPost, "/_fake/app_sync", map[string]string{
		"session_id": "demo_session", "upstream_url": simURL, "api_key": creds.apiKey}, &seeded)
	if len(seeded.Contacts) == 0 || len(seeded.Conversations) == 0 || len(seeded.Messages) == 0 {
		t.Fatalf("the app's own sync seeded nothing: %+v", seeded)
	}
	// Both spellings are there, so both lookups are exercised.
	if seeded.Cus.Contacts == 0 || seeded.Cus.Contacts == len(seeded.Contacts) || seeded.Cus.Conversations == 0 {
		t.Fatalf("seeded ids spelled @c.us: %d of %d contacts, %d of %d conversations", seeded.Cus.Contacts,
			len(seeded.Contacts), seeded.Cus.Conversations, len(seeded.Conversations))
	}
	before := site.state(t, "demo_session")
	t.Logf("before: the app's own sync left %d contacts (%d with @c.us ids), %d conversations (%d @c.us), %d messages",
		before.Counts.Contacts, seeded.Cus.Contacts, before.Counts.Conversations, seeded.Cus.Conversations, before.Counts.Messages)

	sink := map[string]string{"CRM_SINK_URL": site.ingestURL(), "CRM_SIGNING_SECRET": secret}
	g := startGateway(t, simURL, creds, redisURL(t), sink)

	// 1. The first sync over the app's rows.
	site.phase(t, "first")
	job := g.runSync(t, "demo_session")
	after := site.state(t, "demo_session")
	checkJob(t, "first sync", job, map[string]int{"contacts": e2eContacts, "chats": e2eChats, "messages": wantMessages})
	checkRows(t, "first sync", after, e2eContacts, e2eChats, wantMessages)
	first := after.Ingest["first"]
	for res, n := range map[string]int{
		"contacts": e2eContacts - len(seeded.Contacts),
		"chats":    e2eChats - len(seeded.Conversations),
		"messages": wantMessages - len(seeded.Messages),
	} {
		c := first[res]
		if c.Created != n {
			t.Errorf("first sync: %s created %d, want %d (the rest were the app's rows)", res, c.Created, n)
		}
		if c.Failed != 0 || c.Skipped != 0 {
			t.Errorf("first sync: %s %+v", res, c)
		}
	}
	if got, want := first["contacts"].Updated+first["contacts"].Unchanged, len(seeded.Contacts); got != want {
		t.Errorf("first sync: %d of the app's %d contacts found", got, want)
	}
	if got, want := first["chats"].Updated+first["chats"].Unchanged, len(seeded.Conversations); got != want {
		t.Errorf("first sync: %d of the app's %d conversations found", got, want)
	}
	if got, want := first["messages"].Updated+first["messages"].Unchanged, len(seeded.Messages); got != want {
		t.Errorf("first sync: %d of the app's %d messages found", got, want)
	}
	// The app's rows are still there under their own names: updated in place.
	for kind, names := range map[string][2][]string{
		"contacts":      {seeded.Contacts, after.Names.Contacts},
		"conversations": {seeded.Conversations, after.Names.Conversations},
		"messages":      {seeded.Messages, after.Names.Messages},
	} {
		for _, n := range names[0] {
			if !slices.Contains(names[1], n) {
				t.Errorf("the app's %s row %s is gone", kind, n)
			}
		}
	}
	t.Logf("first sync over the app's rows: contacts %s; chats %s; messages %s; duplicates %+v; rows %+v",
		fmtCounts(first["contacts"]), fmtCounts(first["chats"]), fmtCounts(first["messages"]), after.Duplicates, after.Counts)
	if s := after.Session; toInt(s["total_contacts"]) != e2eContacts || toInt(s["total_chats"]) != e2eChats ||
		toInt(s["total_messages_sent"])+toInt(s["total_messages_received"]) != wantMessages {
		t.Errorf("session counters: contacts %v chats %v sent %v received %v", s["total_contacts"], s["total_chats"],
			s["total_messages_sent"], s["total_messages_received"])
	}

	// 2. A re-sync on the same gateway: nothing new upstream, nothing new in the site.
	site.phase(t, "resync")
	job = g.runSync(t, "demo_session")
	checkJob(t, "re-sync", job, nil)
	again := site.state(t, "demo_session")
	checkRows(t, "re-sync", again, e2eContacts, e2eChats, wantMessages)
	for res, c := range again.Ingest["resync"] {
		if c.Created != 0 || c.Updated != 0 || c.Failed != 0 {
			t.Errorf("re-sync: %s %+v", res, c)
		}
	}
	t.Logf("re-sync: delivered contacts %d, chats %d, messages %d; ingest %v; duplicates %+v; rows %+v",
		job.Progress["contacts"].Delivered, job.Progress["chats"].Delivered, job.Progress["messages"].Delivered,
		again.Ingest["resync"], again.Duplicates, again.Counts)

	// 3. A gateway that remembers nothing (a fresh Redis) delivers every item again.
	site.phase(t, "fresh")
	g2 := startGateway(t, simURL, creds, redisURL(t), sink)
	job = g2.runSync(t, "demo_session")
	checkJob(t, "sync from a fresh gateway", job, map[string]int{"contacts": e2eContacts, "chats": e2eChats, "messages": wantMessages})
	fresh := site.state(t, "demo_session")
	checkRows(t, "sync from a fresh gateway", fresh, e2eContacts, e2eChats, wantMessages)
	for res, want := range map[string]int{"contacts": e2eContacts, "chats": e2eChats, "messages": wantMessages} {
		c := fresh.Ingest["fresh"][res]
		if c.Created != 0 || c.Updated != 0 || c.Failed != 0 || c.Unchanged != want {
			t.Errorf("sync from a fresh gateway: %s %+v, want %d unchanged and nothing else", res, c, want)
		}
	}
	t.Logf("re-sync delivering every item again: contacts %s; chats %s; messages %s; duplicates %+v; rows %+v",
		fmtCounts(fresh.Ingest["fresh"]["contacts"]), fmtCounts(fresh.Ingest["fresh"]["chats"]),
		fmtCounts(fresh.Ingest["fresh"]["messages"]), fresh.Duplicates, fresh.Counts)
}

// TestEventsUpdateTheSession: the gateway's events (from the simulator's webhooks and the status
// poller) reach the kit: the session's status, is_connected, phone_number and last_seen follow
// the upstream, received messages become rows with the session's counters, and every event is
// logged once in WhatsApp Webhook Log.
func TestEventsUpdateTheSession(t *testing.T) {
	t.Parallel()
	relay := &hookRelay{}
	relaySrv := httptest.NewServer(relay)
	t.Cleanup(relaySrv.Close)
	hookSecret := "hook-" + randHex(16)
	s, simURL, creds := startSim(t, sim.Options{Contacts: 20, Chats: 5, MessagesPerChat: 2,
		WebhookURL: relaySrv.URL + "/webhooks/inbox-hub", WebhookSecret: hookSecret})
	secret := "crm-signing-" + randHex(16)
	site := startSite(t, siteConfig{
		Conf:     map[string]any{"inboxhub_signing_secret": secret},
		Sessions: []siteSession{{SessionID: "demo_session", Name: "Demo", Status: "Connected"}},
	})
	g := startGateway(t, simURL, creds, redisURL(t), map[string]string{
		"CRM_EVENTS_URL": site.ingestURL(), "CRM_SIGNING_SECRET": secret, "INBOXHUB_WEBHOOK_SECRET": hookSecret,
		"GATEWAY_STATUS_POLL_INTERVAL": "200ms"})
	relay.target.Store(&gatewayHandler{h: g.app.Handler()})
	// A change before the status poller's first poll is that poll's first sighting, not a change:
	// start once the gateway knows the session's status.
	wait.Until(t, 20*time.Second, "the gateway knows demo_session's status", func() bool {
		st, err := g.app.Webhooks.KnownStatus(context.Background(), "demo_session")
		return err == nil && st != ""
	})

	if err := s.SetSessionStatus("demo_session", "disconnected"); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "the session is Disconnected in the site", func() bool {
		st := site.state(t, "demo_session").Session
		return st["status"] == "Disconnected" && toInt(st["is_connected"]) == 0 && st["last_seen"] != nil
	})
	if err := s.SetSessionStatus("demo_session", "connected"); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "the session is Connected again in the site", func() bool {
		st := site.state(t, "demo_session").Session
		return st["status"] == "Connected" && toInt(st["is_connected"]) == 1
	})
	st := site.state(t, "demo_session")
	if p, _ := st.Session["phone_number"].(string); p == "" {
		t.Errorf("phone_number not set: %v", st.Session)
	}

	const chat = "34600111222@s.whatsapp.net"
	if err := s.AddMessages("demo_session", chat, 3); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "three received messages in the site", func() bool {
		return site.state(t, "demo_session").Counts.Messages == 3
	})
	st = site.state(t, "demo_session")
	if toInt(st.Session["total_messages_received"]) != 3 || toInt(st.Session["total_chats"]) != 1 {
		t.Errorf("counters: %v", st.Session)
	}
	kinds := map[string]int{}
	ids := map[string]bool{}
	for _, l := range st.Logs {
		kinds[l.EventType]++
		if ids[l.WebhookID] {
			t.Errorf("event %s logged twice", l.WebhookID)
		}
		ids[l.WebhookID] = true
		if l.Status != "Success" {
			t.Errorf("log %+v", l)
		}
	}
	if kinds["message"] != 3 || kinds["connection_update"] < 2 {
		t.Errorf("webhook log by event type: %v", kinds)
	}
	if len(st.Failures) != 0 || len(st.Errors) != 0 {
		t.Errorf("the site refused: %v %v", st.Failures, st.Errors)
	}
	t.Logf("events: session %v/%v, messages %d, logs %v", st.Session["status"], st.Session["is_connected"], st.Counts.Messages, kinds)
}

// hookRelay forwards the simulator's webhooks to the gateway, which starts after the simulator.
type hookRelay struct {
	target atomic.Pointer[gatewayHandler]
}

type gatewayHandler struct{ h http.Handler }

func (r *hookRelay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	g := r.target.Load()
	if g == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	g.h.ServeHTTP(w, req)
}

func checkJob(t *testing.T, what string, job syncJob, delivered map[string]int) {
	t.Helper()
	if job.State != "succeeded" {
		t.Fatalf("%s: job %s %s", what, job.State, job.Error)
	}
	for res, want := range delivered {
		if p := job.Progress[res]; p.Delivered != want || p.Failed != 0 {
			t.Errorf("%s: %s delivered %d (failed %d), want %d", what, res, p.Delivered, p.Failed, want)
		}
	}
}

func checkRows(t *testing.T, what string, st siteState, contacts, chats, messages int) {
	t.Helper()
	if st.Counts.Contacts != contacts || st.Counts.Conversations != chats || st.Counts.Messages != messages {
		t.Errorf("%s: rows %+v, want %d contacts, %d conversations, %d messages", what, st.Counts, contacts, chats, messages)
	}
	if st.Duplicates.Contacts+st.Duplicates.Conversations+st.Duplicates.Messages != 0 {
		t.Errorf("%s: duplicates %+v", what, st.Duplicates)
	}
	if len(st.Failures) != 0 || len(st.Errors) != 0 {
		t.Errorf("%s: the site refused: %v %v", what, st.Failures, st.Errors)
	}
}

func fmtCounts(c ingestCounts) string {
	return "created " + strconv.Itoa(c.Created) + ", updated " + strconv.Itoa(c.Updated) + ", unchanged " +
		strconv.Itoa(c.Unchanged) + ", failed " + strconv.Itoa(c.Failed)
}

func toInt(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}
