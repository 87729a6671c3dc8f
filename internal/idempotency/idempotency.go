// Package idempotency makes a non-idempotent request (a WhatsApp send) safe to retry: a caller
// sends an Idempotency-Key with the request, and every repeat of the same key gets the first
// answer instead of running the request again.
//
// What is kept, in Redis (so every replica sees it), per caller and key: a fingerprint of the
// request (SHA-256 of method, path and canonical body) and, once the request succeeded, its answer
// (status, content type and body) for TTL (24 h by default). The rules:
//   - The first request with a key claims it (an atomic create in Redis, with a lease of LockTTL)
//     and runs. A 2xx answer is stored; any error or other answer releases the key, so that a retry
//     runs the request again (a failed send sent nothing worth remembering).
//   - A repeat with the same fingerprint gets the stored answer (Do reports replayed=true). A
//     repeat that arrives while the first still runs waits for it, polling with a short backoff,
//     for at most Wait; then it gets ErrInProgress.
//   - A repeat with another fingerprint gets ErrKeyReused, at once, whatever the first's state.
//   - Redis failing is ErrUnavailable: the request is not run, since running it without the
//     guarantee the caller asked for could deliver a message twice.
//
// The request runs on a context detached from the caller's cancellation (with its values, and
// bounded by LockTTL): a caller that gives up mid-send and retries with the same key gets the
// stored answer rather than a second message.
//
// It knows nothing of WhatsApp or of routes: it keys on the caller's name, the key and the
// request's fingerprint. It must not run a request when it cannot keep the promise (Redis down),
// nor keep an answer that was not a success.
package idempotency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
)

// Defaults of the options.
const (
	DefaultTTL       = 24 * time.Hour
	DefaultLockTTL   = 2 * time.Minute
	DefaultWait      = 20 * time.Second
	DefaultKeyPrefix = "inboxhub-gateway:idempotency:"
)

// Errors of Do.
var (
	// ErrKeyReused: the key was used before with another request (method, path or body).
	ErrKeyReused = errors.New("idempotency: key reused with a different request")
	// ErrInProgress: the first request with this key was still running when the wait ended.
	ErrInProgress = errors.New("idempotency: a request with this key is still in progress")
	// ErrUnavailable: the store (Redis) could not be used; the request was not run.
	ErrUnavailable = errors.New("idempotency: store unavailable")
)

// Response is an answer as it is stored and replayed.
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// Option configures a Store.
type Option func(*Store)

// WithTTL sets how long a stored answer is replayed (default DefaultTTL).
func WithTTL(d time.Duration) Option { return func(s *Store) { s.ttl = d } }

// WithLockTTL sets the lease of a running request: after it, a crashed replica's claim lapses and
// the key can be used again (default DefaultLockTTL). It also bounds the request's run time.
func WithLockTTL(d time.Duration) Option { return func(s *Store) { s.lockTTL = d } }

// WithWait sets how long a repeat waits for a running first request (default DefaultWait).
func WithWait(d time.Duration) Option { return func(s *Store) { s.wait = d } }

// WithKeyPrefix sets the prefix of the Redis keys (default DefaultKeyPrefix).
func WithKeyPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// WithLogger sets where failures to store or release a key are reported (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// Store keeps idempotency keys and answers in Redis. It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	ttl     time.Duration
	lockTTL time.Duration
	wait    time.Duration
	prefix  string
	log     *slog.Logger
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, ttl: DefaultTTL, lockTTL: DefaultLockTTL, wait: DefaultWait, prefix: DefaultKeyPrefix}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Fingerprint identifies a request by its method, path and canonical body (the body re-encoded so
// that whitespace and key order do not matter).
func Fingerprint(method, path string, canonicalBody []byte) string {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(canonicalBody)
	return hex.EncodeToString(h.Sum(nil))
}

// Do runs fn once per (scope, key) and fingerprint, as the package documentation describes, and
// returns its answer; replayed is true when the answer is a stored one. scope separates callers
// (two callers may pick the same key). fn's error is returned as is, and the key released.
func (s *Store) Do(ctx context.Context, scope, key, fingerprint string, fn func(context.Context) (Response, error)) (resp Response, replayed bool, err error) {
	rkey := s.redisKey(scope, key)
	owner := newOwner()
	deadline := time.Now().Add(s.wait)
	// Look again after 10 ms, then doubling up to every 200 ms.
	pause := &backoff.ExponentialBackOff{InitialInterval: 10 * time.Millisecond, Multiplier: 2,
		MaxInterval: 200 * time.Millisecond}
	for {
		st, stored, err := s.begin(ctx, rkey, fingerprint, owner)
		if err != nil {
			if ctx.Err() != nil {
				return Response{}, false, ctx.Err()
			}
			return Response{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		switch st {
		case stateClaimed:
			resp, err := s.run(ctx, rkey, owner, fn)
			return resp, false, err
		case stateMismatch:
			return Response{}, false, ErrKeyReused
		case stateDone:
			return stored, true, nil
		}
		// stateRunning: wait for the first request to finish (or to be released, or to lapse).
		if !time.Now().Before(deadline) {
			return Response{}, false, ErrInProgress
		}
		t := time.NewTimer(min(pause.NextBackOff(), time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return Response{}, false, ctx.Err()
		case <-t.C:
		}
	}
}

// run runs fn as the owner of the key, then stores a 2xx answer or releases the key.
func (s *Store) run(ctx context.Context, rkey, owner string, fn func(context.Context) (Response, error)) (resp Response, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lockTTL)
	defer cancel()
	finished := false
	defer func() {
		if !finished { // fn panicked: free the key for a retry, and let the panic go on
			s.release(rkey, owner)
		}
	}()
	resp, err = fn(rctx)
	finished = true
	if err != nil || resp.Status < 200 || resp.Status > 299 {
		s.release(rkey, owner)
		return resp, err
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	n, serr := completeScript.Run(sctx, s.rdb, []string{rkey}, owner, resp.Status, resp.ContentType, resp.Body,
		s.ttl.Milliseconds()).Int()
	switch {
	case serr != nil:
		// The request ran: its answer stands. Repeats wait, then the claim lapses after LockTTL.
		s.log.Error("idempotency: answer not stored", "error", serr)
	case n == 0:
		s.log.Warn("idempotency: the claim lapsed before the answer was stored (the request ran longer than the lock TTL)")
	}
	return resp, nil
}

func (s *Store) release(rkey, owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := releaseScript.Run(ctx, s.rdb, []string{rkey}, owner).Err(); err != nil {
		s.log.Error("idempotency: key not released; it frees itself after the lock TTL", "error", err)
	}
}

type state int

const (
	stateClaimed state = iota
	stateRunning
	stateDone
	stateMismatch
)

// begin claims the key or reads what it holds.
func (s *Store) begin(ctx context.Context, rkey, fingerprint, owner string) (state, Response, error) {
	res, err := beginScript.Run(ctx, s.rdb, []string{rkey}, fingerprint, owner, s.lockTTL.Milliseconds()).Slice()
	if err != nil {
		return 0, Response{}, err
	}
	if len(res) == 0 {
		return 0, Response{}, errors.New("empty script answer")
	}
	switch res[0] {
	case "claimed":
		return stateClaimed, Response{}, nil
	case "running":
		return stateRunning, Response{}, nil
	case "mismatch":
		return stateMismatch, Response{}, nil
	case "done":
		if len(res) != 4 {
			return 0, Response{}, errors.New("malformed stored answer")
		}
		status, err := strconv.Atoi(fmt.Sprint(res[1]))
		if err != nil || status < 200 || status > 299 {
			return 0, Response{}, errors.New("malformed stored answer")
		}
		ctype, _ := res[2].(string)
		body, _ := res[3].(string)
		return stateDone, Response{Status: status, ContentType: ctype, Body: []byte(body)}, nil
	}
	return 0, Response{}, fmt.Errorf("unexpected script answer %v", res[0])
}

// redisKey hashes scope and key, so that any caller name and key text make a short, safe key.
func (s *Store) redisKey(scope, key string) string {
	h := sha256.New()
	h.Write([]byte(strconv.Itoa(len(scope))))
	h.Write([]byte{':'})
	h.Write([]byte(scope))
	h.Write([]byte(key))
	return s.prefix + hex.EncodeToString(h.Sum(nil))
}

func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// beginScript claims KEYS[1] for fingerprint ARGV[1] and owner ARGV[2] with a lease of ARGV[3] ms,
// or says what it holds: {"claimed"}, {"mismatch"}, {"running"} or {"done", status, ctype, body}.
var beginScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed'}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then
  return {'mismatch'}
end
if st ~= 'done' then
  return {'running'}
end
local v = redis.call('HMGET', KEYS[1], 'status', 'ctype', 'body')
return {'done', v[1], v[2], v[3]}
`)

// completeScript stores the answer ARGV[2..4] on KEYS[1] for ARGV[5] ms if ARGV[1] still owns it.
var completeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'ctype', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// releaseScript deletes KEYS[1] if ARGV[1] still owns it.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
