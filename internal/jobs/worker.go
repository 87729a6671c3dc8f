package jobs

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Handler runs one attempt of a task. Its context ends when the attempt times out, when the
// worker stops, or when another worker took the task over; a handler should then return soon.
type Handler func(ctx context.Context, t Task) error

// Options say how a replica's workers run a queue.
type Options struct {
	// Concurrency is how many tasks run at once (1 when 0).
	Concurrency int
	// ClaimIdle is how long a delivered task may go without a sign of life from its worker before
	// another worker takes it over (15 s when 0). Running tasks show life every ClaimIdle/3.
	ClaimIdle time.Duration
	// Block is how long one read waits for new tasks (2 s when 0).
	Block time.Duration
	// RetryDelay is how long a failed task waits before its next attempt; retried counts the
	// failed attempts so far (exponential from 1 s to 1 min with jitter when nil).
	RetryDelay func(retried int, err error) time.Duration
	// IsFailure says whether an error counts against the task's retries (every error when nil).
	// An error that does not count is retried after RetryDelay all the same.
	IsFailure func(err error) bool
	// OnArchived is called once when a task is given up (retries exhausted or ErrSkipRetry).
	OnArchived func(ctx context.Context, t Task, err error)
	// Logger receives warnings about Redis trouble and failed attempts (slog.Default when nil).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = 15 * time.Second
	}
	if o.Block <= 0 {
		o.Block = 2 * time.Second
	}
	if o.RetryDelay == nil {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.IsFailure == nil {
		o.IsFailure = func(error) bool { return true }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// DefaultRetryDelay doubles from 1 s up to 1 min, with full jitter over the upper half.
func DefaultRetryDelay(retried int, _ error) time.Duration {
	return retrydelay.EqualJitter(retrydelay.Exponential(time.Second, time.Minute, retried+1))
}

// worker is one replica's set of workers on one queue.
type worker struct {
	q        *Queue
	h        Handler
	o        Options
	consumer string
	slots    chan struct{}
	running  sync.WaitGroup
}

// Run runs the queue's tasks with h until ctx ends, then waits for the running tasks to return
// (their contexts end with ctx) and hands each one back to the queue for its next attempt. Redis
// errors never end it: it backs off and tries again.
func (q *Queue) Run(ctx context.Context, h Handler, o Options) error {
	o.defaults()
	w := &worker{q: q, h: h, o: o, consumer: consumerName(), slots: make(chan struct{}, o.Concurrency)}
	w.loop(ctx)
	w.running.Wait()
	return nil
}

// Workers are one replica's workers on a queue, running in the background from Start until Stop.
type Workers struct {
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run returned
	log     *slog.Logger
}

// Start runs the queue's tasks with h in the background, as Run does, until ctx ends or Stop is
// called.
func (q *Queue) Start(ctx context.Context, h Handler, o Options) *Workers {
	o.defaults()
	ctx, cancel := context.WithCancel(ctx)
	w := &Workers{cancel: cancel, stopped: make(chan struct{}), log: o.Logger}
	go func() {
		defer close(w.stopped)
		_ = q.Run(ctx, h, o)
	}()
	return w
}

// Stop stops the workers and returns once they have handed their running tasks back to the queue
// (the tasks' contexts end now). When that takes longer than grace (when > 0), it logs a warning
// once and goes on waiting. The queue's Redis client must stay open until it returns.
func (w *Workers) Stop(grace time.Duration) {
	w.cancel()
	if grace > 0 {
		select {
		case <-w.stopped:
			return
		case <-time.After(grace):
			w.log.Warn("workers still running after the shutdown grace period; waiting for them")
		}
	}
	<-w.stopped
}

// consumerName names this worker in the consumer group: host, process and a random part, so that
// a restarted process never inherits the messages of its previous life.
func consumerName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}

// retrier is the backoff between two tries of a Redis call that failed.
func retrier() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	return b
}

// pause waits d or until ctx ends; it reports whether ctx is still alive.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// loop is the worker's one loop: while it has free slots it first does the queue's upkeep when
// due (due retries back into the stream, abandoned tasks taken over), then reads new tasks, and
// starts each task in its own goroutine.
func (w *worker) loop(ctx context.Context) {
	bo := retrier()
	every := w.o.ClaimIdle / 3
	block := min(w.o.Block, every)
	groupReady := false
	var lastUpkeep time.Time
	for ctx.Err() == nil {
		if !groupReady {
			if err := w.q.ensureGroup(ctx); err != nil {
				w.redisTrouble(ctx, "create group", err, bo)
				continue
			}
			groupReady = true
		}
		n := w.acquire(ctx)
		if n == 0 {
			return
		}
		if time.Since(lastUpkeep) >= every {
			lastUpkeep = time.Now()
			n -= w.upkeep(ctx, n)
			if n == 0 {
				continue
			}
		}
		streams, err := w.q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: w.consumer,
			Streams: []string{w.q.streamKey(), ">"}, Count: int64(n), Block: block}).Result()
		var msgs []redis.XMessage
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
		w.release(n - len(msgs))
		switch {
		case errors.Is(err, redis.Nil) || (err == nil && len(msgs) == 0):
			bo.Reset()
		case err != nil:
			if isNoGroup(err) {
				groupReady = false
			}
			w.redisTrouble(ctx, "read", err, bo)
		default:
			bo.Reset()
			for _, m := range msgs {
				w.spawn(ctx, m)
			}
		}
	}
}

// acquire waits for at least one free slot and takes every free one; 0 when ctx ended.
func (w *worker) acquire(ctx context.Context) int {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(w.slots) {
		select {
		case w.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (w *worker) release(n int) {
	for range n {
		<-w.slots
	}
}

func (w *worker) redisTrouble(ctx context.Context, what string, err error, bo *backoff.ExponentialBackOff) {
	if ctx.Err() != nil {
		return
	}
	w.o.Logger.Warn("job queue: redis error; trying again", "queue", w.q.name, "op", what, "error", err.Error())
	pause(ctx, bo.NextBackOff())
}

// upkeep moves due retries back into the stream and takes over, into the n free slots it is
// given, the messages no worker has shown life for during ClaimIdle. It returns how many slots
// it used.
func (w *worker) upkeep(ctx context.Context, n int) int {
	if _, err := w.q.promote(ctx); err != nil && ctx.Err() == nil {
		w.o.Logger.Warn("job queue: redis error moving due retries", "queue", w.q.name, "error", err.Error())
	}
	msgs, _, err := w.q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: w.q.streamKey(), Group: group,
		Consumer: w.consumer, MinIdle: w.o.ClaimIdle, Start: "0-0", Count: int64(n)}).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) && ctx.Err() == nil && !isNoGroup(err) {
			w.o.Logger.Warn("job queue: redis error claiming abandoned tasks", "queue", w.q.name, "error", err.Error())
		}
		return 0
	}
	for _, m := range msgs {
		w.o.Logger.Info("job queue: took over an abandoned task", "queue", w.q.name, "message", m.ID)
		w.spawn(ctx, m)
	}
	return len(msgs)
}

// spawn runs one delivered message in its own goroutine; the slot it holds is released at the end.
func (w *worker) spawn(ctx context.Context, m redis.XMessage) {
	w.running.Go(func() {
		defer w.release(1)
		w.process(ctx, m)
	})
}

// process runs one attempt: it marks the task active, runs the handler under a heartbeat, and
// records the outcome. Bookkeeping after the handler uses a context of its own, so that a stopping
// worker still hands its task back.
func (w *worker) process(ctx context.Context, m redis.XMessage) {
	t, ok, err := w.startWithRetry(ctx, m)
	if err != nil || !ok {
		return // a message not started stays pending and is claimed again after ClaimIdle
	}
	// The attempt continues the trace of whoever queued the task, in a span of its own.
	runCtx, span := telemetry.Start(telemetry.Extract(ctx, t.trace), "jobs process "+w.q.name,
		attribute.String("messaging.destination.name", w.q.name), attribute.Int("inboxhub.job.retried", t.Retried))
	defer span.End()
	runCtx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	if t.timeout > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithTimeout(runCtx, t.timeout)
		defer stop()
	}
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); w.keepAlive(runCtx, cancel, t) }()
	herr := w.run(runCtx, t)
	if herr != nil {
		span.SetStatus(codes.Error, "attempt failed")
	}
	cancel(nil)
	<-hbDone
	w.record(context.WithoutCancel(ctx), t, herr)
}

// run calls the handler, turning a panic into an error so that one bad task cannot stop a replica.
func (w *worker) run(ctx context.Context, t Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("jobs: handler panicked")
			w.o.Logger.Error("job handler panicked", "queue", w.q.name, "task", t.ID, "panic", r)
		}
	}()
	return w.h(ctx, t)
}

func (w *worker) startWithRetry(ctx context.Context, m redis.XMessage) (Task, bool, error) {
	bo := retrier()
	for {
		t, ok, err := w.q.start(ctx, m)
		if err == nil || ctx.Err() != nil {
			return t, ok, err
		}
		w.redisTrouble(ctx, "start task", err, bo)
	}
}

// keepAlive shows life for the running task every ClaimIdle/3 and cancels it when another worker
// has taken it over.
func (w *worker) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, t Task) {
	tick := time.NewTicker(w.o.ClaimIdle / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		mine, err := w.q.heartbeat(ctx, t.msgID, w.consumer)
		if err == nil && !mine {
			w.o.Logger.Warn("job queue: task taken over by another worker", "queue", w.q.name, "task", t.ID)
			cancel(errTakenOver)
			return
		}
	}
}

var errTakenOver = errors.New("jobs: task taken over by another worker")

// record writes the attempt's outcome, trying again through Redis errors for a while; when Redis
// stays away the message stays pending and another worker (or this one) takes it over later.
func (w *worker) record(ctx context.Context, t Task, herr error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.ClaimIdle)
	defer cancel()
	bo := retrier()
	for {
		err := w.recordOnce(ctx, t, herr)
		if err == nil || ctx.Err() != nil {
			return
		}
		w.redisTrouble(ctx, "record outcome", err, bo)
	}
}

func (w *worker) recordOnce(ctx context.Context, t Task, herr error) error {
	if herr == nil {
		return w.q.complete(ctx, t)
	}
	counted := w.o.IsFailure(herr) && !errors.Is(herr, errTakenOver)
	skip := errors.Is(herr, ErrSkipRetry)
	retried := t.Retried
	if counted {
		retried++
	}
	due := time.Now().Add(w.o.RetryDelay(retried, herr))
	outcome, err := w.q.fail(ctx, t, due, counted, skip, clip.Bytes(herr.Error(), 500, ""))
	if err != nil {
		return err
	}
	if counted {
		w.o.Logger.Warn("job attempt failed", "queue", w.q.name, "task", t.ID, "retried", retried,
			"maxRetry", t.MaxRetry, "outcome", outcome, "error", herr.Error())
	}
	if outcome == outcomeArchived && w.o.OnArchived != nil {
		t.Retried = retried
		w.o.OnArchived(ctx, t, herr)
	}
	return nil
}
