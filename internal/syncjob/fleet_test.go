package syncjob_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// replica is one gateway instance: its own Redis client (on the shared database), upstream client
// and engine.
type replica struct {
	rdb *redis.Client
	e   *syncjob.Engine
}

func newReplica(t *testing.T, shared *redis.Client, simURL, apiKey string, start bool, adjust func(*syncjob.Config)) *replica {
	t.Helper()
	return newReplicaVia(t, shared, "", simURL, apiKey, start, adjust)
}

// newReplicaVia connects the replica to Redis through addr ("" = directly).
func newReplicaVia(t *testing.T, shared *redis.Client, addr, simURL, apiKey string, start bool, adjust func(*syncjob.Config)) *replica {
	t.Helper()
	o := *shared.Options()
	if addr != "" {
		o.Addr = addr
	}
	rdb := redis.NewClient(&o)
	// Registered before the engine's cleanup, so it runs after it: the client must outlive the
	// engine (its workers hand their jobs back on shutdown).
	t.Cleanup(func() { _ = rdb.Close() })
	return &replica{rdb: rdb, e: newEngine(t, rdb, newUpstream(t, simURL, apiKey, rdb), start, adjust)}
}

// cutProxy forwards TCP connections to Redis until cut, after which every connection is dropped:
// to the replica behind it, Redis is gone, as to a process that was killed.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	isCut  bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isCut {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// TestSyncDedupeAcrossReplicas: concurrent sync requests for one session on two replicas create
// one job; once it ended, the next request creates a new one.
func TestSyncDedupeAcrossReplicas(t *testing.T) {
	t.Parallel()
	shared := redistest.New(t)
	s, url, key := startSim(t, sim.Options{Contacts: 400, Chats: 20, MessagesPerChat: 5})
	s.SetFaults(sim.Faults{Latency: 20 * time.Millisecond}) // the job runs for a while
	a := newReplica(t, shared, url, key, true, nil)
	b := newReplica(t, shared, url, key, true, nil)

	const n = 24
	type result struct {
		job     syncjob.Job
		created bool
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			e := a.e
			if i%2 == 1 {
				e = b.e
			}
			j, created, err := e.Sync(context.Background(), session, syncjob.Request{Resources: []string{"contacts"}})
			results[i] = result{j, created, err}
		})
	}
	close(start)
	wg.Wait()
	created, ids := 0, map[string]bool{}
	for _, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		ids[r.job.ID] = true
		if r.created {
			created++
		}
	}
	if created != 1 || len(ids) != 1 {
		t.Fatalf("%d requests created %d jobs and returned %d distinct ids, want 1 and 1", n, created, len(ids))
	}
	var id string
	for id = range ids {
	}
	j := waitJob(t, a.e, id, 30*time.Second)
	if j.State != syncjob.StateSucceeded || j.Progress["contacts"].Delivered != 400 || j.Attempts != 1 {
		t.Fatalf("the job: %s", dump(j))
	}
	jobs, err := b.e.SessionJobs(context.Background(), session, 10)
	if err != nil || len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("session jobs: %d, %v", len(jobs), err)
	}
	// The session is free again.
	next, created2, err := b.e.Sync(context.Background(), session, syncjob.Request{Resources: []string{"contacts"}})
	if err != nil || !created2 || next.ID == id {
		t.Fatalf("after the job ended: created %v, id %s, err %v", created2, next.ID, err)
	}
	waitJob(t, a.e, next.ID, 30*time.Second)
	jobs, _ = a.e.SessionJobs(context.Background(), session, 10)
	if len(jobs) != 2 || jobs[0].ID != next.ID {
		t.Fatalf("session jobs are not newest first: %v", jobs)
	}
}

// TestSyncStaleActiveJobFreesSession: a job whose queue task is gone (here its record was deleted)
// does not block the session forever: it is declared failed and a new job is created.
func TestSyncStaleActiveJobFreesSession(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	_, url, key := startSim(t, sim.Options{Contacts: 10, Chats: 2, MessagesPerChat: 1})
	e := newEngine(t, rdb, newUpstream(t, url, key, rdb), false, func(c *syncjob.Config) { c.StaleAfter = 50 * time.Millisecond })
	j, created, err := e.Sync(context.Background(), session, syncjob.Request{})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if n, err := rdb.Del(context.Background(), "jobs:{"+syncjob.DefaultQueue+"}:t:"+j.ID).Result(); err != nil || n != 1 {
		t.Fatalf("the job's task record was not deleted: %d %v", n, err)
	}
	time.Sleep(100 * time.Millisecond) // past StaleAfter (50 ms): the job without a task is now stale
	j2, created, err := e.Sync(context.Background(), session, syncjob.Request{})
	if err != nil || !created || j2.ID == j.ID {
		t.Fatalf("a new job was not created: %v %v", created, err)
	}
	old, err := e.Job(context.Background(), j.ID)
	if err != nil || old.State != syncjob.StateFailed || old.Error == "" {
		t.Fatalf("the stale job: %s (%v)", dump(old), err)
	}
}

// TestSyncWorkerKilledMidJob: the replica running a job dies abruptly (its Redis connections are
// cut, so it can neither write, renew its leases nor hand the task back); the other replica takes
// the job over once its task went ClaimIdle without a heartbeat, resumes from the checkpoint, and the sink receives every item at least once with exact final counts.
func TestSyncWorkerKilledMidJob(t *testing.T) {
	t.Parallel()
	shared := redistest.New(t)
	const contacts, chats, perChat = 3000, 150, 4
	_, url, key := startSim(t, sim.Options{Contacts: contacts, Chats: chats, MessagesPerChat: perChat})
	sk := newSink(t)
	withSink := func(c *syncjob.Config) {
		c.SinkURL, c.SigningSecret, c.SinkBatch = sk.srv.URL, sk.secret, 100
	}
	proxy := newCutProxy(t, shared.Options().Addr)
	a := newReplicaVia(t, shared, proxy.addr(), url, key, true, withSink)
	b := newReplica(t, shared, url, key, false, withSink)

	killed := make(chan struct{})
	var once sync.Once
	sk.mu.Lock()
	sk.onDelivery = func(batch crm.Batch) {
		// The 8th batch reaches the sink, and its sender dies before it records the delivery.
		sk.mu.Lock()
		n := sk.accepted
		sk.mu.Unlock()
		if n == 8 {
			once.Do(func() {
				proxy.cut()
				close(killed)
			})
		}
	}
	sk.mu.Unlock()

	j, _, err := a.e.Sync(context.Background(), session, syncjob.Request{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("replica A was never killed")
	}
	before, err := b.e.Job(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if before.State != syncjob.StateRunning {
		t.Fatalf("after the kill: %s", dump(before))
	}
	if err := b.e.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, b.e, j.ID, 45*time.Second)
	if done.State != syncjob.StateSucceeded || done.Attempts < 2 {
		t.Fatalf("the job after the takeover: %s", dump(done))
	}
	want := map[string]int{"contacts": contacts, "chats": chats, "messages": chats * perChat}
	dup := 0
	for res, n := range want {
		if got := done.Progress[res].Delivered; got != n {
			t.Errorf("%s: %d delivered, want %d", res, got, n)
		}
		if got := sk.distinct(res); got != n {
			t.Errorf("%s: the sink received %d distinct items, want %d", res, got, n)
		}
		dup += sk.received(res) - sk.distinct(res)
	}
	if dup > 100 {
		t.Errorf("%d items were delivered twice; at most the batch in flight (100) may be", dup)
	}
	if sk.badSig != 0 {
		t.Errorf("%d deliveries had a bad signature", sk.badSig)
	}
	t.Logf("takeover: %d attempts, %d items delivered twice", done.Attempts, dup)
}

// TestSyncShutdownHandsOver: a replica shut down mid-job checkpoints and hands the job back to
// the queue; another replica finishes it with exact counts.
func TestSyncShutdownHandsOver(t *testing.T) {
	t.Parallel()
	shared := redistest.New(t)
	const contacts = 2000
	s, url, key := startSim(t, sim.Options{Contacts: contacts, Chats: 30, MessagesPerChat: 3})
	s.SetFaults(sim.Faults{Latency: 10 * time.Millisecond})
	a := newReplica(t, shared, url, key, true, nil)
	b := newReplica(t, shared, url, key, false, nil)
	j, _, err := a.e.Sync(context.Background(), session, syncjob.Request{})
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 20*time.Second, "the job read a few pages", func() bool {
		cur, err := a.e.Job(context.Background(), j.ID)
		return err == nil && cur.Progress["contacts"].Pages >= 3
	})
	if err := b.e.Start(); err != nil {
		t.Fatal(err)
	}
	a.e.Shutdown()
	done := waitJob(t, b.e, j.ID, 30*time.Second)
	if done.State != syncjob.StateSucceeded || done.Attempts != 2 {
		t.Fatalf("after the handover: %s", dump(done))
	}
	if got := done.Progress["contacts"]; got.Delivered != contacts || got.Pages != contacts/100 || got.Fetched != contacts {
		t.Errorf("contacts after the handover: %+v", got)
	}
	if got := done.Progress["messages"].Delivered; got != 90 {
		t.Errorf("messages after the handover: %d, want 90", got)
	}
}

// Environment of the helper replica run by TestSyncReplicaSIGKILL in a child process.
const (
	envHelper     = "SYNCJOB_TEST_HELPER_REPLICA"
	envHelperConf = "SYNCJOB_TEST_HELPER_CONF"
)

type helperConf struct {
	Redis, SimURL, APIKey, SinkURL, SinkSecret string
	SinkBatch                                  int
}

// TestHelperReplica is not a test: it is the replica that TestSyncReplicaSIGKILL runs in a child
// process and kills. It runs an engine with workers until it is killed (or a minute passes).
func TestHelperReplica(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("run by TestSyncReplicaSIGKILL only")
	}
	var c helperConf
	if err := json.Unmarshal([]byte(os.Getenv(envHelperConf)), &c); err != nil {
		t.Fatal(err)
	}
	o, err := redis.ParseURL(c.Redis)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	e, err := syncjob.New(syncjob.Config{Redis: rdb, Upstream: newUpstream(t, c.SimURL, c.APIKey, rdb),
		SinkURL: c.SinkURL, SigningSecret: c.SinkSecret, SinkBatch: c.SinkBatch, PollInterval: 100 * time.Millisecond,
		OwnerLease: 3 * time.Second, ClaimIdle: 3 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("helper replica ready")
	time.Sleep(time.Minute) // the replica's lifetime: the test kills it before this ends
}

// TestSyncReplicaSIGKILL: a gateway replica in another process runs a job and is killed with
// SIGKILL mid-job; this process's replica takes the job over (once the task went ClaimIdle without
// a heartbeat) and finishes it: the sink receives every item at least once and the counts are exact.
func TestSyncReplicaSIGKILL(t *testing.T) {
	t.Parallel()
	shared := redistest.New(t)
	const contacts, chats, perChat = 3000, 150, 4
	_, url, key := startSim(t, sim.Options{Contacts: contacts, Chats: chats, MessagesPerChat: perChat})
	sk := newSink(t)
	conf, _ := json.Marshal(helperConf{Redis: fmt.Sprintf("redis://%s/%d", shared.Options().Addr, shared.Options().DB),
		SimURL: url, APIKey: key, SinkURL: sk.srv.URL, SinkSecret: sk.secret, SinkBatch: 100})
	withSink := func(c *syncjob.Config) { c.SinkURL, c.SigningSecret, c.SinkBatch = sk.srv.URL, sk.secret, 100 }
	local := newReplica(t, shared, url, key, false, withSink)

	eighth := make(chan struct{})
	var once sync.Once
	sk.mu.Lock()
	sk.onDelivery = func(crm.Batch) {
		sk.mu.Lock()
		n := sk.accepted
		sk.mu.Unlock()
		if n >= 8 {
			once.Do(func() { close(eighth) })
		}
	}
	sk.mu.Unlock()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReplica$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"=1", envHelperConf+"="+string(conf))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "helper replica ready") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the helper replica did not start")
	}
	j, created, err := local.e.Sync(context.Background(), session, syncjob.Request{})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	select {
	case <-eighth:
	case <-time.After(30 * time.Second):
		t.Fatal("the helper replica did not deliver")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	mid, err := local.e.Job(context.Background(), j.ID)
	if err != nil || mid.State != syncjob.StateRunning {
		t.Fatalf("after SIGKILL: %v %s", err, dump(mid))
	}
	if err := local.e.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, local.e, j.ID, 45*time.Second)
	if done.State != syncjob.StateSucceeded || done.Attempts < 2 {
		t.Fatalf("after the takeover: %s", dump(done))
	}
	dup := 0
	for res, n := range map[string]int{"contacts": contacts, "chats": chats, "messages": chats * perChat} {
		if got := done.Progress[res].Delivered; got != n {
			t.Errorf("%s: %d delivered, want %d", res, got, n)
		}
		if got := sk.distinct(res); got != n {
			t.Errorf("%s: the sink received %d distinct items, want %d", res, got, n)
		}
		dup += sk.received(res) - sk.distinct(res)
	}
	if dup > 100 {
		t.Errorf("%d items delivered twice; at most the batch in flight (100) may be", dup)
	}
	t.Logf("SIGKILL takeover: %d attempts, %d items delivered twice", done.Attempts, dup)
}
