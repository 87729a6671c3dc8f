package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runWorkers runs the queue in the background until the test ends (or stop is called).
func runWorkers(t *testing.T, q *Queue, h Handler, o Options) (stop func()) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = q.Run(ctx, h, o) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func state(t *testing.T, q *Queue, id string) string {
	t.Helper()
	info, err := q.Info(context.Background(), id)
	if errors.Is(err, ErrNotFound) {
		return "none"
	}
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	return info.State
}

func TestRunsEachTaskOnceWithItsPayload(t *testing.T) {
	t.Parallel()
	q := NewQueue(redistest.New(t), "q1", 0)
	ctx := context.Background()
	const n = 50
	for i := range n {
		if err := q.Enqueue(ctx, fmt.Sprintf("task-%d", i), []byte(fmt.Sprintf("payload-%d", i)), EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, "task-0", []byte("again"), EnqueueOptions{}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a queued id enqueued again: %v, want ErrDuplicate", err)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	stop := runWorkers(t, q, func(_ context.Context, task Task) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := seen[task.ID]; dup {
			t.Errorf("task %s ran twice", task.ID)
		}
		seen[task.ID] = string(task.Payload)
		return nil
	}, Options{Concurrency: 4})
	wait.Until(t, 10*time.Second, "all tasks ran", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == n })
	for i := range n {
		if got, want := seen[fmt.Sprintf("task-%d", i)], fmt.Sprintf("payload-%d", i); got != want {
			t.Fatalf("task-%d ran with %q, want %q", i, got, want)
		}
	}
	wait.Until(t, 5*time.Second, "task-0 completed", func() bool { return state(t, q, "task-0") == StateCompleted })
	// A completed id may be used again.
	stop()
	if err := q.Enqueue(ctx, "task-0", []byte("again"), EnqueueOptions{}); err != nil {
		t.Fatalf("a completed id could not be enqueued again: %v", err)
	}
}

func TestRetriesThenArchives(t *testing.T) {
	t.Parallel()
	q := NewQueue(redistest.New(t), "q2", 0)
	ctx := context.Background()
	var flaky, broken atomic.Int32
	var archived []string
	var mu sync.Mutex
	runWorkers(t, q, func(_ context.Context, task Task) error {
		switch task.ID {
		case "flaky":
			if flaky.Add(1) <= 2 {
				return errors.New("not yet")
			}
			return nil
		case "permanent":
			return fmt.Errorf("bad payload: %w", ErrSkipRetry)
		default:
			broken.Add(1)
			return errors.New("always broken")
		}
	}, Options{Concurrency: 2, RetryDelay: func(int, error) time.Duration { return 10 * time.Millisecond },
		ClaimIdle: 300 * time.Millisecond,
		OnArchived: func(_ context.Context, task Task, _ error) {
			mu.Lock()
			archived = append(archived, task.ID)
			mu.Unlock()
		}})
	for _, id := range []string{"flaky", "broken", "permanent"} {
		if err := q.Enqueue(ctx, id, nil, EnqueueOptions{MaxRetry: 3}); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, 10*time.Second, "flaky completed", func() bool { return state(t, q, "flaky") == StateCompleted })
	wait.Until(t, 10*time.Second, "broken archived", func() bool { return state(t, q, "broken") == StateArchived })
	wait.Until(t, 10*time.Second, "permanent archived", func() bool { return state(t, q, "permanent") == StateArchived })
	if got := flaky.Load(); got != 3 {
		t.Errorf("flaky ran %d times, want 3", got)
	}
	if got := broken.Load(); got != 4 {
		t.Errorf("broken ran %d times, want 4 (1 + 3 retries)", got)
	}
	info, _ := q.Info(ctx, "broken")
	if info.Retried != 4 || info.LastError != "always broken" {
		t.Errorf("broken info %+v", info)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(archived) != 2 {
		t.Errorf("OnArchived called for %v, want broken and permanent once each", archived)
	}
}

func TestNotCountedErrorsDoNotUseRetries(t *testing.T) {
	t.Parallel()
	q := NewQueue(redistest.New(t), "q3", 0)
	errBusy := errors.New("busy")
	var runs atomic.Int32
	runWorkers(t, q, func(context.Context, Task) error {
		if runs.Add(1) <= 5 {
			return errBusy
		}
		return nil
	}, Options{IsFailure: func(err error) bool { return !errors.Is(err, errBusy) },
		RetryDelay: func(int, error) time.Duration { return 5 * time.Millisecond }, ClaimIdle: 300 * time.Millisecond})
	if err := q.Enqueue(context.Background(), "t", nil, EnqueueOptions{MaxRetry: 0}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "completed", func() bool { return state(t, q, "t") == StateCompleted })
}

// A worker that took a task and died (never acknowledged it, never showed life again) loses it to
// another worker after ClaimIdle.
func TestDeadWorkersTaskIsTakenOver(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	q := NewQueue(rdb, "q4", 0)
	ctx := context.Background()
	if err := q.Enqueue(ctx, "orphan", []byte("p"), EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := q.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	// The dead worker: reads the message and marks the task active, then vanishes.
	streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "dead-worker",
		Streams: []string{q.streamKey(), ">"}, Count: 1}).Result()
	if err != nil || len(streams[0].Messages) != 1 {
		t.Fatalf("dead worker read: %v %v", streams, err)
	}
	if _, ok, err := q.start(ctx, streams[0].Messages[0]); !ok || err != nil {
		t.Fatalf("dead worker start: %v %v", ok, err)
	}
	ran := make(chan string, 1)
	began := time.Now()
	runWorkers(t, q, func(_ context.Context, task Task) error { ran <- string(task.Payload); return nil },
		Options{ClaimIdle: 600 * time.Millisecond})
	select {
	case p := <-ran:
		if p != "p" {
			t.Fatalf("payload %q", p)
		}
		t.Logf("taken over %v after the worker started (ClaimIdle 600ms)", time.Since(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the dead worker's task was never taken over")
	}
	wait.Until(t, 5*time.Second, "completed", func() bool { return state(t, q, "orphan") == StateCompleted })
}

// A long task keeps its message while it runs (heartbeats), so no other worker takes it over.
func TestLongTaskIsNotTakenOverWhileAlive(t *testing.T) {
	t.Parallel()
	q := NewQueue(redistest.New(t), "q5", 0)
	var runs atomic.Int32
	release := make(chan struct{})
	h := func(ctx context.Context, _ Task) error {
		runs.Add(1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	o := Options{ClaimIdle: 300 * time.Millisecond, Concurrency: 2}
	runWorkers(t, q, h, o)
	runWorkers(t, q, h, o)
	if err := q.Enqueue(context.Background(), "long", nil, EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "started", func() bool { return runs.Load() == 1 })
	// Five claim periods: a worker that stopped showing life would have lost it by now.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if runs.Load() != 1 {
			t.Fatalf("a running task was taken over (%d runs)", runs.Load())
		}
		time.Sleep(20 * time.Millisecond) // lets time pass: the task is sampled while five claim periods go by
	}
	close(release)
	wait.Until(t, 5*time.Second, "completed", func() bool { return state(t, q, "long") == StateCompleted })
}

// Stopping a worker hands its running task back: another worker finishes it, soon.
func TestStoppingWorkerHandsItsTaskBack(t *testing.T) {
	t.Parallel()
	q := NewQueue(redistest.New(t), "q6", 0)
	started := make(chan struct{}, 1)
	stopA := runWorkers(t, q, func(ctx context.Context, _ Task) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, Options{IsFailure: func(err error) bool { return !errors.Is(err, context.Canceled) },
		RetryDelay: func(int, error) time.Duration { return 50 * time.Millisecond }})
	if err := q.Enqueue(context.Background(), "handed-back", nil, EnqueueOptions{MaxRetry: 0}); err != nil {
		t.Fatal(err)
	}
	<-started
	stopA()
	if s := state(t, q, "handed-back"); s != StateRetry {
		t.Fatalf("after the stop the task is %s, want retry", s)
	}
	done := make(chan struct{})
	runWorkers(t, q, func(context.Context, Task) error { close(done); return nil }, Options{ClaimIdle: time.Second})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handed-back task did not run on the other worker")
	}
	wait.Until(t, 5*time.Second, "completed", func() bool { return state(t, q, "handed-back") == StateCompleted })
	if info, _ := q.Info(context.Background(), "handed-back"); info.Retried != 0 {
		t.Errorf("a stop counted as a failed attempt: %+v", info)
	}
}

// Redis going away and coming back: the worker keeps running and takes new tasks afterwards.
func TestWorkerSurvivesARedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	opts, _ := redis.ParseURL(srv.URL())
	opts.MaxRetries = 0
	opts.DialTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	q := NewQueue(rdb, "q7", 0)
	var ran sync.Map
	runWorkers(t, q, func(_ context.Context, task Task) error { ran.Store(task.ID, true); return nil },
		Options{Block: 100 * time.Millisecond, ClaimIdle: 600 * time.Millisecond})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "before", nil, EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "before ran", func() bool { _, ok := ran.Load("before"); return ok })
	srv.Stop()
	if err := q.Enqueue(ctx, "during", nil, EnqueueOptions{}); err == nil {
		t.Fatal("enqueue succeeded while Redis was down")
	}
	srv.Restart(t)
	wait.Until(t, 10*time.Second, "enqueue after the restart", func() bool {
		return q.Enqueue(ctx, "after", nil, EnqueueOptions{}) == nil
	})
	wait.Until(t, 10*time.Second, "after ran", func() bool { _, ok := ran.Load("after"); return ok })
}

// The embedded store of the demo runs the same queue.
func TestEmbeddedStore(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	q := NewQueue(rdb, "q8", 0)
	var n atomic.Int32
	runWorkers(t, q, func(context.Context, Task) error {
		if n.Add(1) == 1 {
			return errors.New("first try fails")
		}
		return nil
	}, Options{RetryDelay: func(int, error) time.Duration { return 10 * time.Millisecond }, ClaimIdle: 300 * time.Millisecond,
		Block: 50 * time.Millisecond})
	if err := q.Enqueue(context.Background(), "x", nil, EnqueueOptions{MaxRetry: 2}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "completed", func() bool { return state(t, q, "x") == StateCompleted })
}
