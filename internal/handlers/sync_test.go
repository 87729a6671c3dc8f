package handlers

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// syncTestAPI is the sync routes over a real engine, the simulator and a real Redis, served by an
// HTTP server with a short WriteTimeout (which the event stream must outlive).
type syncTestAPI struct {
	url     string
	sim     *sim.Server
	engine  *syncjob.Engine
	rdb     *redis.Client
	streams *Streams
}

func newSyncTestAPI(t *testing.T, o sim.Options, startWorkers bool) *syncTestAPI {
	t.Helper()
	return newSyncTestAPIOn(t, o, startWorkers, redistest.New(t))
}

// newSyncTestAPIOn is newSyncTestAPI on a given Redis client.
func newSyncTestAPIOn(t *testing.T, o sim.Options, startWorkers bool, rdb *redis.Client) *syncTestAPI {
	t.Helper()
	o.Identifier, o.Password, o.APIKey = "gw@example.invalid", "pw-sync-test", "key-sync-test"
	o.RateAuth, o.RateRead, o.RateSend, o.RateGlobal = sim.NoLimit(), sim.NoLimit(), sim.NoLimit(), sim.NoLimit()
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { simSrv.Close(); s.Close() })
	up, err := upstream.New(simSrv.URL, upstream.Credentials{APIKey: o.APIKey},
		upstream.WithRetry(2, 10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e, err := syncjob.New(syncjob.Config{Redis: rdb, Upstream: up, PollInterval: 100 * time.Millisecond,
		OwnerLease: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if startWorkers {
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.Shutdown)

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	logger := slog.New(slog.DiscardHandler)
	r.Use(middleware.RequestID(), middleware.Recovery(logger), middleware.Errors(logger), middleware.BodyLimit(1024))
	v1 := r.Group("/v1")
	pass := func(string) gin.HandlerFunc { return func(c *gin.Context) { c.Next() } }
	streams := NewStreams()
	syncHandlers{jobs: e, poll: 50 * time.Millisecond, heartbeat: 200 * time.Millisecond, streams: streams}.register(v1, pass)
	srv := httptest.NewUnstartedServer(r)
	srv.Config.WriteTimeout = time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	return &syncTestAPI{url: srv.URL, sim: s, engine: e, rdb: rdb, streams: streams}
}

type syncAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a *syncTestAPI) do(t *testing.T, method, path, body string, headers ...string) syncAnswer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return syncAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s syncAnswer) job(t *testing.T) syncjob.Job {
	t.Helper()
	var a struct {
		Data syncjob.Job `json:"data"`
	}
	if err := json.Unmarshal(s.body, &a); err != nil {
		t.Fatalf("%s: %v", s.body, err)
	}
	return a.Data
}

func (s syncAnswer) problem(t *testing.T) problem.Details {
	t.Helper()
	if ct := s.header.Get("Content-Type"); !strings.HasPrefix(ct, problem.ContentType) {
		t.Fatalf("content type %q: %s", ct, s.body)
	}
	var d problem.Details
	if err := json.Unmarshal(s.body, &d); err != nil {
		t.Fatalf("%s: %v", s.body, err)
	}
	return d
}

// TestSync202And200: the first request queues a job (202, Location), the next ones answer the
// same job (200) while it is queued; the session's list shows it.
func TestSync202And200(t *testing.T) {
	api := newSyncTestAPI(t, sim.Options{Contacts: 20, Chats: 2, MessagesPerChat: 1}, false)
	first := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", "")
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	j := first.job(t)
	if first.header.Get("Location") != "/v1/sync-jobs/"+j.ID || j.State != syncjob.StateQueued || len(j.Resources) != 3 {
		t.Fatalf("first: %s %s", first.header.Get("Location"), first.body)
	}
	again := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", `{"resources": ["contacts"], "full": true}`)
	if again.status != http.StatusOK || again.job(t).ID != j.ID || !strings.Contains(string(again.body), `"created":false`) {
		t.Fatalf("again: %d %s", again.status, again.body)
	}
	list := api.do(t, http.MethodGet, "/v1/sessions/demo_session/sync-jobs?limit=5", "")
	if list.status != http.StatusOK || !strings.Contains(string(list.body), j.ID) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	got := api.do(t, http.MethodGet, "/v1/sync-jobs/"+j.ID, "")
	if got.status != http.StatusOK || got.job(t).ID != j.ID {
		t.Fatalf("get: %d %s", got.status, got.body)
	}
	// Canceling the queued job ends it at once and frees the session.
	del := api.do(t, http.MethodDelete, "/v1/sync-jobs/"+j.ID, "")
	if del.status != http.StatusOK || del.job(t).State != syncjob.StateCanceled {
		t.Fatalf("delete: %d %s", del.status, del.body)
	}
	if again := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", `{}`); again.status != http.StatusAccepted {
		t.Fatalf("after cancel: %d %s", again.status, again.body)
	}
}

// TestSync4xx: bad input is refused before the upstream is called; unknown jobs are 404.
func TestSync4xx(t *testing.T) {
	api := newSyncTestAPI(t, sim.Options{Contacts: 20, Chats: 2, MessagesPerChat: 1}, false)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, field        string
	}{
		{"POST", "/v1/sessions/demo_session/sync", `{"resources": ["contacts"], "extra": 1}`, 400, problem.CodeInvalidRequest, "extra"},
		{"POST", "/v1/sessions/demo_session/sync", `{"resources": ["groups"]}`, 400, problem.CodeInvalidRequest, "resources[0]"},
		{"POST", "/v1/sessions/demo_session/sync", `{"resources": "contacts"}`, 400, problem.CodeInvalidRequest, "resources"},
		{"POST", "/v1/sessions/demo_session/sync", `{"full": tru`, 400, problem.CodeInvalidRequest, "body"},
		{"POST", "/v1/sessions/demo_session/sync", `{} {}`, 400, problem.CodeInvalidRequest, "body"},
		{"POST", "/v1/sessions/demo_session/sync", `{"full": false, "full": true}`, 400, problem.CodeInvalidRequest, "full"},
		{"POST", "/v1/sessions/demo_session/sync", `{"resources": ["contacts"], "Resources": ["messages"]}`, 400, problem.CodeInvalidRequest, "Resources"},
		{"POST", "/v1/sessions/demo_session/sync", `{"FULL": true}`, 400, problem.CodeInvalidRequest, "FULL"},
		{"POST", "/v1/sessions/demo_session/sync", `{"resources": ["` + strings.Repeat("x", 2000) + `"]}`, 413, problem.CodePayloadTooLarge, ""},
		{"POST", "/v1/sessions/a/sync", "", 400, problem.CodeInvalidRequest, "sessionId"},
		{"POST", "/v1/sessions/support_desk/sync", "", 409, problem.CodeSessionNotConnected, ""},
		{"POST", "/v1/sessions/no_such_session/sync", "", 404, problem.CodeSessionNotFound, ""},
		{"GET", "/v1/sync-jobs/0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11", "", 404, problem.CodeJobNotFound, ""},
		{"GET", "/v1/sync-jobs/0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11/events", "", 404, problem.CodeJobNotFound, ""},
		{"DELETE", "/v1/sync-jobs/0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11", "", 404, problem.CodeJobNotFound, ""},
		{"GET", "/v1/sync-jobs/0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11/items/contacts", "", 404, problem.CodeJobNotFound, ""},
		{"GET", "/v1/sync-jobs/bad%20id", "", 400, problem.CodeInvalidRequest, "jobId"},
		{"GET", "/v1/sync-jobs/abc/items/groups", "", 400, problem.CodeInvalidRequest, "resource"},
		{"GET", "/v1/sync-jobs/abc/items/contacts?limit=0", "", 400, problem.CodeInvalidRequest, "limit"},
		{"GET", "/v1/sessions/demo_session/sync-jobs?limit=51", "", 400, problem.CodeInvalidRequest, "limit"},
	} {
		a := api.do(t, tc.method, tc.path, tc.body)
		if a.status != tc.status {
			t.Errorf("%s %s %.40s: %d, want %d: %s", tc.method, tc.path, tc.body, a.status, tc.status, a.body)
			continue
		}
		d := a.problem(t)
		if d.Code != tc.code || (tc.field != "" && (len(d.Errors) == 0 || d.Errors[0].Field != tc.field)) {
			t.Errorf("%s %s %.40s: %+v, want code %s field %s", tc.method, tc.path, tc.body, d, tc.code, tc.field)
		}
	}
	if c := api.sim.Counters(); c.Requests["GET /api/contacts/{sessionId}"] != 0 {
		t.Errorf("bad requests reached the upstream's data routes")
	}
	// A cursor of another list is refused.
	j := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", "").job(t)
	if a := api.do(t, http.MethodGet, "/v1/sync-jobs/"+j.ID+"/items/contacts?cursor=bm9wZQ", ""); a.status != 400 || a.problem(t).Errors[0].Field != "cursor" {
		t.Errorf("foreign cursor: %d %s", a.status, a.body)
	}
	if a := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", `{"full": true}`, "Content-Type", "text/plain"); a.status != 415 {
		t.Errorf("text body: %d %s", a.status, a.body)
	}
}

type sseEvent struct {
	name string
	job  syncjob.Job
}

// readEvents reads an event stream until it ends.
func readEvents(t *testing.T, body io.Reader) (events []sseEvent, heartbeats int) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			heartbeats++
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var j syncjob.Job
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &j); err != nil {
				t.Fatalf("event data: %v", err)
			}
			events = append(events, sseEvent{name, j})
		}
	}
	return events, heartbeats
}

// startJob starts a sync of demo_session and returns the new job's id.
func (api *syncTestAPI) startJob(t *testing.T) string {
	t.Helper()
	start := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", "")
	if start.status != http.StatusAccepted {
		t.Fatalf("%d %s", start.status, start.body)
	}
	return start.job(t).ID
}

// events opens the job's event stream, failing the test unless it is one.
func (api *syncTestAPI) events(ctx context.Context, t *testing.T, id string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.url+"/v1/sync-jobs/"+id+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

// TestSyncEventsEndWithReconnect: when the replica stops (Streams.Close), an open event stream of
// a job still queued ends with a reconnect event, and a stream opened after ends the same way.
func TestSyncEventsEndWithReconnect(t *testing.T) {
	api := newSyncTestAPI(t, sim.Options{}, false) // no workers: the job stays queued
	id := api.startJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := api.events(ctx, t, id)
	defer resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil { // the stream is open: its first event came
		t.Fatal(err)
	}
	api.streams.Close()
	for _, resp := range []*http.Response{resp, api.events(ctx, t, id)} {
		events, _ := readEvents(t, resp.Body) // up to the end of the stream
		if n := len(events); n == 0 || events[n-1].name != "reconnect" {
			t.Errorf("events %+v, want the last one to be reconnect", events)
		}
		_ = resp.Body.Close()
	}
}

// TestSyncEventsAndItems: the event stream sends progress as the job runs, outlives the server's
// WriteTimeout, ends with the final state; the items are then paged by cursor; DELETE of the
// finished job is 409.
func TestSyncEventsAndItems(t *testing.T) {
	api := newSyncTestAPI(t, sim.Options{Contacts: 1500, Chats: 8, MessagesPerChat: 2}, true)
	api.sim.SetFaults(sim.Faults{Latency: 80 * time.Millisecond}) // about 2 s of work: past the WriteTimeout
	id := api.startJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := api.events(ctx, t, id)
	defer resp.Body.Close()
	began := time.Now()
	events, beats := readEvents(t, resp.Body)
	if len(events) < 3 {
		t.Fatalf("%d events, want several", len(events))
	}
	last := events[len(events)-1]
	if last.name != "done" || last.job.State != syncjob.StateSucceeded {
		t.Fatalf("last event %s %s", last.name, last.job.State)
	}
	progressed := map[int]bool{}
	for _, ev := range events[:len(events)-1] {
		if ev.name != "progress" {
			t.Errorf("event %q", ev.name)
		}
		progressed[ev.job.Progress["contacts"].Pages] = true
	}
	if len(progressed) < 3 {
		t.Errorf("the events showed %d distinct page counts, want the progress as it happened", len(progressed))
	}
	t.Logf("%d events, %d heartbeats over %s", len(events), beats, time.Since(began).Round(time.Millisecond))

	// Page through the contacts by cursor.
	seen := map[string]bool{}
	cursor := ""
	for range 20 {
		a := api.do(t, http.MethodGet, "/v1/sync-jobs/"+id+"/items/contacts?limit=400&cursor="+cursor, "")
		var page SyncItemsAnswer
		if a.status != 200 || json.Unmarshal(a.body, &page) != nil {
			t.Fatalf("items: %d %s", a.status, a.body)
		}
		for _, raw := range page.Data {
			var c crm.Contact
			_ = json.Unmarshal(raw, &c)
			seen[c.ID] = true
		}
		if !page.Meta.HasMore {
			break
		}
		cursor = page.Meta.NextCursor
	}
	if len(seen) != 1500 {
		t.Errorf("paged %d distinct contacts, want 1500", len(seen))
	}
	if a := api.do(t, http.MethodDelete, "/v1/sync-jobs/"+id, ""); a.status != http.StatusConflict {
		t.Errorf("delete of a finished job: %d %s", a.status, a.body)
	}
	// The stream of a finished job answers its final state at once.
	fin := api.do(t, http.MethodGet, "/v1/sync-jobs/"+id+"/events", "")
	if evs, _ := readEvents(t, strings.NewReader(string(fin.body))); len(evs) != 2 || evs[1].name != "done" {
		t.Errorf("events of a finished job: %s", fin.body)
	}
}

// TestSyncCancelRunning: DELETE of a running job answers 202; the stream then ends canceled.
func TestSyncCancelRunning(t *testing.T) {
	api := newSyncTestAPI(t, sim.Options{Contacts: 3000, Chats: 8, MessagesPerChat: 2}, true)
	api.sim.SetFaults(sim.Faults{Latency: 40 * time.Millisecond})
	id := api.do(t, http.MethodPost, "/v1/sessions/demo_session/sync", "").job(t).ID
	wait.Until(t, 20*time.Second, "the job reads its second page of contacts", func() bool {
		return api.do(t, http.MethodGet, "/v1/sync-jobs/"+id, "").job(t).Progress["contacts"].Pages >= 2
	})
	del := api.do(t, http.MethodDelete, "/v1/sync-jobs/"+id, "")
	if del.status != http.StatusAccepted || !del.job(t).CancelRequested {
		t.Fatalf("delete: %d %s", del.status, del.body)
	}
	ev := api.do(t, http.MethodGet, "/v1/sync-jobs/"+id+"/events", "")
	evs, _ := readEvents(t, strings.NewReader(string(ev.body)))
	if len(evs) == 0 || evs[len(evs)-1].name != "done" || evs[len(evs)-1].job.State != syncjob.StateCanceled {
		t.Fatalf("events after cancel: %s", ev.body)
	}
	if p := evs[len(evs)-1].job.Progress["contacts"]; p.Pages >= 30 {
		t.Errorf("the job did not stop between pages: %+v", p)
	}
}

// TestSyncRoutesAnswer503WhileTheStoreIsDown: while Redis is unreachable (its server killed, as in
// a failover), every sync route answers 503 UPSTREAM_UNAVAILABLE problem+json with Retry-After,
// never 500.
func TestSyncRoutesAnswer503WhileTheStoreIsDown(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries, opts.DialTimeout, opts.DialerRetries = 0, 200*time.Millisecond, 1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	api := newSyncTestAPIOn(t, sim.Options{Contacts: 20, Chats: 2, MessagesPerChat: 1}, false, rdb)
	id := api.startJob(t)

	srv.Stop()
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/sync-jobs/" + id, ""},
		{http.MethodDelete, "/v1/sync-jobs/" + id, ""},
		{http.MethodGet, "/v1/sync-jobs/" + id + "/items/contacts", ""},
		{http.MethodGet, "/v1/sessions/demo_session/sync-jobs", ""},
		{http.MethodPost, "/v1/sessions/demo_session/sync", "{}"},
	} {
		a := api.do(t, r.method, r.path, r.body)
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with Redis down: %d %s, want 503", r.method, r.path, a.status, a.body)
		}
		p := a.problem(t)
		if p.Code != problem.CodeUpstreamUnavailable || p.RetryAfter <= 0 || a.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: %+v, Retry-After %q", r.method, r.path, p, a.header.Get("Retry-After"))
		}
		if strings.Contains(string(a.body), srv.Addr) {
			t.Fatalf("the answer names the store's address: %s", a.body)
		}
	}
}
