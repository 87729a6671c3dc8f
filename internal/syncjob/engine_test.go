package syncjob_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// counts are a job's delivered items per resource.
func delivered(j syncjob.Job) map[string]int {
	out := map[string]int{}
	for res, p := range j.Progress {
		out[res] = p.Delivered
	}
	return out
}

func mustSync(t *testing.T, e *syncjob.Engine, req syncjob.Request) syncjob.Job {
	t.Helper()
	j, created, err := e.Sync(context.Background(), session, req)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatalf("sync returned the existing job %s, want a new one", j.ID)
	}
	return waitJob(t, e, j.ID, 60*time.Second)
}

func dump(j syncjob.Job) string {
	raw, _ := json.MarshalIndent(j, "", "  ")
	return string(raw)
}

// TestSyncSmallIncremental runs the incremental story on a small data set without a sink: a
// first sync delivers everything, a second nothing, a third exactly what changed.
func TestSyncSmallIncremental(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: 250, Chats: 40, MessagesPerChat: 12})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, nil)

	j := mustSync(t, e, syncjob.Request{})
	if j.State != syncjob.StateSucceeded {
		t.Fatalf("first sync: %s", dump(j))
	}
	want := map[string]int{"contacts": 250, "chats": 40, "messages": 480}
	for res, n := range want {
		if got := delivered(j)[res]; got != n {
			t.Errorf("first sync delivered %d %s, want %d", got, res, n)
		}
	}
	page, err := e.Items(context.Background(), j.ID, "contacts", "", 1000)
	if err != nil || page.Total != 250 || len(page.Items) != 250 || page.HasMore {
		t.Fatalf("items: total %d, %d items, more %v, err %v", page.Total, len(page.Items), page.HasMore, err)
	}

	j = mustSync(t, e, syncjob.Request{})
	for res, n := range delivered(j) {
		if n != 0 {
			t.Errorf("second sync delivered %d %s, want 0", n, res)
		}
	}
	if j.Progress["messages"].Pages != 0 || j.Progress["contacts"].Unchanged != 250 {
		t.Errorf("second sync: %s", dump(j))
	}

	renamed, err := s.MutateContacts(session, 7)
	if err != nil {
		t.Fatal(err)
	}
	_ = renamed
	if err := s.AddMessages(session, firstChat(t, e, j), 3); err != nil {
		t.Fatal(err)
	}
	j = mustSync(t, e, syncjob.Request{})
	if got := delivered(j)["contacts"]; got != 7 {
		t.Errorf("third sync delivered %d contacts, want 7", got)
	}
	if got := delivered(j)["messages"]; got != 3 {
		t.Errorf("third sync delivered %d messages, want 3: %s", got, dump(j))
	}
	if got := j.Progress["messages"].Chats; got != 1 {
		t.Errorf("third sync read the messages of %d chats, want 1", got)
	}
}

// firstChat returns the id of some chat the job delivered earlier (any chat of the session).
func firstChat(t *testing.T, e *syncjob.Engine, _ syncjob.Job) string {
	t.Helper()
	jobs, err := e.SessionJobs(context.Background(), session, 10)
	if err != nil || len(jobs) == 0 {
		t.Fatal(err)
	}
	first := jobs[len(jobs)-1]
	page, err := e.Items(context.Background(), first.ID, "chats", "", 1)
	if err != nil || len(page.Items) == 0 {
		t.Fatalf("no chat: %v", err)
	}
	var c crm.Chat
	_ = json.Unmarshal(page.Items[0], &c)
	return c.ID
}

// TestSyncOnEmbeddedStore runs jobs with the job queue on the embedded store (miniredis), with a sink
// (full batches of 500) and incrementally.
func TestSyncOnEmbeddedStore(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s, url, key := startSim(t, sim.Options{Contacts: 1200, Chats: 10, MessagesPerChat: 5})
	sk := newSink(t)
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, func(c *syncjob.Config) {
		c.SinkURL, c.SigningSecret = sk.srv.URL, sk.secret
	})
	j := mustSync(t, e, syncjob.Request{})
	if j.State != syncjob.StateSucceeded || delivered(j)["contacts"] != 1200 || delivered(j)["messages"] != 50 ||
		sk.distinct("contacts") != 1200 {
		t.Fatalf("on the embedded store: %s", dump(j))
	}
	if _, err := s.MutateContacts(session, 3); err != nil {
		t.Fatal(err)
	}
	if j = mustSync(t, e, syncjob.Request{}); delivered(j)["contacts"] != 3 || delivered(j)["messages"] != 0 {
		t.Fatalf("incremental on the embedded store: %s", dump(j))
	}
}

// scale is the share of the full data set (25,000 contacts, 2,000 chats, 60,000 messages) that
// TestSyncAtScale uses: SYNC_SCALE=1 runs the full size.
func scale(t *testing.T) float64 {
	if v := os.Getenv("SYNC_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 10 {
			t.Fatalf("SYNC_SCALE=%q: want a number in (0, 10]", v)
		}
		return f
	}
	return defaultScale
}

// TestSyncAtScale: a full sync of the whole data set delivers exactly its counts with the minimum
// number of upstream pages and no 429; a second delivers nothing; after 50 renamed contacts and
// new messages in 10 chats, a third delivers exactly those and reads the messages of those 10
// chats only.
func TestSyncAtScale(t *testing.T) {
	t.Parallel()
	f := scale(t)
	contacts, chats, perChat := int(25_000*f), int(2_000*f), 30
	rdb := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: contacts, Chats: chats, MessagesPerChat: perChat})
	sk := newSink(t)
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, func(c *syncjob.Config) {
		c.SinkURL, c.SigningSecret = sk.srv.URL, sk.secret
	})
	const (
		routeContacts = "GET /api/contacts/{sessionId}"
		routeChats    = "GET /api/messages/{sessionId}/chats"
		routeMessages = "GET /api/messages/{sessionId}/{chatId}"
	)
	pages := func(n int) int64 { return int64((n + 99) / 100) }

	start := time.Now()
	j := mustSync(t, e, syncjob.Request{})
	took := time.Since(start)
	c := s.Counters()
	t.Logf("full sync of %d contacts, %d chats, %d messages: %s, upstream pages: contacts %d, chats %d, messages %d",
		contacts, chats, chats*perChat, took.Round(time.Millisecond), c.Requests[routeContacts], c.Requests[routeChats], c.Requests[routeMessages])
	if j.State != syncjob.StateSucceeded {
		t.Fatalf("full sync: %s", dump(j))
	}
	for res, n := range map[string]int{"contacts": contacts, "chats": chats, "messages": chats * perChat} {
		if got := delivered(j)[res]; got != n {
			t.Errorf("full sync delivered %d %s, want %d", got, res, n)
		}
		if got := sk.distinct(res); got != n {
			t.Errorf("the sink received %d distinct %s, want %d", got, res, n)
		}
	}
	minPages := map[string]int64{routeContacts: pages(contacts), routeChats: pages(chats), routeMessages: int64(chats) * pages(perChat)}
	for route, n := range minPages {
		if got := c.Requests[route]; float64(got) > 1.05*float64(n) || got < n {
			t.Errorf("%s: %d requests, want %d (within 5%%)", route, got, n)
		}
	}
	if c.RateLimited != 0 || c.Status[429] != 0 {
		t.Errorf("the upstream answered 429 %d times", c.RateLimited)
	}

	s.ResetCounters()
	j2 := mustSync(t, e, syncjob.Request{})
	for res, n := range delivered(j2) {
		if n != 0 {
			t.Errorf("second sync delivered %d %s, want 0", n, res)
		}
	}
	if c := s.Counters(); c.Requests[routeMessages] != 0 || c.Requests[routeContacts] != pages(contacts) {
		t.Errorf("second sync: %d message pages, %d contact pages", c.Requests[routeMessages], c.Requests[routeContacts])
	}

	renamed, err := s.MutateContacts(session, 50)
	if err != nil {
		t.Fatal(err)
	}
	// Ten chats get 3 new messages each; chats of renamed contacts change name too.
	chatPage, err := e.Items(context.Background(), j.ID, "chats", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	changedChats := map[string]bool{}
	for _, raw := range chatPage.Items {
		var ch crm.Chat
		_ = json.Unmarshal(raw, &ch)
		if err := s.AddMessages(session, ch.ID, 3); err != nil {
			t.Fatal(err)
		}
		changedChats[ch.ID] = true
	}
	allChats := map[string]bool{}
	for cursor := ""; ; {
		p, err := e.Items(context.Background(), j.ID, "chats", cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range p.Items {
			allChats[itemKey("chats", raw)] = true
		}
		if !p.HasMore {
			break
		}
		cursor = p.NextCursor
	}
	for _, id := range renamed {
		if allChats[id] {
			changedChats[id] = true
		}
	}
	s.ResetCounters()
	j3 := mustSync(t, e, syncjob.Request{})
	if got := delivered(j3); got["contacts"] != 50 || got["chats"] != len(changedChats) || got["messages"] != 30 {
		t.Errorf("third sync delivered %v, want 50 contacts, %d chats, 30 messages", got, len(changedChats))
	}
	if c := s.Counters(); c.Requests[routeMessages] != 10 || j3.Progress["messages"].Chats != 10 {
		t.Errorf("third sync read %d message pages of %d chats, want 10 of 10", c.Requests[routeMessages], j3.Progress["messages"].Chats)
	}
}
