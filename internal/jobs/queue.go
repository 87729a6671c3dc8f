// Package jobs is the gateway's background job queue: named queues on Redis Streams with
// at-least-once delivery, task ids unique while a task lives, retries with backoff, and the task
// of a worker that died (or lost Redis) taken over by another replica after a short idle time.
//
// Every key of one queue shares one hash tag and every script declares each key it touches in
// KEYS, so a queue works the same on a single Redis, behind Sentinel and on a Cluster (and on the
// embedded store of the demo). A worker survives Redis errors, failovers and reshardings by
// backing off and trying again; it never gives up on its own.
//
// The package knows nothing of what the tasks do: the sync engine and the webhook pipeline own
// their payloads, their handlers and what a final failure means to them.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Task states as Info reports them.
const (
	StatePending   = "pending"   // queued, not yet taken
	StateActive    = "active"    // a worker runs it
	StateRetry     = "retry"     // waiting for its next attempt
	StateCompleted = "completed" // its handler succeeded
	StateArchived  = "archived"  // given up: retries exhausted or a permanent failure
)

var (
	// ErrDuplicate: a task with this id is queued, running or waiting for a retry.
	ErrDuplicate = errors.New("jobs: a task with this id is already queued")
	// ErrNotFound: no task with this id, or its record has expired.
	ErrNotFound = errors.New("jobs: task not found")
	// ErrSkipRetry, wrapped in a handler's error, archives the task at once.
	ErrSkipRetry = errors.New("jobs: do not retry")
)

// group is the one consumer group of every queue: all replicas share the work.
const group = "workers"

// Queue is one named queue. It is safe for concurrent use; every replica builds its own over the
// shared Redis.
type Queue struct {
	rdb       redis.UniversalClient
	name      string
	prefix    string
	retention time.Duration
}

// NewQueue returns the queue of that name. Finished tasks stay readable through Info for
// retention (24 h when 0).
func NewQueue(rdb redis.UniversalClient, name string, retention time.Duration) *Queue {
	if retention <= 0 {
		retention = 24 * time.Hour
	}
	// The braces make the queue name the hash tag: every key of the queue is in one slot.
	return &Queue{rdb: rdb, name: name, prefix: "jobs:{" + name + "}:", retention: retention}
}

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

func (q *Queue) streamKey() string        { return q.prefix + "stream" }
func (q *Queue) delayedKey() string       { return q.prefix + "delayed" }
func (q *Queue) taskKey(id string) string { return q.prefix + "t:" + id }

// EnqueueOptions are the limits of one task.
type EnqueueOptions struct {
	// MaxRetry is how many failed attempts are retried (0: none).
	MaxRetry int
	// Timeout bounds one attempt (0: none).
	Timeout time.Duration
}

var enqueueScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st and st ~= 'completed' and st ~= 'archived' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'pending', 'payload', ARGV[2], 'retried', 0, 'max', ARGV[3], 'timeout', ARGV[4], 'trace', ARGV[5])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
return 1
`)

// Enqueue queues a task under an id of the caller's (ErrDuplicate while a task of that id is
// queued, running or waiting for a retry; a finished one is replaced). The task takes ctx's
// trace context and request id along (package telemetry): its attempts run as children of the
// span that queued it.
func (q *Queue) Enqueue(ctx context.Context, id string, payload []byte, o EnqueueOptions) error {
	if id == "" {
		return errors.New("jobs: empty task id")
	}
	n, err := enqueueScript.Run(ctx, q.rdb, []string{q.taskKey(id), q.streamKey()},
		id, payload, max(o.MaxRetry, 0), o.Timeout.Milliseconds(), telemetry.Inject(ctx).Encode()).Int()
	if err != nil {
		return fmt.Errorf("jobs: enqueue on %s: %w", q.name, err)
	}
	if n == 0 {
		return ErrDuplicate
	}
	return nil
}

// Info is what is known of a task.
type Info struct {
	State     string
	Retried   int
	MaxRetry  int
	LastError string
}

// Info returns a task's state (ErrNotFound when there is no such task).
func (q *Queue) Info(ctx context.Context, id string) (Info, error) {
	v, err := q.rdb.HMGet(ctx, q.taskKey(id), "state", "retried", "max", "err").Result()
	if err != nil {
		return Info{}, fmt.Errorf("jobs: task info: %w", err)
	}
	st, _ := v[0].(string)
	if st == "" {
		return Info{}, ErrNotFound
	}
	info := Info{State: st, Retried: atoi(v[1]), MaxRetry: atoi(v[2])}
	info.LastError, _ = v[3].(string)
	return info, nil
}

func atoi(v any) int {
	s, _ := v.(string)
	n, _ := strconv.Atoi(s)
	return n
}

// Task is one delivery of a task to a handler.
type Task struct {
	ID      string
	Payload []byte
	// Retried is how many failed attempts came before this one.
	Retried int
	// MaxRetry is how many failed attempts are retried.
	MaxRetry int

	msgID   string
	timeout time.Duration
	// trace is the context of the span that queued the task (telemetry.Carrier).
	trace telemetry.Carrier
}

var startScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st or st == 'completed' or st == 'archived' then return false end
redis.call('HSET', KEYS[1], 'state', 'active', 'msg', ARGV[1])
return redis.call('HMGET', KEYS[1], 'payload', 'retried', 'max', 'timeout', 'trace')
`)

// start marks the task of a delivered message active and reads it; ok is false when the message
// is stale (its task finished or expired): the message is then acknowledged and dropped.
func (q *Queue) start(ctx context.Context, msg redis.XMessage) (t Task, ok bool, err error) {
	id, _ := msg.Values["id"].(string)
	if id == "" {
		return Task{}, false, q.drop(ctx, msg.ID)
	}
	v, err := startScript.Run(ctx, q.rdb, []string{q.taskKey(id)}, msg.ID).Slice()
	if errors.Is(err, redis.Nil) {
		return Task{}, false, q.drop(ctx, msg.ID)
	}
	if err != nil {
		return Task{}, false, err
	}
	t = Task{ID: id, msgID: msg.ID, Retried: atoi(v[1]), MaxRetry: atoi(v[2]),
		timeout: time.Duration(atoi(v[3])) * time.Millisecond}
	if p, ok := v[0].(string); ok {
		t.Payload = []byte(p)
	}
	if tc, ok := v[4].(string); ok {
		t.trace = telemetry.DecodeCarrier(tc)
	}
	return t, true, nil
}

var dropScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
`)

func (q *Queue) drop(ctx context.Context, msgID string) error {
	return dropScript.Run(ctx, q.rdb, []string{q.streamKey()}, group, msgID).Err()
}

var completeScript = redis.NewScript(`
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'msg') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed')
redis.call('HDEL', KEYS[1], 'payload', 'err', 'trace')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

func (q *Queue) complete(ctx context.Context, t Task) error {
	return completeScript.Run(ctx, q.rdb, []string{q.taskKey(t.ID), q.streamKey()},
		group, t.msgID, q.retention.Milliseconds()).Err()
}

// Outcomes of a failed attempt.
const (
	outcomeRetry    = "retry"
	outcomeArchived = "archived"
	outcomeGone     = "gone"
)

var failScript = redis.NewScript(`
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local st = redis.call('HGET', KEYS[1], 'state')
if not st or st == 'completed' or st == 'archived' then return 'gone' end
if redis.call('HGET', KEYS[1], 'msg') ~= ARGV[2] then return 'gone' end
local retried = tonumber(redis.call('HGET', KEYS[1], 'retried') or '0')
if ARGV[4] == '1' then retried = retried + 1 end
local maxr = tonumber(redis.call('HGET', KEYS[1], 'max') or '0')
if ARGV[5] == '1' or retried > maxr then
  redis.call('HSET', KEYS[1], 'state', 'archived', 'retried', retried, 'err', ARGV[6])
  redis.call('HDEL', KEYS[1], 'payload', 'trace')
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return 'archived'
end
redis.call('HSET', KEYS[1], 'state', 'retry', 'retried', retried, 'err', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[8])
return 'retry'
`)

// fail records a failed attempt: the task waits until due for its next one, or is archived when
// counted takes it past its retries or skip is set. It returns the outcome.
func (q *Queue) fail(ctx context.Context, t Task, due time.Time, counted, skip bool, msg string) (string, error) {
	return failScript.Run(ctx, q.rdb, []string{q.taskKey(t.ID), q.streamKey(), q.delayedKey()},
		group, t.msgID, due.UnixMilli(), flag(counted), flag(skip), msg, q.retention.Milliseconds(), t.ID).Text()
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

var promoteScript = redis.NewScript(`
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('XADD', KEYS[2], '*', 'id', id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
`)

// promote moves the tasks whose retry is due (on Redis' clock) back into the stream.
func (q *Queue) promote(ctx context.Context) (int, error) {
	return promoteScript.Run(ctx, q.rdb, []string{q.delayedKey(), q.streamKey()}, 100).Int()
}

var heartbeatScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not p[1] or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
`)

// heartbeat shows that this consumer still works on a message (its idle time starts again), and
// reports false when the message is no longer this consumer's (another worker took it over).
func (q *Queue) heartbeat(ctx context.Context, msgID, consumer string) (bool, error) {
	n, err := heartbeatScript.Run(ctx, q.rdb, []string{q.streamKey()}, group, msgID, consumer).Int()
	return n == 1, err
}

// ensureGroup creates the queue's stream and consumer group when they are missing.
func (q *Queue) ensureGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.streamKey(), group, "0").Err()
	if err != nil && !isBusyGroup(err) {
		return fmt.Errorf("jobs: create consumer group of %s: %w", q.name, err)
	}
	return nil
}

func isBusyGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && len(re.Error()) >= 9 && re.Error()[:9] == "BUSYGROUP"
}

func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && len(re.Error()) >= 7 && re.Error()[:7] == "NOGROUP"
}
