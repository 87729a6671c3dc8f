package syncjob_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// TestSyncSinkDownForAWhile: the sink answers 503 for a while; the batches are retried until it
// takes them, every delivery is correctly signed, nothing is lost and nothing counted twice.
func TestSyncSinkDownForAWhile(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	_, url, key := startSim(t, sim.Options{Contacts: 700, Chats: 25, MessagesPerChat: 8})
	sk := newSink(t)
	sk.refuse = 5
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, func(c *syncjob.Config) {
		c.SinkURL, c.SigningSecret, c.SinkBatch = sk.srv.URL, sk.secret, 200
	})
	j := mustSync(t, e, syncjob.Request{})
	if j.State != syncjob.StateSucceeded {
		t.Fatalf("%s", dump(j))
	}
	for res, n := range map[string]int{"contacts": 700, "chats": 25, "messages": 200} {
		if got := j.Progress[res].Delivered; got != n {
			t.Errorf("%s: %d delivered, want %d", res, got, n)
		}
		if got, total := sk.distinct(res), sk.received(res); got != n || total != n {
			t.Errorf("%s: the sink holds %d distinct of %d received, want %d of %d", res, got, total, n, n)
		}
	}
	if sk.refusals != 5 || sk.badSig != 0 {
		t.Errorf("refusals %d, bad signatures %d", sk.refusals, sk.badSig)
	}
	// Everything was delivered, so the hashes moved: the next sync delivers nothing.
	j = mustSync(t, e, syncjob.Request{})
	for res, p := range j.Progress {
		if p.Delivered != 0 || p.New+p.Changed != 0 {
			t.Errorf("second sync: %s %+v", res, p)
		}
	}
}

// TestSyncSinkGivesUp: a sink that stays down fails the resources; their items stay with the job
// and, since the hashes did not move, the next sync delivers them all again.
func TestSyncSinkGivesUp(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	_, url, key := startSim(t, sim.Options{Contacts: 150, Chats: 5, MessagesPerChat: 2})
	sk := newSink(t)
	sk.refuse = 1 << 30
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, func(c *syncjob.Config) {
		c.SinkURL, c.SigningSecret, c.SinkAttempts = sk.srv.URL, sk.secret, 2
	})
	j := mustSync(t, e, syncjob.Request{Resources: []string{"contacts"}})
	p := j.Progress["contacts"]
	if j.State != syncjob.StateFailed || p.Phase != syncjob.PhaseFailed || p.Delivered != 0 || p.Failed != 150 ||
		len(p.Errors) == 0 || !strings.Contains(p.Errors[0], "503") {
		t.Fatalf("with the sink down: %s", dump(j))
	}
	if page, err := e.Items(context.Background(), j.ID, "contacts", "", 1000); err != nil || page.Total != 150 {
		t.Fatalf("the items were not kept: %d, %v", page.Total, err)
	}
	sk.mu.Lock()
	sk.refuse = 0
	sk.mu.Unlock()
	j = mustSync(t, e, syncjob.Request{Resources: []string{"contacts"}})
	if j.State != syncjob.StateSucceeded || j.Progress["contacts"].Delivered != 150 || sk.distinct("contacts") != 150 {
		t.Fatalf("after the sink came back: %s", dump(j))
	}
}

// TestSyncChatsRouteFails: the chats route answering 500 fails chats (error recorded) and messages
// (which need the chat list); contacts are still all delivered and the job is partial.
func TestSyncChatsRouteFails(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: 300, Chats: 20, MessagesPerChat: 3})
	s.SetFaults(sim.Faults{RouteStatus: map[string]int{"GET /api/messages/{sessionId}/chats": 500}})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, nil)
	j := mustSync(t, e, syncjob.Request{})
	if j.State != syncjob.StatePartial {
		t.Fatalf("state %s, want partial: %s", j.State, dump(j))
	}
	if p := j.Progress["contacts"]; p.Phase != syncjob.PhaseDone || p.Delivered != 300 {
		t.Errorf("contacts: %+v", p)
	}
	chats := j.Progress["chats"]
	if chats.Phase != syncjob.PhaseFailed || len(chats.Errors) == 0 || !strings.Contains(chats.Errors[0], "500") {
		t.Errorf("chats: %+v", chats)
	}
	if p := j.Progress["messages"]; p.Phase != syncjob.PhaseFailed || p.Pages != 0 {
		t.Errorf("messages: %+v", p)
	}
	if !strings.Contains(j.Error, "chats failed") {
		t.Errorf("job error %q", j.Error)
	}
}

// TestSyncCancel: a running job stops between pages and ends canceled; a queued job ends at once;
// both free the session.
func TestSyncCancel(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: 3000, Chats: 20, MessagesPerChat: 3})
	s.SetFaults(sim.Faults{Latency: 30 * time.Millisecond})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, nil)
	ctx := context.Background()
	j, _, err := e.Sync(ctx, session, syncjob.Request{})
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "two pages read", func() bool {
		cur, err := e.Job(ctx, j.ID)
		return err == nil && cur.Progress["contacts"].Pages >= 2
	})
	c, err := e.Cancel(ctx, j.ID)
	if err != nil || !c.CancelRequested {
		t.Fatalf("cancel: %v %+v", err, c)
	}
	done := waitJob(t, e, j.ID, 10*time.Second)
	p := done.Progress["contacts"]
	if done.State != syncjob.StateCanceled || p.Phase != syncjob.PhaseCanceled || p.Pages >= 30 ||
		done.Progress["messages"].Phase != syncjob.PhaseCanceled {
		t.Fatalf("after cancel: %s", dump(done))
	}
	if p.Delivered != p.Fetched || p.Delivered != 100*p.Pages {
		t.Errorf("the pages read before the cancel were not all delivered: %+v", p)
	}
	if _, err := e.Cancel(ctx, j.ID); err != nil {
		t.Errorf("canceling a canceled job: %v", err)
	}

	// A queued job (no worker here) ends at once. The first engine's workers stop first: they share
	// the queue and take a new task as soon as it is queued.
	e.Shutdown()
	idle := newEngine(t, rdb, newUpstream(t, url, key, rdb), false, nil)
	q, created, err := idle.Sync(ctx, "sales_team_x", syncjob.Request{})
	if !errors.Is(err, upstream.ErrSessionNotFound) {
		t.Fatalf("unknown session: %v %v", created, err)
	}
	qid, created, err := idle.EnqueueAuto(ctx, session)
	if err != nil || !created {
		t.Fatalf("enqueue: %v %v", created, err)
	}
	if q, err = idle.Job(ctx, qid); err != nil || q.Trigger != syncjob.TriggerAuto {
		t.Fatalf("the automatic sync: %v %s", err, dump(q))
	}
	if again, created, err := idle.EnqueueAuto(ctx, session); err != nil || created || again != qid {
		t.Fatalf("a second automatic sync while one is queued: %q %v %v", again, created, err)
	}
	c, err = idle.Cancel(ctx, q.ID)
	if err != nil || c.State != syncjob.StateCanceled {
		t.Fatalf("cancel of a queued job: %v %s", err, dump(c))
	}
	next, created, err := idle.Enqueue(ctx, session, syncjob.Request{})
	if err != nil || !created || next.ID == q.ID {
		t.Fatalf("the session was not freed: %v %v", created, err)
	}
	if _, err := e.Cancel(ctx, "no-such-job"); !errors.Is(err, syncjob.ErrJobNotFound) {
		t.Errorf("cancel of an unknown job: %v", err)
	}
}

// TestSyncSessionNotConnected: Sync checks the live status first.
func TestSyncSessionNotConnected(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	_, url, key := startSim(t, sim.Options{Contacts: 10, Chats: 2, MessagesPerChat: 1})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), false, nil)
	_, _, err := e.Sync(context.Background(), "support_desk", syncjob.Request{})
	if !errors.Is(err, upstream.ErrSessionNotConnected) {
		t.Fatalf("sync of a disconnected session: %v", err)
	}
	if _, _, err := e.Sync(context.Background(), session, syncjob.Request{Resources: []string{"groups"}}); !errors.Is(err, syncjob.ErrInvalidRequest) {
		t.Fatalf("unknown resource: %v", err)
	}
	if jobs, _ := e.SessionJobs(context.Background(), "support_desk", 10); len(jobs) != 0 {
		t.Fatalf("a job was created for a disconnected session")
	}
}

// TestSyncSessionDisconnectsMidJob: the session dropping mid-job fails what is left without
// calling the upstream again for each resource.
func TestSyncSessionDisconnectsMidJob(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: 1000, Chats: 20, MessagesPerChat: 3})
	s.SetFaults(sim.Faults{Latency: 20 * time.Millisecond})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), true, nil)
	ctx := context.Background()
	j, _, err := e.Sync(ctx, session, syncjob.Request{})
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "a page read", func() bool {
		cur, err := e.Job(ctx, j.ID)
		return err == nil && cur.Progress["contacts"].Pages >= 1
	})
	if err := s.SetSessionStatus(session, "disconnected"); err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, e, j.ID, 20*time.Second)
	if done.State != syncjob.StateFailed {
		t.Fatalf("%s", dump(done))
	}
	for _, res := range syncjob.AllResources {
		if p := done.Progress[res]; p.Phase != syncjob.PhaseFailed || len(p.Errors) == 0 {
			t.Errorf("%s: %+v", res, p)
		}
	}
	if c := s.Counters(); c.Requests["GET /api/messages/{sessionId}/chats"] > 1 {
		t.Errorf("the chats route was called %d times after the session dropped", c.Requests["GET /api/messages/{sessionId}/chats"])
	}
}
