package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/idempotency"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

var created = idempotency.Response{Status: http.StatusCreated, ContentType: "application/json", Body: []byte(`{"data":{"id":"3EB0"}}`)}

// counted returns a request that counts its runs and answers resp after delay.
func counted(n *atomic.Int64, resp idempotency.Response, err error, delay time.Duration) func(context.Context) (idempotency.Response, error) {
	return func(ctx context.Context) (idempotency.Response, error) {
		n.Add(1)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return idempotency.Response{}, ctx.Err()
		}
		return resp, err
	}
}

// runningAnswers is a go-redis hook that counts the answers "running" (the key is held by a
// request still running) a client receives: a duplicate told so is waiting.
type runningAnswers struct{ n atomic.Int64 }

func (h *runningAnswers) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *runningAnswers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*redis.Cmd); ok {
			if res, _ := c.Slice(); len(res) > 0 && res[0] == "running" {
				h.n.Add(1)
			}
		}
		return err
	}
}

func (h *runningAnswers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestReplay(t *testing.T) {
	rdb := redistest.New(t)
	s := idempotency.New(rdb)
	ctx := context.Background()
	fp := idempotency.Fingerprint("POST", "/v1/sessions/demo/messages", []byte(`{"to":"1","text":"a"}`))
	var runs atomic.Int64

	first, replayed, err := s.Do(ctx, "api_key/crm", "k1", fp, counted(&runs, created, nil, 0))
	if err != nil || replayed || first.Status != 201 {
		t.Fatalf("first = %+v, %v, %v", first, replayed, err)
	}
	again, replayed, err := s.Do(ctx, "api_key/crm", "k1", fp, counted(&runs, created, nil, 0))
	if err != nil || !replayed {
		t.Fatalf("repeat = %v, %v, want a replay", replayed, err)
	}
	if again.Status != first.Status || again.ContentType != first.ContentType || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("replayed %+v, want %+v", again, first)
	}
	if runs.Load() != 1 {
		t.Errorf("ran %d times, want 1", runs.Load())
	}

	// Another fingerprint with the same key: refused at once, not run.
	other := idempotency.Fingerprint("POST", "/v1/sessions/demo/messages", []byte(`{"to":"1","text":"b"}`))
	if _, _, err := s.Do(ctx, "api_key/crm", "k1", other, counted(&runs, created, nil, 0)); !errors.Is(err, idempotency.ErrKeyReused) {
		t.Errorf("other body = %v, want ErrKeyReused", err)
	}
	// Another caller with the same key and body: its own request.
	if _, replayed, err := s.Do(ctx, "jwt/crm", "k1", fp, counted(&runs, created, nil, 0)); err != nil || replayed {
		t.Errorf("another caller = %v, %v, want a run of its own", replayed, err)
	}
	if runs.Load() != 2 {
		t.Errorf("ran %d times, want 2", runs.Load())
	}

	// The stored answer lives about 24 h; nothing else is left in Redis.
	keys := rdb.Keys(ctx, idempotency.DefaultKeyPrefix+"*").Val()
	if len(keys) != 2 {
		t.Fatalf("keys = %v, want 2", keys)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < 23*time.Hour || ttl > 24*time.Hour {
			t.Errorf("TTL of %s = %s, want about 24h", k, ttl)
		}
		if strings.Contains(k, "k1") || strings.Contains(k, "crm") {
			t.Errorf("key %s holds the caller's text", k)
		}
	}
}

func TestFailuresAreNotStored(t *testing.T) {
	rdb := redistest.New(t)
	s := idempotency.New(rdb)
	ctx := context.Background()
	fp := idempotency.Fingerprint("POST", "/p", []byte("{}"))
	var runs atomic.Int64
	boom := errors.New("upstream unavailable")

	if _, _, err := s.Do(ctx, "c", "k", fp, counted(&runs, idempotency.Response{}, boom, 0)); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the request's own error", err)
	}
	if _, _, err := s.Do(ctx, "c", "k", fp, counted(&runs, idempotency.Response{Status: 502, Body: []byte("x")}, nil, 0)); err != nil {
		t.Fatalf("err = %v", err)
	}
	resp, replayed, err := s.Do(ctx, "c", "k", fp, counted(&runs, created, nil, 0))
	if err != nil || replayed || resp.Status != 201 {
		t.Fatalf("after failures: %+v, %v, %v; want a fresh run", resp, replayed, err)
	}
	if runs.Load() != 3 {
		t.Errorf("ran %d times, want 3 (failures release the key)", runs.Load())
	}

	// A panicking request releases the key too.
	func() {
		defer func() { _ = recover() }()
		_, _, _ = s.Do(ctx, "c", "panics", fp, func(context.Context) (idempotency.Response, error) { panic("boom") })
	}()
	if _, replayed, err := s.Do(ctx, "c", "panics", fp, counted(&runs, created, nil, 0)); err != nil || replayed {
		t.Errorf("after a panic: %v, %v; want a fresh run", replayed, err)
	}
}

// TestConcurrentDuplicates: 20 concurrent identical requests with one key run once; all get the
// same answer, 19 of them replayed.
func TestConcurrentDuplicates(t *testing.T) {
	rdb := redistest.New(t)
	s := idempotency.New(rdb)
	fp := idempotency.Fingerprint("POST", "/p", []byte("{}"))
	var runs, replays atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			<-start
			resp, replayed, err := s.Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 150*time.Millisecond))
			if err != nil || !bytes.Equal(resp.Body, created.Body) {
				errs <- err
				return
			}
			if replayed {
				replays.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a duplicate failed: %v", err)
	}
	if runs.Load() != 1 || replays.Load() != 19 {
		t.Errorf("runs = %d, replays = %d; want 1 and 19", runs.Load(), replays.Load())
	}
}

// TestWaitIsBounded: a duplicate of a request that runs longer than the wait gets ErrInProgress
// in about the wait; one that arrives after a failed first run runs itself.
func TestWaitIsBounded(t *testing.T) {
	rdb := redistest.New(t)
	s := idempotency.New(rdb, idempotency.WithWait(200*time.Millisecond))
	fp := idempotency.Fingerprint("POST", "/p", []byte("{}"))
	var runs atomic.Int64
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = s.Do(context.Background(), "c", "k", fp, func(context.Context) (idempotency.Response, error) {
			runs.Add(1)
			<-release
			return idempotency.Response{}, errors.New("failed")
		})
	}()
	wait.Until(t, 5*time.Second, "the first request to run", func() bool { return runs.Load() == 1 })

	began := time.Now()
	_, _, err := s.Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 0))
	if !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("duplicate = %v, want ErrInProgress", err)
	}
	if took := time.Since(began); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("duplicate gave up after %s, want about 200ms", took)
	}
	// Another body while the first runs: refused at once.
	if _, _, err := s.Do(context.Background(), "c", "k", "other", counted(&runs, created, nil, 0)); !errors.Is(err, idempotency.ErrKeyReused) {
		t.Errorf("other body while running = %v", err)
	}

	// A duplicate waiting when the first fails takes over and runs.
	dup := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = dup.Close() })
	toldRunning := &runningAnswers{}
	dup.AddHook(toldRunning)
	got := make(chan error, 1)
	go func() {
		_, replayed, err := idempotency.New(dup, idempotency.WithWait(5*time.Second)).Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 0))
		if err == nil && replayed {
			err = errors.New("replayed a failure")
		}
		got <- err
	}()
	wait.Until(t, 5*time.Second, "the duplicate told the first still runs", func() bool { return toldRunning.n.Load() > 0 })
	close(release)
	<-done
	if err := <-got; err != nil {
		t.Fatalf("waiting duplicate after the first failed: %v", err)
	}
	if runs.Load() != 2 {
		t.Errorf("runs = %d, want 2", runs.Load())
	}
}

// TestCallerCancelDoesNotCancelTheRun: the request runs to its end even when its caller gives
// up, and its answer is stored for the retry.
func TestCallerCancelDoesNotCancelTheRun(t *testing.T) {
	rdb := redistest.New(t)
	s := idempotency.New(rdb)
	fp := idempotency.Fingerprint("POST", "/p", []byte("{}"))
	var runs atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	run := counted(&runs, created, nil, 150*time.Millisecond)
	givesUp := func(rctx context.Context) (idempotency.Response, error) {
		cancel() // the caller gives up once the request runs
		return run(rctx)
	}
	if _, _, err := s.Do(ctx, "c", "k", fp, givesUp); err != nil {
		t.Fatalf("first = %v", err)
	}
	if _, replayed, err := s.Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 0)); err != nil || !replayed {
		t.Errorf("retry = %v, %v; want the stored answer", replayed, err)
	}
	if runs.Load() != 1 {
		t.Errorf("runs = %d, want 1", runs.Load())
	}
}

// TestLapsedClaim: the claim of a request that hangs (a replica stuck or dead) lapses after the
// lock TTL; a duplicate then runs, and the hung run's late answer does not overwrite the stored one.
func TestLapsedClaim(t *testing.T) {
	rdb := redistest.New(t)
	fp := idempotency.Fingerprint("POST", "/p", []byte("{}"))
	hung := idempotency.New(rdb, idempotency.WithLockTTL(100*time.Millisecond))
	late := idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte(`{"late":true}`)}
	var runs atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = hung.Do(context.Background(), "c", "k", fp, func(context.Context) (idempotency.Response, error) {
			runs.Add(1)
			time.Sleep(400 * time.Millisecond) // ignores its context, as a stuck call would
			return late, nil
		})
	}()
	wait.Until(t, 5*time.Second, "the first request to run", func() bool { return runs.Load() == 1 })

	s := idempotency.New(rdb, idempotency.WithWait(2*time.Second))
	resp, replayed, err := s.Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 0))
	if err != nil || replayed || runs.Load() != 2 {
		t.Fatalf("after the claim lapsed: %v, %v, runs %d; want a run of its own", replayed, err, runs.Load())
	}
	<-done
	again, replayed, err := s.Do(context.Background(), "c", "k", fp, counted(&runs, created, nil, 0))
	if err != nil || !replayed || !bytes.Equal(again.Body, resp.Body) {
		t.Errorf("stored answer = %s (%v, %v), want %s", again.Body, replayed, err, resp.Body)
	}
}

func TestRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	var runs atomic.Int64
	_, _, err := idempotency.New(rdb).Do(context.Background(), "c", "k", "fp", counted(&runs, created, nil, 0))
	if !errors.Is(err, idempotency.ErrUnavailable) || runs.Load() != 0 {
		t.Errorf("err = %v, runs = %d; want ErrUnavailable and no run", err, runs.Load())
	}
}

func TestFingerprint(t *testing.T) {
	a := idempotency.Fingerprint("POST", "/a", []byte("{}"))
	for _, other := range []string{
		idempotency.Fingerprint("PUT", "/a", []byte("{}")),
		idempotency.Fingerprint("POST", "/b", []byte("{}")),
		idempotency.Fingerprint("POST", "/a", []byte("{ }")),
		idempotency.Fingerprint("POST", "/a{}", nil),
	} {
		if other == a {
			t.Errorf("two requests share a fingerprint")
		}
	}
	if idempotency.Fingerprint("POST", "/a", []byte("{}")) != a || len(a) != 64 {
		t.Errorf("fingerprint not stable: %s", a)
	}
}
