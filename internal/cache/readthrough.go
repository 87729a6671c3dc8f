package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/inboxhub-gateway/gateway/internal/broadcast"
	"github.com/inboxhub-gateway/gateway/internal/lease"
	"github.com/inboxhub-gateway/gateway/internal/promreg"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// KeyPrefix starts every key the read cache writes in Redis. The version lets a release change
// the layout without reading an older one's values.
const KeyPrefix = "gw:cache:v1:"

// eventsChannel is the pub/sub channel (package broadcast: sharded on a cluster) on which
// replicas tell each other about writes ("set"), loads that stored nothing ("done") and
// invalidations ("inv"). Its notices are published after the scripts, not in them: on a cluster
// the channel's slot is not the scope's.
const eventsChannel = KeyPrefix + "events"

// ScopeSessions is the scope of the list of sessions (and of passthrough reads under
// /api/sessions that name a session by its numeric id): every session invalidation drops it.
const ScopeSessions = "sessions"

// SessionScope is the scope of everything cached about one session: status, QR, contacts,
// chats and messages pages. Invalidating it drops them all, fleet-wide.
func SessionScope(sessionID string) string { return "s:" + Part(sessionID) }

// Defaults of the options.
const (
	DefaultLocalSize    = 1024
	DefaultLocalMaxAge  = time.Second
	DefaultLockTTL      = 2 * time.Second
	DefaultLoadTimeout  = 20 * time.Second
	DefaultRedisTimeout = 500 * time.Millisecond
	DefaultPollInterval = 50 * time.Millisecond
)

// maxStoredValue is the largest encoded value the cache stores; a larger one is returned to its
// readers but not kept (Redis and the replicas' memory are not for bulk data).
const maxStoredValue = 2 << 20

// epochTTL bounds the life of a scope's invalidation counter (see Invalidate).
const epochTTL = 24 * time.Hour

// Policy says how long a kind of value is served from the cache.
//
// A value is a hit for Fresh after the upstream answered. For Revalidate after that it is served
// at once, marked stale, while one background refresh runs fleet-wide (stale-while-revalidate).
// Until StaleIfError after Fresh it is served, marked stale, when the upstream fails with
// ErrUnavailable, ErrTimeout or ErrRateLimited (stale-if-error); an answer such as
// SESSION_NOT_FOUND is never masked. Redis keeps a value for Fresh plus the longer of the two.
type Policy struct {
	Fresh        time.Duration
	Revalidate   time.Duration
	StaleIfError time.Duration
}

// keep is how long Redis keeps a value that is fresh for fresh.
func (p Policy) keep(fresh time.Duration) time.Duration {
	return fresh + max(p.Revalidate, p.StaleIfError)
}

// Key names a cached value. Scope groups the values that are invalidated together
// (SessionScope, ScopeSessions); Kind names the kind of value (the metric label); Name tells
// values of one kind and scope apart. Any part that is not made of safe characters is hashed
// (see Part), so caller text never reaches a Redis key as is. Keys never hold caller identity:
// the data is per session, and callers' scopes are checked before the cache is asked.
type Key struct {
	Scope string
	Kind  string
	Name  string
}

// safePart reports whether s may be a key part unhashed: up to 120 of A-Z a-z 0-9 _ . : = @ + -
// (a loop, not a regular expression: every cached read builds its key).
func safePart(s string) bool {
	if len(s) > 120 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '.' || c == ':' || c == '=' || c == '@' || c == '+' || c == '-':
		default:
			return false
		}
	}
	return true
}

// Part returns s when it is made of safe key characters (letters, digits, _ . : = @ + -, up to
// 120 of them), and otherwise "#" and a hash of it, so that free text (a search term) or a
// hostile id never appears in a Redis key and cannot break its hash tag. A hashed part cannot
// equal an unhashed one ('#' is not a safe character).
func Part(s string) string {
	if safePart(s) {
		return s
	}
	return "#" + Hash(s)
}

// Hash is a short hex SHA-256 of s, for key parts that carry free text.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

// Redis keys of a scope share a hash tag, so that the scripts below touch one cluster slot:
//
//	gw:cache:v1:{<scope>}:<kind>:<name>        the value: {"s": stored ms, "f": fresh-until ms, "v": JSON}
//	gw:cache:v1:{<scope>}:lock:<kind>:<name>   the fill lock (SET NX PX, a lease renewed while the
//	                                           load runs), held by the one loader
//	gw:cache:v1:{<scope>}:idx                  sorted set of the scope's value keys, by expiry
//	gw:cache:v1:{<scope>}:epoch                invalidation counter: a load stores its value only
//	                                           if no invalidation happened since it started
func scopeBase(scope string) string { return KeyPrefix + "{" + Part(scope) + "}:" }

func (k Key) redisKey() string { return string(k.appendRedisKey(nil)) }

// appendRedisKey appends k's Redis key to b (a lookup can then use a buffer on the stack).
func (k Key) appendRedisKey(b []byte) []byte {
	b = append(append(append(b, KeyPrefix+"{"...), Part(k.Scope)...), "}:"...)
	return append(append(append(b, Part(k.Kind)...), ':'), Part(k.Name)...)
}
func (k Key) lockKey() string {
	return scopeBase(k.Scope) + "lock:" + Part(k.Kind) + ":" + Part(k.Name)
}
func indexKey(scope string) string { return scopeBase(scope) + "idx" }
func epochKey(scope string) string { return scopeBase(scope) + "epoch" }

// entry is a value as stored in Redis.
type entry struct {
	Stored int64           `json:"s"` // Unix ms when the upstream answered
	Fresh  int64           `json:"f"` // Unix ms until which it is fresh
	Value  json.RawMessage `json:"v"`
	// Version is a hash of Value, computed once when the entry is made (see Info.Version);
	// entries written before it existed have none and get it when read.
	Version string `json:"h,omitempty"`
}

func (e *entry) stored() time.Time     { return time.UnixMilli(e.Stored) }
func (e *entry) freshUntil() time.Time { return time.UnixMilli(e.Fresh) }

// info is what a read answered with e tells its reader, at now.
func (e *entry) info(status Status, now time.Time) Info {
	return Info{Status: status, Age: max(now.Sub(e.stored()), 0), Stored: e.stored(), FreshUntil: e.freshUntil(), Version: e.Version}
}

// VersionOf names one encoded value: a hash of its bytes (base64url of 18 bytes of SHA-256). It
// is the Version of the values the cache keeps, and what handlers name their own encodings with.
func VersionOf(value []byte) string {
	sum := sha256.Sum256(value)
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

// Option configures a ReadThrough.
type Option func(*ReadThrough)

// WithLocal sizes the in-process layer: at most size values, each kept at most maxAge. A zero
// size or age turns the layer off. Default DefaultLocalSize values for DefaultLocalMaxAge.
func WithLocal(size int, maxAge time.Duration) Option {
	return func(rt *ReadThrough) { rt.local = newLocal(size, maxAge) }
}

// WithLockTTL is the lease of a key's fill lock: the loading replica renews it every third of it
// while its load runs (package lease), so a load may take as long as the load timeout allows,
// while a replica that dies mid-load blocks the others at most that long before one of them
// takes the lock and loads in its turn; default DefaultLockTTL (2 s).
func WithLockTTL(d time.Duration) Option { return func(rt *ReadThrough) { rt.lockTTL = d } }

// WithLoadTimeout bounds one upstream load shared by coalesced readers (it runs detached from any
// one reader's cancellation); default DefaultLoadTimeout.
func WithLoadTimeout(d time.Duration) Option { return func(rt *ReadThrough) { rt.loadTimeout = d } }

// WithRedisTimeout bounds every Redis command of the cache, so that a slow Redis costs a read
// little before it falls back to the upstream; default DefaultRedisTimeout.
func WithRedisTimeout(d time.Duration) Option { return func(rt *ReadThrough) { rt.redisTimeout = d } }

// WithPollInterval sets how often a reader waiting for another replica's load looks for the
// value when no pub/sub notice came; default DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(rt *ReadThrough) { rt.poll = d } }

// WithMetrics registers cache_requests_total{kind,result} and cache_coalesced_total{kind} on reg.
func WithMetrics(reg prometheus.Registerer) Option { return func(rt *ReadThrough) { rt.reg = reg } }

// WithLogger sets the logger for Redis failures and background refreshes.
func WithLogger(l *slog.Logger) Option { return func(rt *ReadThrough) { rt.log = l } }

// WithClock sets the time source that decides freshness (tests); default time.Now.
func WithClock(now func() time.Time) Option { return func(rt *ReadThrough) { rt.now = now } }

// ReadThrough is a read-through cache of upstream answers in Redis, shared by every replica, with
// a small in-process layer in front (see Policy for freshness and stale serving).
//
// Concurrent identical misses make one upstream call: within a process through singleflight, and
// across replicas through a short Redis lock per key whose losers wait for the winner's value
// (a pub/sub notice, or a short poll) instead of calling the upstream. A Redis failure never
// fails a read: the read goes to the upstream, and the failure is logged and counted.
//
// Use Read or ReadUntil for typed values; CachedUpstream wraps the upstream client with it.
type ReadThrough struct {
	rdb          redis.UniversalClient
	local        *local
	lockTTL      time.Duration
	loadTimeout  time.Duration
	redisTimeout time.Duration
	poll         time.Duration
	reg          prometheus.Registerer
	log          *slog.Logger
	now          func() time.Time
	metrics      *metrics
	id           string // this instance, to skip its own pub/sub notices

	flight     singleflight.Group
	refreshing sync.Map // Redis key -> struct{}: background refreshes running here

	waitMu  sync.Mutex
	waiters map[string]map[chan struct{}]struct{}

	subscribed atomic.Bool
	lastWarn   atomic.Int64 // Unix ns of the last Redis failure warning

	life   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	stop   context.CancelFunc
	pubsub atomic.Pointer[redis.PubSub]
}

// NewReadThrough returns a read cache on rdb and starts its pub/sub listener; call Close when done.
func NewReadThrough(rdb redis.UniversalClient, opts ...Option) (*ReadThrough, error) {
	rt := &ReadThrough{
		rdb:          rdb,
		local:        newLocal(DefaultLocalSize, DefaultLocalMaxAge),
		lockTTL:      DefaultLockTTL,
		loadTimeout:  DefaultLoadTimeout,
		redisTimeout: DefaultRedisTimeout,
		poll:         DefaultPollInterval,
		now:          time.Now,
		waiters:      map[string]map[chan struct{}]struct{}{},
		id:           randomToken(),
	}
	for _, o := range opts {
		if o != nil {
			o(rt)
		}
	}
	if rdb == nil {
		return nil, errors.New("cache: no Redis client")
	}
	if rt.lockTTL <= 0 || rt.loadTimeout <= 0 || rt.redisTimeout <= 0 || rt.poll <= 0 {
		return nil, errors.New("cache: lock TTL, load timeout, Redis timeout and poll interval must be positive")
	}
	if rt.log == nil {
		rt.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(rt.reg)
	if err != nil {
		return nil, err
	}
	rt.metrics = m
	ctx, cancel := context.WithCancel(context.Background())
	rt.stop = cancel
	rt.wg.Add(1)
	go rt.listen(ctx)
	return rt, nil
}

// Close stops the listener and waits for background refreshes to end.
func (rt *ReadThrough) Close() {
	rt.life.Lock()
	if rt.closed {
		rt.life.Unlock()
		return
	}
	rt.closed = true
	rt.life.Unlock()
	rt.stop()
	if ps := rt.pubsub.Load(); ps != nil {
		_ = ps.Close()
	}
	rt.wg.Wait()
}

// goBackground runs f on the cache's wait group unless the cache is closed.
func (rt *ReadThrough) goBackground(f func()) bool {
	rt.life.Lock()
	defer rt.life.Unlock()
	if rt.closed {
		return false
	}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		f()
	}()
	return true
}

// Read returns the value under key: from the cache when fresh enough (see Policy), otherwise
// from load, whose answer is cached (JSON-encoded) for pol.Fresh. Errors of load are returned
// as is, so callers see the upstream's typed errors. The read's Info goes to ctx's Recorder.
func Read[T any](ctx context.Context, rt *ReadThrough, key Key, pol Policy, load func(context.Context) (T, error)) (T, error) {
	return ReadUntil(ctx, rt, key, pol, load, nil)
}

// ReadUntil is Read for values that say how long they stay fresh (a QR lives until it expires):
// freshFor(v) replaces pol.Fresh; a value with freshFor(v) <= 0 is returned but not cached. A nil
// freshFor means pol.Fresh.
func ReadUntil[T any](ctx context.Context, rt *ReadThrough, key Key, pol Policy, load func(context.Context) (T, error),
	freshFor func(T) time.Duration) (T, error) {
	// The in-process layer first: a hit builds no load closure and no key string (the lookup
	// uses a key on the stack).
	var buf [128]byte
	if e, ok := rt.hit(ctx, key, key.appendRedisKey(buf[:0])); ok {
		return decode(ctx, rt, key, e.value, e, load)
	}
	raw, err := rt.get(ctx, key, pol, func(ctx context.Context) ([]byte, time.Duration, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, 0, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, 0, fmt.Errorf("cache: encode %s: %w", key.Kind, err)
		}
		fresh := pol.Fresh
		if freshFor != nil {
			fresh = freshFor(v)
		}
		return b, fresh, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(ctx, rt, key, raw, nil, load)
}

// decode is the value of raw: the one le (an in-process entry, or nil) memoises when it has one,
// else raw decoded (and memoised in le). A value this release cannot read is loaded again.
func decode[T any](ctx context.Context, rt *ReadThrough, key Key, raw []byte, le *localEntry, load func(context.Context) (T, error)) (T, error) {
	if le != nil {
		if v, ok := le.decoded.Load().(T); ok {
			return v, nil
		}
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		// A value this release cannot read (written by another one): ask the upstream.
		rt.redisFailed(key.Kind, fmt.Errorf("decode cached value: %w", err))
		return load(ctx)
	}
	if le != nil {
		le.decoded.CompareAndSwap(nil, v)
	}
	return v, nil
}

// loadFunc loads an encoded value and says how long it stays fresh (<= 0: do not store it).
type loadFunc func(ctx context.Context) ([]byte, time.Duration, error)

// result is the outcome of one resolution, shared by the readers coalesced on it.
type result struct {
	value    []byte
	info     Info
	waited   bool // the value came from another replica's load
	degraded bool // Redis failed; the upstream was asked directly
}

// get is the cache's read path past the in-process layer (see hit): one resolution per key in
// flight.
func (rt *ReadThrough) get(ctx context.Context, k Key, pol Policy, load loadFunc) ([]byte, error) {
	rk := k.redisKey()
	leader := false
	ch := rt.flight.DoChan(rk, func() (any, error) {
		leader = true
		// The load serves every coalesced reader: it must not end when the first one leaves.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rt.loadTimeout)
		defer cancel()
		return rt.resolve(fctx, k, rk, pol, load)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		res, _ := r.Val.(*result)
		if res == nil {
			res = &result{info: Info{Status: StatusMiss}}
		}
		switch {
		case res.degraded:
			rt.metrics.request(k.Kind, "error")
		default:
			rt.metrics.request(k.Kind, string(res.info.Status))
		}
		// Coalesced: answered by an upstream load that another reader made.
		if res.waited || (!leader && res.info.Status == StatusMiss) {
			rt.metrics.coalesced(k.Kind)
		}
		if r.Err != nil {
			return nil, r.Err
		}
		record(ctx, res.info)
		return res.value, nil
	}
}

// hit answers from the in-process layer (rk is k's Redis key) while the cache follows the
// notices that keep it true, counting and recording the hit.
func (rt *ReadThrough) hit(ctx context.Context, k Key, rk []byte) (*localEntry, bool) {
	if !rt.subscribed.Load() {
		return nil, false
	}
	now := rt.now()
	e, ok := rt.local.get(rk, now)
	if !ok {
		return nil, false
	}
	info := Info{Status: StatusHit, Age: max(now.Sub(e.stored), 0), Stored: e.stored, FreshUntil: e.fresh, Version: e.version}
	rt.metrics.request(k.Kind, string(StatusHit))
	record(ctx, info)
	return e, true
}

// resolve reads Redis and decides: fresh (hit), stale within Revalidate (serve, refresh in the
// background), or fill (load, with the fleet-wide lock).
func (rt *ReadThrough) resolve(ctx context.Context, k Key, rk string, pol Policy, load loadFunc) (*result, error) {
	gen := rt.local.generation(rk, Part(k.Scope))
	e, token, epoch, won, err := rt.readOrLock(ctx, k, rk)
	if err != nil {
		return rt.degraded(ctx, k, load, nil, err)
	}
	if won {
		// No value at all: this replica took the fill lock in the same round trip.
		return rt.loadAndStore(ctx, k, rk, pol, load, nil, token, epoch, gen)
	}
	var fallback *entry
	if e != nil {
		now := rt.now()
		fresh := e.freshUntil()
		switch {
		case now.Before(fresh):
			rt.local.put(gen, rk, Part(k.Scope), e.Value, e.stored(), fresh, now, e.Version)
			return &result{value: e.Value, info: e.info(StatusHit, now)}, nil
		case now.Before(fresh.Add(pol.Revalidate)):
			rt.revalidate(ctx, k, rk, pol, load)
			return &result{value: e.Value, info: e.info(StatusStale, now)}, nil
		case now.Before(fresh.Add(pol.StaleIfError)):
			fallback = e
		}
	}
	return rt.fill(ctx, k, rk, pol, load, fallback, gen)
}

// fill gets the value from the upstream once fleet-wide: the replica that takes the key's lock
// loads and stores it; the others wait for its notice (or poll) and read what it stored. When
// the winner stored nothing (its load failed), a waiter takes the lock in turn.
func (rt *ReadThrough) fill(ctx context.Context, k Key, rk string, pol Policy, load loadFunc, fallback *entry, gen uint64) (*result, error) {
	notice, unwait := rt.wait(rk)
	defer unwait()
	waited := false
	for {
		token, epoch, won, cur, err := rt.lock(ctx, k, rk)
		if err != nil {
			return rt.degraded(ctx, k, load, fallback, err)
		}
		now := rt.now()
		if cur != nil && now.Before(cur.freshUntil()) {
			if won {
				rt.unlock(ctx, k, token)
			}
			rt.local.put(gen, rk, Part(k.Scope), cur.Value, cur.stored(), cur.freshUntil(), now, cur.Version)
			info := cur.info(StatusHit, now)
			if waited { // another replica's load, made for this read: a miss, of that version
				info = Info{Status: StatusMiss, FreshUntil: cur.freshUntil(), Version: cur.Version}
			}
			return &result{value: cur.Value, info: info, waited: waited}, nil
		}
		if cur != nil && fallback == nil && now.Before(cur.freshUntil().Add(pol.StaleIfError)) {
			fallback = cur // stored while this read waited, and gone stale since
		}
		if won {
			return rt.loadAndStore(ctx, k, rk, pol, load, fallback, token, epoch, gen)
		}
		waited = true
		t := time.NewTimer(rt.poll)
		select {
		case <-notice:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if fallback != nil {
				return rt.stale(fallback), nil
			}
			return &result{info: Info{Status: StatusMiss}}, ctx.Err()
		}
		t.Stop()
	}
}

// loadAndStore runs the load under the key's lock (see loadLocked); when the upstream fails in a
// way that allows it, the stale fallback is served instead.
func (rt *ReadThrough) loadAndStore(ctx context.Context, k Key, rk string, pol Policy, load loadFunc,
	fallback *entry, token, epoch string, gen uint64) (*result, error) {
	value, stored, err := rt.loadLocked(ctx, k, rk, pol, load, token, epoch, gen)
	if err != nil {
		if fallback != nil && staleOnError(err) {
			return rt.stale(fallback), nil
		}
		return &result{info: Info{Status: StatusMiss}}, err
	}
	info := Info{Status: StatusMiss}
	if stored != nil { // a value that was not kept has no version: its readers cannot revalidate it
		info.FreshUntil, info.Version = stored.freshUntil(), stored.Version
	}
	return &result{value: value, info: info}, nil
}

// loadLocked loads a value while holding the key's lock, stores it (unless it is not to be cached,
// or an invalidation came first), releases the lock and notifies the waiting replicas. A Redis
// failure after the load only costs the storing: the value is returned. stored is the entry kept
// (or to be kept), nil when none is.
//
// While the in-process layer serves reads, the value goes there first and the reader has its
// answer before the store's round trip: a later read here finds the in-process copy, one on
// another replica finds the lock held and waits for the notice, as it would for a load. Otherwise
// the store comes first, so that the next read here does not wait for it. Likewise the lock's
// release after a load that stores nothing follows the answer only while notices are heard.
func (rt *ReadThrough) loadLocked(ctx context.Context, k Key, rk string, pol Policy, load loadFunc,
	token, epoch string, gen uint64) (value []byte, stored *entry, err error) {
	value, fresh, err := rt.loadLeased(ctx, k, token, load)
	if err != nil || fresh <= 0 || len(value) > maxStoredValue {
		release := func() { rt.release(ctx, k, token) }
		if rt.subscribed.Load() { // a read that finds the lock meanwhile hears the release's notice
			rt.afterAnswer(release)
		} else {
			release()
		}
		return value, nil, err
	}
	now := rt.now()
	e := &entry{Stored: now.UnixMilli(), Fresh: now.Add(fresh).UnixMilli(), Value: value, Version: VersionOf(value)}
	put := func() { rt.local.put(gen, rk, Part(k.Scope), value, now, e.freshUntil(), now, e.Version) }
	store := func() bool {
		kept, err := rt.store(ctx, k, rk, e, pol.keep(fresh), token, epoch)
		if err != nil {
			rt.redisFailed(k.Kind, err)
		}
		return kept
	}
	if !rt.local.enabled() || !rt.subscribed.Load() {
		if !store() {
			return value, nil, nil
		}
		put()
		return value, e, nil
	}
	put()
	rt.afterAnswer(func() {
		if !store() { // an invalidation came first (its notice drops the copy too), or Redis failed
			rt.local.drop(rk)
		}
	})
	return value, e, nil
}

// afterAnswer runs the Redis work that follows a load (storing, releasing the lock) without
// holding up the reader: in the background, or at once when the cache is closing.
func (rt *ReadThrough) afterAnswer(f func()) {
	if !rt.goBackground(f) {
		f()
	}
}

// loadLeased runs load while renewing the key's fill lock (token's), so that the lock outlives a
// slow load but not a dead loader. A lost lease does not stop the load: another replica may load
// too, and the store script keeps whichever value matches the epoch.
func (rt *ReadThrough) loadLeased(ctx context.Context, k Key, token string, load loadFunc) ([]byte, time.Duration, error) {
	kept := lease.Adopt(rt.rdb, k.lockKey(), token, rt.lockTTL).Start(ctx, lease.KeepOptions{})
	defer kept.Stop()
	return load(ctx)
}

func (rt *ReadThrough) stale(e *entry) *result {
	return &result{value: e.Value, info: e.info(StatusStale, rt.now())}
}

// staleOnError says whether an upstream failure may be answered with a stale value: the upstream
// is down, slow or over quota. An answer about the request (not found, not connected, refused
// credentials) is never masked.
func staleOnError(err error) bool {
	return errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrTimeout) ||
		errors.Is(err, upstream.ErrRateLimited)
}

// degraded answers a read without Redis: straight from the upstream.
func (rt *ReadThrough) degraded(ctx context.Context, k Key, load loadFunc, fallback *entry, redisErr error) (*result, error) {
	rt.redisFailed(k.Kind, redisErr)
	value, _, err := load(ctx)
	if err != nil {
		if fallback != nil && staleOnError(err) {
			res := rt.stale(fallback)
			res.degraded = true
			return res, nil
		}
		return &result{info: Info{Status: StatusMiss}, degraded: true}, err
	}
	return &result{value: value, info: Info{Status: StatusMiss}, degraded: true}, nil
}

// revalidate refreshes a stale value in the background, once: one goroutine per key here, and
// only if this replica takes the key's fill lock (another replica's load is as good).
func (rt *ReadThrough) revalidate(ctx context.Context, k Key, rk string, pol Policy, load loadFunc) {
	if _, busy := rt.refreshing.LoadOrStore(rk, struct{}{}); busy {
		return
	}
	base := context.WithoutCancel(ctx)
	started := rt.goBackground(func() {
		defer rt.refreshing.Delete(rk)
		ctx, cancel := context.WithTimeout(base, rt.loadTimeout)
		defer cancel()
		gen := rt.local.generation(rk, Part(k.Scope))
		token, epoch, won, cur, err := rt.lock(ctx, k, rk)
		if err != nil || !won {
			return
		}
		if cur != nil && rt.now().Before(cur.freshUntil()) {
			rt.unlock(ctx, k, token)
			return
		}
		if _, _, err := rt.loadLocked(ctx, k, rk, pol, load, token, epoch, gen); err != nil {
			rt.log.DebugContext(ctx, "background cache refresh failed", "kind", k.Kind, "error", err.Error())
		}
	})
	if !started {
		rt.refreshing.Delete(rk)
	}
}

// redisCtx bounds one Redis command. It is detached from the reader's cancellation, so that a
// lock is released and a value stored even when the reader that loaded it has gone.
func (rt *ReadThrough) redisCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), rt.redisTimeout)
}

func decodeEntry(b []byte) *entry {
	var e entry
	if json.Unmarshal(b, &e) != nil || len(e.Value) == 0 {
		return nil
	}
	if e.Version == "" {
		e.Version = VersionOf(e.Value)
	}
	return &e
}

// readOrLock reads the key's value; when there is none, it tries to take the key's fill lock and
// reads the scope's epoch in the same round trip, so that a cold miss costs one round trip before
// the load instead of two. won is true only when there was no value and the lock is now ours.
func (rt *ReadThrough) readOrLock(ctx context.Context, k Key, rk string) (e *entry, token, epoch string, won bool, err error) {
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	token = randomToken()
	res, err := readOrLockScript.Run(rctx, rt.rdb, []string{rk, k.lockKey(), epochKey(k.Scope)},
		token, rt.lockTTL.Milliseconds()).Slice()
	if err != nil || len(res) != 3 {
		if err == nil {
			err = errors.New("cache: unexpected answer of the read-or-lock script")
		}
		return nil, "", "", false, err
	}
	v, _ := res[0].(string)
	if v != "" {
		return decodeEntry([]byte(v)), "", "", false, nil
	}
	lockWon, _ := res[1].(int64)
	epoch, _ = res[2].(string)
	return nil, token, epoch, lockWon == 1, nil
}

// lock tries to take the key's fill lock and, in the same round trip, reads the current value
// and the scope's invalidation epoch (the value is stored only if the epoch has not moved).
func (rt *ReadThrough) lock(ctx context.Context, k Key, rk string) (token, epoch string, won bool, cur *entry, err error) {
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	token = randomToken()
	pipe := rt.rdb.Pipeline()
	setnx := pipe.SetNX(rctx, k.lockKey(), token, rt.lockTTL)
	get := pipe.Get(rctx, rk)
	ep := pipe.Get(rctx, epochKey(k.Scope))
	_, _ = pipe.Exec(rctx)
	if err := setnx.Err(); err != nil {
		return "", "", false, nil, err
	}
	b, gerr := get.Bytes()
	if gerr != nil && !errors.Is(gerr, redis.Nil) {
		return "", "", false, nil, gerr
	}
	if gerr == nil {
		cur = decodeEntry(b)
	}
	epoch, eerr := ep.Result()
	if eerr != nil && !errors.Is(eerr, redis.Nil) {
		return "", "", false, nil, eerr
	}
	return token, epoch, setnx.Val(), cur, nil
}

// Scripts. Each touches only the keys it is given, all of one scope (one hash tag, so one
// cluster slot); the notices follow them (see eventsChannel).
var (
	// readOrLockScript: KEYS value, lock, epoch; ARGV lock token, lock TTL ms. Answers {value, 0, ""}
	// when the value exists, else {"", 1 if the lock was taken else 0, epoch}.
	readOrLockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  return {v, 0, ''}
end
local won = 0
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  won = 1
end
return {'', won, redis.call('GET', KEYS[3]) or ''}
`)

	// storeScript: KEYS value, index, epoch, lock; ARGV expected epoch, entry, keep ms, now ms,
	// lock token, notices channel ("": none), notice when stored, notice when not. The value is
	// stored only when no invalidation happened since the load began; the lock is released if
	// still ours; the notice of the outcome is published on the channel. Answers 1 when the value
	// was stored.
	storeScript = redis.NewScript(`
local stored = 0
local epoch = redis.call('GET', KEYS[3]) or ''
if epoch == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[3]), KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
  stored = 1
end
if redis.call('GET', KEYS[4]) == ARGV[5] then
  redis.call('DEL', KEYS[4])
end
if ARGV[6] ~= '' then
  if stored == 1 then
    redis.call('PUBLISH', ARGV[6], ARGV[7])
  else
    redis.call('PUBLISH', ARGV[6], ARGV[8])
  end
end
return stored`)

	// unlockScript: KEYS lock; ARGV token. Releases the lock if still ours.
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

	// invalidateScript: KEYS index, epoch; ARGV epoch TTL ms. Moves the epoch (so loads in
	// flight store nothing from now on) and answers the scope's value keys, which Invalidate
	// then deletes, naming each one.
	invalidateScript = redis.NewScript(`
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)`)
)

// deleteBatch is how many value keys one DEL of an invalidation names.
const deleteBatch = 256

// Notices on eventsChannel: "<instance id> <op> <argument>".
const (
	opSet  = "set"  // a value was stored under the Redis key given
	opDone = "done" // a load of the key given ended without storing
	opInv  = "inv"  // the scope given was invalidated
)

func (rt *ReadThrough) notice(op, arg string) string { return rt.id + " " + op + " " + arg }

// store writes e under rk (see storeScript); stored is false when an invalidation came first.
func (rt *ReadThrough) store(ctx context.Context, k Key, rk string, e *entry, keep time.Duration, token, epoch string) (bool, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	// Outside a cluster the script publishes the notice itself: one round trip less. A cluster's
	// notices are sharded (SPUBLISH), which a script on the key's node cannot send.
	channel, sharded := eventsChannel, broadcast.Sharded(rt.rdb)
	if sharded {
		channel = ""
	}
	n, err := storeScript.Run(rctx, rt.rdb,
		[]string{rk, indexKey(k.Scope), epochKey(k.Scope), k.lockKey()},
		epoch, b, keep.Milliseconds(), time.Now().UnixMilli(), token,
		channel, rt.notice(opSet, rk), rt.notice(opDone, rk)).Int()
	if err != nil {
		return false, err
	}
	if sharded {
		op := opDone
		if n == 1 {
			op = opSet
		}
		if err := rt.publish(ctx, op, rk); err != nil {
			rt.redisFailed(k.Kind, err)
		}
	}
	return n == 1, nil
}

// release gives the lock back after a load that stored nothing, and wakes the waiters (one of
// them takes the lock in turn).
func (rt *ReadThrough) release(ctx context.Context, k Key, token string) {
	rt.unlock(ctx, k, token)
	if err := rt.publish(ctx, opDone, k.redisKey()); err != nil {
		rt.redisFailed(k.Kind, err)
	}
}

// publish sends a notice to every replica; a lost "set" or "done" costs a waiter at most its
// poll interval.
func (rt *ReadThrough) publish(ctx context.Context, op, arg string) error {
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	return broadcast.Publish(rctx, rt.rdb, eventsChannel, rt.notice(op, arg))
}

// unlock gives the lock back without a notice (nothing was loaded).
func (rt *ReadThrough) unlock(ctx context.Context, k Key, token string) {
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	if err := unlockScript.Run(rctx, rt.rdb, []string{k.lockKey()}, token).Err(); err != nil {
		rt.redisFailed(k.Kind, err)
	}
}

// Invalidate drops every cached value of the given scopes, fleet-wide: in Redis, in this
// process, and (through pub/sub) in every other replica's in-process layer. Loads that were in
// flight store nothing. Call it when the upstream state changed (a webhook, a connect, a send).
func (rt *ReadThrough) Invalidate(ctx context.Context, scopes ...string) error {
	var errs []error
	for _, scope := range scopes {
		if err := rt.invalidate(ctx, scope); err != nil {
			errs = append(errs, fmt.Errorf("cache: invalidate %s: %w", Part(scope), err))
		}
	}
	return errors.Join(errs...)
}

// invalidate drops one scope in three ordered steps, each in the scope's slot: move the epoch and
// read the index (from then on no load that began earlier stores), delete the values the index
// named (every value stored before the move is in it), then tell the replicas.
func (rt *ReadThrough) invalidate(ctx context.Context, scope string) error {
	rt.local.dropScope(Part(scope))
	rctx, cancel := rt.redisCtx(ctx)
	defer cancel()
	idx := indexKey(scope)
	keys, err := invalidateScript.Run(rctx, rt.rdb, []string{idx, epochKey(scope)}, epochTTL.Milliseconds()).StringSlice()
	if err != nil {
		return err
	}
	for batch := range slices.Chunk(keys, deleteBatch) {
		members := make([]any, len(batch))
		for i, k := range batch {
			members[i] = k
		}
		pipe := rt.rdb.Pipeline()
		pipe.Del(rctx, batch...)
		pipe.ZRem(rctx, idx, members...)
		if _, err := pipe.Exec(rctx); err != nil {
			return err
		}
	}
	return rt.publish(ctx, opInv, Part(scope))
}

// wait registers for notices about rk; the channel receives one (coalesced) signal per notice.
func (rt *ReadThrough) wait(rk string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	rt.waitMu.Lock()
	if rt.waiters[rk] == nil {
		rt.waiters[rk] = map[chan struct{}]struct{}{}
	}
	rt.waiters[rk][ch] = struct{}{}
	rt.waitMu.Unlock()
	return ch, func() {
		rt.waitMu.Lock()
		defer rt.waitMu.Unlock()
		delete(rt.waiters[rk], ch)
		if len(rt.waiters[rk]) == 0 {
			delete(rt.waiters, rk)
		}
	}
}

func (rt *ReadThrough) wake(rk string) {
	rt.waitMu.Lock()
	defer rt.waitMu.Unlock()
	for ch := range rt.waiters[rk] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// listen follows eventsChannel for as long as the cache is open. The in-process layer is used
// only while the subscription stands, and is emptied whenever it is (re)made or lost, since
// notices sent meanwhile are gone.
func (rt *ReadThrough) listen(ctx context.Context) {
	defer rt.wg.Done()
	bo := resubscribeBackOff()
	for ctx.Err() == nil {
		ps := broadcast.Subscribe(ctx, rt.rdb, eventsChannel)
		rt.pubsub.Store(ps)
		if rt.isClosed() { // Close ran between the check and the Store: it did not see ps
			_ = ps.Close()
			return
		}
		if rt.follow(ctx, ps) {
			bo.Reset()
		}
		rt.subscribed.Store(false)
		rt.local.reset()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// resubscribeBackOff is the wait before subscribing again after the subscription was lost: 50 ms,
// doubling up to 5 s, without jitter; reset once a subscription stands.
func resubscribeBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2,
		MaxInterval: 5 * time.Second}
}

// follow applies the notices of one subscription until it fails or the server ends it (a
// sharded channel's slot moved to another shard); it reports whether the subscription stood.
func (rt *ReadThrough) follow(ctx context.Context, ps *redis.PubSub) (stood bool) {
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return stood
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if !broadcast.Confirmed(m) {
				return stood
			}
			rt.local.reset()
			rt.subscribed.Store(true)
			stood = true
		case *redis.Message:
			rt.handle(m.Payload)
		}
	}
}

func (rt *ReadThrough) isClosed() bool {
	rt.life.Lock()
	defer rt.life.Unlock()
	return rt.closed
}

// handle applies one notice.
func (rt *ReadThrough) handle(payload string) {
	origin, rest, ok := strings.Cut(payload, " ")
	if !ok {
		return
	}
	op, arg, ok := strings.Cut(rest, " ")
	if !ok {
		return
	}
	switch op {
	case opSet:
		if origin != rt.id {
			rt.local.drop(arg)
		}
		rt.wake(arg)
	case opDone:
		rt.wake(arg)
	case opInv:
		rt.local.dropScope(arg)
	}
}

// redisFailed logs a Redis failure (at most every 10 seconds) and counts it.
func (rt *ReadThrough) redisFailed(kind string, err error) {
	rt.metrics.redisError(kind)
	now := time.Now().UnixNano()
	last := rt.lastWarn.Load()
	if now-last < int64(10*time.Second) || !rt.lastWarn.CompareAndSwap(last, now) {
		return
	}
	rt.log.Warn("read cache: Redis failed; reads go to the upstream meanwhile", "kind", kind, "error", err.Error())
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// metrics are the cache's counters.
type metrics struct {
	requests    *prometheus.CounterVec
	coalescedBy *prometheus.CounterVec
	redisErrors *prometheus.CounterVec

	results promreg.Children[[2]string, prometheus.Counter] // requests' children, resolved once: one per read
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cache_requests_total",
			Help: "Cached reads by kind and result: hit, miss, stale (served past freshness), error (Redis failed, answered from the upstream).",
		}, []string{"kind", "result"}),
		coalescedBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cache_coalesced_total",
			Help: "Cached reads answered by another read's upstream call (in this process or on another replica), by kind.",
		}, []string{"kind"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cache_redis_errors_total",
			Help: "Redis commands of the read cache that failed, by kind.",
		}, []string{"kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.coalescedBy, m.redisErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cache: metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) request(kind, result string) {
	m.results.Get([2]string{kind, result}, func(l [2]string) prometheus.Counter {
		return m.requests.WithLabelValues(l[0], l[1])
	}).Inc()
}
func (m *metrics) coalesced(kind string)  { m.coalescedBy.WithLabelValues(kind).Inc() }
func (m *metrics) redisError(kind string) { m.redisErrors.WithLabelValues(kind).Inc() }
