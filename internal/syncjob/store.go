package syncjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/lease"
)

// DefaultKeyPrefix is the prefix of every Redis key of the sync engine. A prefix holds no braces:
// the keys carry their own hash tags (see keys).
const DefaultKeyPrefix = "inboxhub-gateway:sync:"

// keys names the Redis keys of the engine (see the package documentation for the layout). Every
// key of a session, its jobs' keys included, carries the session's hash tag {s:<session>}: a page
// of a job moves the session's hashes together with the job's cursor in one script, so they must
// share a Redis Cluster slot, while different sessions spread over the cluster. A job's only key
// of its own tag, {j:<job>}, names its session, for the routes that know only the job's id.
type keys struct{ prefix string }

func (k keys) session(sid string) string          { return k.prefix + "{s:" + sid + "}:" }
func (k keys) job(sid, id string) string          { return k.session(sid) + "job:" + id }
func (k keys) items(sid, id, res string) string   { return k.job(sid, id) + ":items:" + res }
func (k keys) pendingChats(sid, id string) string { return k.job(sid, id) + ":chats" }
func (k keys) marks(sid, id string) string        { return k.job(sid, id) + ":marks" }
func (k keys) owner(sid, id string) string        { return k.job(sid, id) + ":owner" }
func (k keys) active(sid string) string           { return k.session(sid) + "active" }
func (k keys) sessionJobs(sid string) string      { return k.session(sid) + "jobs" }
func (k keys) hashes(sid, resource string) string { return k.session(sid) + "hashes:" + resource }
func (k keys) chatState(sid string) string        { return k.session(sid) + "chatstate" }
func (k keys) jobSession(id string) string        { return k.prefix + "{j:" + id + "}:session" }

// Fields of a job's hash.
const (
	fMeta          = "meta"
	fState         = "state"
	fAttempts      = "attempts"
	fError         = "error"
	fStartedAt     = "startedAt"
	fFinishedAt    = "finishedAt"
	fUpdatedAt     = "updatedAt"
	fCancel        = "cancel"
	fRev           = "rev"
	fCheckpoint    = "checkpoint"
	fItemsExpireAt = "itemsExpireAt"
	fProgress      = "progress:" // + resource
	fSinkCursor    = "sink:"     // + resource: how many of the resource's items the sink acknowledged
)

// jobMeta is what does not change during a job's life.
type jobMeta struct {
	ID        string    `json:"id"`
	SessionID string    `json:"sessionId"`
	Resources []string  `json:"resources"`
	Full      bool      `json:"full"`
	Trigger   string    `json:"trigger"`
	CreatedAt time.Time `json:"createdAt"`
}

// acquireScript makes a job the session's active job unless another one, not yet ended, is. The
// caller read the active job first and names its record in KEYS, so that the script touches only
// declared keys; when the active job changed meanwhile the script does nothing and says so.
// KEYS: active, new job, session jobs, then the record of the job read as active (when there was
// one). ARGV: the active job read ("" = none), id, created ms, job TTL s, active TTL s, jobs kept
// per session, then field/value pairs of the new job.
// Answers {1, id} when created, {0, id of the running job} otherwise, {2, id} when the active job
// is no longer the one read.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {2, cur} end
if cur ~= '' then
  local st = redis.call('HGET', KEYS[4], 'state')
  if st == 'queued' or st == 'running' then
    return {0, cur}
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[5]))
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[6]) + 1))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return {1, ARGV[2]}
`)

// finishScript ends a job: it sets the final state and fields, frees the session for a next job
// and drops the job's work lists.
// KEYS: job, active, owner, pending chats, marks. ARGV: id, owner token ("" = the job must have no
// live owner), state, updated ms, job TTL s, then field/value pairs.
// Answers 1 when done, 0 when the job had already ended, -1 when another runner owns it, -2 when it
// does not exist.
var finishScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -2 end
local owner = redis.call('GET', KEYS[3])
if ARGV[2] == '' then
  if owner then return -1 end
elseif owner ~= ARGV[2] then
  return -1
end
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'updatedAt', ARGV[4], 'finishedAt', ARGV[4])
if #ARGV > 5 then
  local fields = {}
  for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if ARGV[2] ~= '' then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[4], KEYS[5])
return 1
`)

// cancelScript asks a job to stop; a queued job ends at once.
// KEYS: job, active. ARGV: id, now ms.
// Answers the state after the call, or false when the job does not exist.
var cancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return false end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'cancel', '1', 'updatedAt', ARGV[2])
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finishedAt', ARGV[2])
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  st = 'canceled'
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return st
`)

// fencedScript runs a batch of commands only while the caller still owns the job, so that a
// runner that lost its job (its lease expired and another replica took over) cannot write.
// KEYS: owner, job, then the keys of the batch. ARGV: token, write id (a write whose id is the
// job's lastWrite was applied already and is skipped), then for each command its argument count,
// its name, the index of its key among the batch's keys, and its other arguments.
// Answers -1 when the caller is not the owner, -2 when the job has ended (canceled while queued),
// else 1 when the job was asked to cancel, 0 if not.
var fencedScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local st = redis.call('HGET', KEYS[2], 'state')
if st ~= 'queued' and st ~= 'running' then return -2 end
if redis.call('HGET', KEYS[2], 'lastWrite') ~= ARGV[2] then
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {ARGV[i + 1], KEYS[2 + tonumber(ARGV[i + 2])]}
  for j = 3, n do args[j] = ARGV[i + j] end
  redis.call(unpack(args))
  i = i + n + 1
end
redis.call('HSET', KEYS[2], 'lastWrite', ARGV[2])
end
if redis.call('HGET', KEYS[2], 'cancel') == '1' then return 1 end
return 0
`)

// errLostOwnership: another runner owns the job now; this one must stop without writing.
var errLostOwnership = errors.New("syncjob: the job is owned by another runner")

// errJobEnded: the job ended under the runner (it was canceled while still queued).
var errJobEnded = errors.New("syncjob: the job has ended")

// batch collects commands for fencedScript. Every command names one key, declared to the script.
type batch struct {
	keys []string
	at   map[string]int // index of a key in keys, from 1
	args []any
}

// add appends the command name key args... to the batch.
func (b *batch) add(name, key string, args ...any) {
	i, ok := b.at[key]
	if !ok {
		if b.at == nil {
			b.at = map[string]int{}
		}
		b.keys = append(b.keys, key)
		i = len(b.keys)
		b.at[key] = i
	}
	b.args = append(b.args, len(args)+2, name, i)
	b.args = append(b.args, args...)
}

// store is the engine's Redis state.
type store struct {
	rdb    redis.UniversalClient
	k      keys
	jobTTL time.Duration
	// retryFor is how long a running job's Redis calls are tried again through Redis errors.
	retryFor time.Duration
}

// retryRedis runs op and, while it fails on Redis (a failover, a dropped connection), runs it
// again with exponential backoff for at most s.retryFor. The job's own outcomes (lost ownership,
// ended), redis.Nil and the end of ctx are returned at once.
func retryRedis[T any](ctx context.Context, s *store, op func() (T, error)) (T, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err != nil && (ctx.Err() != nil || errors.Is(err, errLostOwnership) || errors.Is(err, errJobEnded) ||
			errors.Is(err, redis.Nil)) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(max(s.retryFor, time.Millisecond)))
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func secs(d time.Duration) int64 { return max(1, int64(d/time.Second)) }

// create makes a job the active job of its session, or returns the job already queued or running.
// The job's id is first recorded as naming its session (see keys.jobSession).
func (s *store) create(ctx context.Context, m jobMeta, activeTTL time.Duration, keep int) (id string, created bool, err error) {
	meta, _ := json.Marshal(m)
	if err := s.rdb.Set(ctx, s.k.jobSession(m.ID), m.SessionID, s.jobTTL).Err(); err != nil {
		return "", false, fmt.Errorf("syncjob: create job: %w", err)
	}
	fields := []any{m.ID, m.CreatedAt.UnixMilli(), secs(s.jobTTL), secs(activeTTL), keep,
		fMeta, string(meta), fState, StateQueued, fAttempts, 0, fUpdatedAt, ms(m.CreatedAt), fRev, 1}
	for _, res := range m.Resources {
		p, _ := json.Marshal(Progress{Phase: PhasePending})
		fields = append(fields, fProgress+res, string(p))
	}
	active := s.k.active(m.SessionID)
	for range 5 {
		cur, err := s.rdb.Get(ctx, active).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", false, fmt.Errorf("syncjob: create job: %w", err)
		}
		keys := []string{active, s.k.job(m.SessionID, m.ID), s.k.sessionJobs(m.SessionID)}
		if cur != "" {
			keys = append(keys, s.k.job(m.SessionID, cur))
		}
		res, err := acquireScript.Run(ctx, s.rdb, keys, append([]any{cur}, fields...)...).Slice()
		if err != nil {
			return "", false, fmt.Errorf("syncjob: create job: %w", err)
		}
		if len(res) != 2 {
			return "", false, errors.New("syncjob: create job: unexpected answer")
		}
		n, _ := res[0].(int64)
		id, _ := res[1].(string)
		switch n {
		case 1:
			return id, true, nil
		case 0:
			s.rdb.Del(ctx, s.k.jobSession(m.ID))
			return id, false, nil
		}
	}
	s.rdb.Del(ctx, s.k.jobSession(m.ID))
	return "", false, errors.New("syncjob: create job: the session's active job kept changing")
}

// sessionOf returns the session of a job (ErrJobNotFound when the job is unknown or expired).
func (s *store) sessionOf(ctx context.Context, id string) (string, error) {
	sid, err := s.rdb.Get(ctx, s.k.jobSession(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrJobNotFound
	}
	if err != nil {
		return "", fmt.Errorf("syncjob: load job: %w", err)
	}
	return sid, nil
}

// load reads a job known only by its id.
func (s *store) load(ctx context.Context, id string) (Job, checkpoint, error) {
	sid, err := s.sessionOf(ctx, id)
	if err != nil {
		return Job{}, checkpoint{}, err
	}
	return s.loadIn(ctx, sid, id)
}

// loadIn reads a job of a known session.
func (s *store) loadIn(ctx context.Context, sessionID, id string) (Job, checkpoint, error) {
	h, err := s.rdb.HGetAll(ctx, s.k.job(sessionID, id)).Result()
	if err != nil {
		return Job{}, checkpoint{}, fmt.Errorf("syncjob: load job: %w", err)
	}
	if len(h) == 0 || h[fMeta] == "" {
		return Job{}, checkpoint{}, ErrJobNotFound
	}
	var m jobMeta
	if err := json.Unmarshal([]byte(h[fMeta]), &m); err != nil {
		return Job{}, checkpoint{}, fmt.Errorf("syncjob: job %s: %w", id, err)
	}
	if m.ID != id || m.SessionID != sessionID {
		return Job{}, checkpoint{}, ErrJobNotFound
	}
	j := Job{ID: m.ID, SessionID: m.SessionID, State: h[fState], Resources: m.Resources, Full: m.Full,
		Trigger: m.Trigger, CancelRequested: h[fCancel] == "1", Error: h[fError], CreatedAt: m.CreatedAt.UTC(),
		StartedAt: timeRef(fromMS(h[fStartedAt])), FinishedAt: timeRef(fromMS(h[fFinishedAt])),
		UpdatedAt: fromMS(h[fUpdatedAt]), ItemsExpireAt: timeRef(fromMS(h[fItemsExpireAt])),
		Progress: map[string]*Progress{}}
	j.Attempts, _ = strconv.Atoi(h[fAttempts])
	j.Revision, _ = strconv.ParseInt(h[fRev], 10, 64)
	for _, res := range m.Resources {
		p := &Progress{Phase: PhasePending}
		if raw := h[fProgress+res]; raw != "" {
			_ = json.Unmarshal([]byte(raw), p)
		}
		j.Progress[res] = p
	}
	var cp checkpoint
	if raw := h[fCheckpoint]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &cp)
	}
	cp.sinkCursor = map[string]int{}
	for _, res := range AllResources {
		if v := h[fSinkCursor+res]; v != "" {
			cp.sinkCursor[res], _ = strconv.Atoi(v)
		}
	}
	return j, cp, nil
}

// list returns the newest jobs of a session, newest first, dropping the ids of expired jobs.
func (s *store) list(ctx context.Context, sessionID string, limit int) ([]Job, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.k.sessionJobs(sessionID), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("syncjob: list jobs: %w", err)
	}
	out := make([]Job, 0, len(ids))
	for _, id := range ids {
		j, _, err := s.loadIn(ctx, sessionID, id)
		if errors.Is(err, ErrJobNotFound) {
			s.rdb.ZRem(ctx, s.k.sessionJobs(sessionID), id)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// fenced runs b while token owns the job; canceled reports that the job was asked to stop. Redis
// errors are tried again (retryRedis); the write carries an id, so that a write whose answer was
// lost is not applied twice.
func (s *store) fenced(ctx context.Context, j jobMeta, token string, b *batch) (canceled bool, err error) {
	args := append([]any{token, randomToken()}, b.args...)
	keys := append([]string{s.k.owner(j.SessionID, j.ID), s.k.job(j.SessionID, j.ID)}, b.keys...)
	n, err := retryRedis(ctx, s, func() (int64, error) {
		return fencedScript.Run(ctx, s.rdb, keys, args...).Int64()
	})
	if err != nil {
		return false, fmt.Errorf("syncjob: write progress: %w", err)
	}
	switch n {
	case -1:
		return false, errLostOwnership
	case -2:
		return false, errJobEnded
	}
	return n == 1, nil
}

// finish ends a job in state with extra fields; token "" finishes a job that no runner owns.
// ended is false when the job had already ended. The job's id keeps naming its session as long as
// its record is kept.
func (s *store) finish(ctx context.Context, j jobMeta, token, state string, now time.Time, fields ...any) (ended bool, err error) {
	args := append([]any{j.ID, token, state, ms(now), secs(s.jobTTL)}, fields...)
	n, err := finishScript.Run(ctx, s.rdb, []string{s.k.job(j.SessionID, j.ID), s.k.active(j.SessionID),
		s.k.owner(j.SessionID, j.ID), s.k.pendingChats(j.SessionID, j.ID), s.k.marks(j.SessionID, j.ID)}, args...).Int64()
	if err != nil {
		return false, fmt.Errorf("syncjob: finish job: %w", err)
	}
	switch n {
	case -2:
		return false, ErrJobNotFound
	case -1:
		return false, errLostOwnership
	case 1:
		s.rdb.Expire(ctx, s.k.jobSession(j.ID), s.jobTTL)
	}
	return n == 1, nil
}

// cancel asks a job to stop and returns its state after the call.
func (s *store) cancel(ctx context.Context, j Job, now time.Time) (string, error) {
	st, err := cancelScript.Run(ctx, s.rdb, []string{s.k.job(j.SessionID, j.ID), s.k.active(j.SessionID)}, j.ID, ms(now)).Text()
	if errors.Is(err, redis.Nil) {
		return "", ErrJobNotFound
	}
	if err != nil {
		return "", fmt.Errorf("syncjob: cancel job: %w", err)
	}
	return st, nil
}

// acquireOwner makes a new runner the job's owner for ttl (a lease on the owner key) if no live
// runner owns it; nil when one does.
func (s *store) acquireOwner(ctx context.Context, j jobMeta, ttl time.Duration) (*lease.Lease, error) {
	l := lease.New(s.rdb, s.k.owner(j.SessionID, j.ID), ttl)
	ok, err := l.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("syncjob: take job: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return l, nil
}

// ownerAlive reports whether a runner holds the job.
func (s *store) ownerAlive(ctx context.Context, j Job) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.k.owner(j.SessionID, j.ID)).Result()
	return n == 1, err
}
