// Package tokens keeps the gateway's one upstream bearer token for the whole fleet. The token lives
// in Redis (AES-GCM encrypted when a key is configured) and in each process's memory, so a request
// reads it without a Redis round trip; at most one login or refresh runs fleet-wide at a time (an
// in-process singleflight plus a Redis lease that is extended while held); it is refreshed in the
// background before it expires; a token the upstream rejected is dropped by generation, so a late
// rejection cannot throw away a newer token; rejected credentials back off instead of storming the
// upstream's 5-logins-per-15-minutes limit; and a Redis outage is never taken for bad credentials.
//
// It must not write a token to a log line, an error or a metric (logs carry Fingerprint), log in
// or refresh without holding the fleet's renewal lease (except at most once a minute per process
// while Redis is unreachable), or keep the token in Redis unencrypted when a key is configured.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/inboxhub-gateway/gateway/internal/broadcast"
	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/lease"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Authenticator is the part of the upstream client that obtains tokens. Login fails with an error
// matching upstream.ErrAuthFailed when the credentials are rejected; RefreshToken fails with one
// matching upstream.ErrUnauthorized when the refresh token is. Transient failures match
// upstream.ErrUnavailable, ErrTimeout or ErrRateLimited.
type Authenticator interface {
	Login(ctx context.Context) (upstream.TokenSet, error)
	RefreshToken(ctx context.Context, refreshToken string) (upstream.TokenSet, error)
}

var (
	// ErrStoreUnavailable says Redis cannot be reached and this process may not obtain a token
	// without it right now (it renews without the fleet lock at most once per outage interval).
	ErrStoreUnavailable = problem.Sentinel("tokens: token store unavailable", problem.KindTokenStoreUnavailable)
	// ErrWaitTimeout says no valid token appeared within the maximum wait while another process
	// held the renewal lock.
	ErrWaitTimeout = problem.Sentinel("tokens: timed out waiting for a token", problem.KindTimeout)

	errLockLost = errors.New("tokens: renewal lock lost")
)

// States reported by Status.
const (
	StateValid            = "valid"             // a token is held and not yet due for refresh
	StateExpiring         = "expiring"          // a token is held, usable, and due for refresh
	StateNone             = "none"              // no usable token is held
	StateAuthFailed       = "auth_failed"       // the upstream rejected the credentials; logins back off
	StateRedisUnavailable = "redis_unavailable" // Redis cannot be reached; the memory token is served
)

// Status describes the token for /readyz and logs; it holds no secret.
type Status struct {
	// State is one of the State* constants; the first that applies of auth_failed,
	// redis_unavailable, valid, expiring, none.
	State string `json:"state"`
	// ExpiresAt and TimeLeft describe the token held in memory (TimeLeft is 0 once it expired or
	// was rejected).
	ExpiresAt time.Time     `json:"expiresAt,omitzero"`
	TimeLeft  time.Duration `json:"timeLeft"`
	// Generation and Fingerprint identify that token without revealing it.
	Generation  int64  `json:"generation"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// LastRefreshError is the last failed login or refresh of the fleet, cleared by a success.
	LastRefreshError string `json:"lastRefreshError,omitempty"`
	// LastRefreshAt is when the token held was obtained.
	LastRefreshAt time.Time `json:"lastRefreshAt,omitzero"`
	// NextLoginAllowedAt is set while logins back off after rejected credentials.
	NextLoginAllowedAt time.Time `json:"nextLoginAllowedAt,omitzero"`
	// StoreError is the last Redis error while Redis is failing.
	StoreError string `json:"storeError,omitempty"`
}

var _ upstream.TokenSource = (*Source)(nil)

// Source hands out the upstream bearer token; it implements upstream.TokenSource. Create it
// with New, run Start in a goroutine for background refresh, and Close it (or end Start's context)
// on shutdown. It is safe for concurrent use.
type Source struct {
	cfg     config
	rdb     redis.UniversalClient
	auth    Authenticator
	log     *slog.Logger
	seal    *sealer
	m       *metrics
	scripts scripts

	key, lockKey, channel string

	// cur is the token of the request path: an immutable value swapped atomically, so Token reads
	// it without a lock, a Redis call or an allocation.
	cur     atomic.Pointer[token]
	flights singleflight.Group

	mu   sync.Mutex
	meta meta

	life context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// meta is what the Source knows besides the token, guarded by Source.mu.
type meta struct {
	failN        int       // consecutive rejected logins
	failUntil    time.Time // no login before this
	failAt       time.Time
	failLocal    bool      // recorded while Redis was unreachable, so Redis does not know it
	retryN       int       // consecutive transient failures
	retryAt      time.Time // no login or refresh before this
	lastErr      string
	lastErrAt    time.Time
	storeErr     string    // non-empty while Redis fails
	storeRetryAt time.Time // the request path leaves Redis alone until then
	dirty        bool      // the memory token was obtained without Redis and is not stored yet
	lastUnlocked time.Time // the last renewal without the Redis lock
}

// token is one access token as held in memory. It is never changed once published in cur.
type token struct {
	tok         upstream.AccessToken
	refresh     string
	noRefresh   bool // the refresh token was rejected
	revoked     bool // the upstream rejected the access token
	obtainedAt  time.Time
	expiresAt   time.Time
	usableUntil time.Time // expiresAt less a margin, so a token does not expire in flight
	refreshAt   time.Time // when the background refresher renews it
	fp          string
}

type acceptFunc func(t *token, now time.Time) bool

// New returns a Source that keeps its token in rdb and obtains it from auth. It does not contact
// Redis or the upstream; the first Token call or Start does.
func New(rdb redis.UniversalClient, auth Authenticator, opts ...Option) (*Source, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	var errs []error
	if rdb == nil {
		errs = append(errs, errors.New("redis client is nil"))
	}
	if auth == nil {
		errs = append(errs, errors.New("authenticator is nil"))
	}
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	seal, err := newSealer(cfg.currentKey, cfg.keys)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	s := &Source{
		cfg:     cfg,
		rdb:     rdb,
		auth:    auth,
		log:     cfg.logger,
		seal:    seal,
		scripts: newScripts(),
		key:     cfg.prefix,
		lockKey: cfg.prefix + ":lock",
		channel: cfg.prefix + ":updated",
	}
	s.life, s.stop = context.WithCancel(context.Background())
	if s.m, err = newMetrics(cfg.registerer, s); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// Encrypted reports whether tokens are encrypted at rest; startup warns when they are not.
func (s *Source) Encrypted() bool { return s.seal != nil }

// Token returns a valid bearer token. The one held in memory is returned at once; otherwise the
// token is read from Redis, or obtained from the upstream by exactly one process of the fleet while
// the others wait for it (at most the max wait, or until ctx ends). While the upstream rejects the
// credentials it fails at once with an error matching upstream.ErrAuthFailed.
func (s *Source) Token(ctx context.Context) (upstream.AccessToken, error) {
	if t := s.cur.Load(); t != nil && s.cfg.clock.Now().Before(t.usableUntil) {
		return t.tok, nil
	}
	return s.waitToken(ctx)
}

func (s *Source) waitToken(ctx context.Context) (upstream.AccessToken, error) {
	if err := ctx.Err(); err != nil {
		return upstream.AccessToken{}, fmt.Errorf("tokens: waiting for a token: %w", err)
	}
	// One flight per process. It outlives a caller that gives up, so that a login once started
	// completes and is stored; it is bounded by the max wait instead.
	ch := s.flights.DoChan("token", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.maxWait)
		defer cancel()
		return s.acquire(fctx, s.usable)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return upstream.AccessToken{}, r.Err
		}
		return r.Val.(*token).tok, nil
	case <-ctx.Done():
		return upstream.AccessToken{}, fmt.Errorf("tokens: waiting for a token: %w", ctx.Err())
	}
}

// Rejected tells the Source that the upstream answered 401 to a request carrying t. If t is still
// the current token (same generation) it is dropped in memory and in Redis, so the next Token call
// gets a new one, obtained once for the whole fleet; a rejection of an older token does nothing.
func (s *Source) Rejected(ctx context.Context, t upstream.AccessToken) {
	if t.Value == "" {
		return
	}
	if cur := s.cur.Load(); cur != nil && cur.tok == t && !cur.revoked {
		s.revokeMem(cur)
	}
	if !s.storeReady(s.now()) {
		s.log.Warn("upstream rejected the token; dropped it in memory only, Redis is unavailable",
			"fp", Fingerprint(t.Value), "generation", t.Generation)
		return
	}
	s.rejectInStore(ctx, t)
}

func (s *Source) rejectInStore(ctx context.Context, t upstream.AccessToken) {
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	n, err := s.scripts.reject.Run(sctx, s.rdb, []string{s.key}, t.Generation, Fingerprint(t.Value)).Int()
	if err != nil {
		s.storeDown(err)
		return
	}
	if n == 1 {
		s.announce(sctx, "revoked:"+strconv.FormatInt(t.Generation, 10))
		s.log.Info("upstream rejected the token; dropped it for the fleet", "fp", Fingerprint(t.Value), "generation", t.Generation)
		return
	}
	s.log.Debug("rejection of a token that is no longer current ignored", "fp", Fingerprint(t.Value), "generation", t.Generation)
}

func (s *Source) revokeMem(cur *token) {
	c := *cur
	c.revoked = true
	c.usableUntil, c.refreshAt = time.Time{}, time.Time{}
	s.cur.CompareAndSwap(cur, &c)
}

// Status reports the token's state from memory, without calling Redis.
func (s *Source) Status() Status {
	now := s.now()
	t := s.cur.Load()
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	st := Status{LastRefreshError: m.lastErr, StoreError: m.storeErr}
	if t != nil {
		st.Generation, st.Fingerprint = t.tok.Generation, t.fp
		st.ExpiresAt, st.LastRefreshAt = t.expiresAt, t.obtainedAt
		if !t.revoked && now.Before(t.expiresAt) {
			st.TimeLeft = t.expiresAt.Sub(now)
		}
	}
	if now.Before(m.failUntil) {
		st.NextLoginAllowedAt = m.failUntil
	}
	switch {
	case !st.NextLoginAllowedAt.IsZero():
		st.State = StateAuthFailed
	case m.storeErr != "":
		st.State = StateRedisUnavailable
	case s.fresh(t, now):
		st.State = StateValid
	case s.usable(t, now):
		st.State = StateExpiring
	default:
		st.State = StateNone
	}
	return st
}

// Start runs the background refresher until ctx ends or Close is called: it obtains a token at
// once, renews it at the refresh-at fraction of its lifetime (callers keep the current one
// meanwhile), retries transient failures with backoff, follows changes made by other replicas
// (Redis pub/sub), and writes its token back when Redis returns after an outage. Run it in its own
// goroutine.
func (s *Source) Start(ctx context.Context) {
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	updates := make(chan struct{}, 1)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		s.watch(ctx, updates)
	}()
	defer func() {
		cancel()
		<-watching
	}()
	for {
		ok := s.tick(ctx)
		timer := time.NewTimer(s.nextTick(!ok))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-updates:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// Close stops the background refresher and waits for it. The Source still answers Token after.
func (s *Source) Close() error {
	s.stop()
	s.wg.Wait()
	return nil
}

// acquire returns a token that accept takes: from memory, from Redis, or obtained under the lock.
func (s *Source) acquire(ctx context.Context, accept acceptFunc) (*token, error) {
	now := s.now()
	if t := s.cur.Load(); accept(t, now) {
		return t, nil
	}
	if !s.storeReady(now) {
		return s.acquireUnlocked(ctx, accept)
	}
	rec, err := s.load(ctx)
	if err != nil {
		return s.storeFailed(ctx, err, accept)
	}
	if t := s.adopt(ctx, rec); accept(t, now) {
		return t, nil
	}
	if err := s.blocked(now); err != nil {
		return nil, err
	}
	return s.renew(ctx, accept)
}

// renew takes the renewal lock, or waits for its holder to publish a token: on the pub/sub
// notification, or at the latest after the poll interval, never in a tight loop.
func (s *Source) renew(ctx context.Context, accept acceptFunc) (*token, error) {
	w := &lockWait{s: s}
	defer w.close()
	for {
		owner, ok, err := s.tryLock(ctx)
		if err != nil {
			return s.storeFailed(ctx, err, accept)
		}
		if ok {
			w.observe()
			t, err := s.renewHolding(ctx, owner, accept)
			if errors.Is(err, errLockLost) {
				continue
			}
			return t, err
		}
		if err := w.next(ctx); err != nil {
			return nil, err
		}
		if t, done, err := s.reread(ctx, accept); done {
			return t, err
		}
	}
}

// lockWait is a wait for another process's renewal: the subscription to its notification, and
// since when it has waited (for the lock wait metric).
type lockWait struct {
	s       *Source
	ps      *redis.PubSub
	updates <-chan *redis.Message
	start   time.Time
}

// next starts the wait at its first call (counted, and subscribed to the notification); at later
// calls it waits for the notification or, at the latest, the poll interval.
func (w *lockWait) next(ctx context.Context) error {
	if w.ps == nil {
		w.start = time.Now()
		w.s.m.lockWaits.Inc()
		w.s.log.Debug("waiting for another process to renew the token")
		w.ps = broadcast.Subscribe(ctx, w.s.rdb, w.s.channel)
		if _, err := w.ps.Receive(ctx); err == nil {
			w.updates = w.ps.Channel()
		}
		// Without a subscription the poll still finds the token.
		return nil
	}
	timer := time.NewTimer(w.s.cfg.pollInterval)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return w.s.waitFailed(ctx)
	case <-w.updates:
	case <-timer.C:
	}
	return nil
}

// observe records how long the wait lasted, once per wait.
func (w *lockWait) observe() {
	if !w.start.IsZero() {
		w.s.m.lockWaitSeconds.Observe(time.Since(w.start).Seconds())
		w.start = time.Time{}
	}
}

// close observes the wait and ends the subscription.
func (w *lockWait) close() {
	w.observe()
	if w.ps != nil {
		_ = w.ps.Close()
	}
}

// reread reads the token another process may have renewed: done with the token if accept takes
// it, or with the error if the store failed or renewing is blocked; not done otherwise.
func (s *Source) reread(ctx context.Context, accept acceptFunc) (t *token, done bool, err error) {
	rec, err := s.load(ctx)
	if err != nil {
		t, err = s.storeFailed(ctx, err, accept)
		return t, true, err
	}
	now := s.now()
	if t := s.adopt(ctx, rec); accept(t, now) {
		return t, true, nil
	}
	if err := s.blocked(now); err != nil {
		return nil, true, err
	}
	return nil, false, nil
}

// renewHolding runs with the lock held: it re-reads the token (another process may have just
// renewed it) and calls the upstream only if it still has to.
func (s *Source) renewHolding(ctx context.Context, owner *lease.Lease, accept acceptFunc) (*token, error) {
	lost, release := s.holdLease(owner)
	defer release()
	rec, err := s.load(ctx)
	if err != nil {
		return s.storeFailed(ctx, err, accept)
	}
	now := s.now()
	if t := s.adopt(ctx, rec); accept(t, now) {
		s.log.Debug("token renewed meanwhile by another process", "fp", t.fp, "generation", t.tok.Generation)
		return t, nil
	}
	if err := s.blocked(now); err != nil {
		return nil, err
	}
	refresh := s.refreshFor(rec)
	set, how, refreshRejected, err := s.callUpstream(ctx, refresh, lost)
	if errors.Is(err, errLockLost) {
		return nil, err
	}
	if err != nil {
		return nil, s.failed(ctx, err, refresh, refreshRejected, true)
	}
	return s.obtained(ctx, set, how, max(rec.gen, s.memGen()), true), nil
}

// acquireUnlocked renews without Redis: through the in-process singleflight and at most once per
// outage interval, so a Redis outage can cost a login per process now and then but never a storm.
func (s *Source) acquireUnlocked(ctx context.Context, accept acceptFunc) (*token, error) {
	v, err, _ := s.flights.Do("unlocked", func() (any, error) {
		now := s.now()
		cur := s.cur.Load()
		if accept(cur, now) {
			return cur, nil
		}
		s.mu.Lock()
		m := &s.meta
		if now.Before(m.failUntil) {
			until := m.failUntil
			s.mu.Unlock()
			return nil, authFailedError(until)
		}
		if next := m.lastUnlocked.Add(s.cfg.outageInterval); !m.lastUnlocked.IsZero() && now.Before(next) {
			cause := m.storeErr
			s.mu.Unlock()
			return nil, fmt.Errorf("%w (%s); no new token before %s", ErrStoreUnavailable, cause, stamp(next))
		}
		m.lastUnlocked = now
		s.mu.Unlock()
		s.log.Warn("token store unavailable: renewing the token without the fleet lock")
		refresh := s.refreshFor(nil)
		set, how, refreshRejected, err := s.callUpstream(ctx, refresh, func() bool { return false })
		if err != nil {
			return nil, s.failed(ctx, err, refresh, refreshRejected, false)
		}
		return s.obtained(ctx, set, how, s.memGen(), false), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*token), nil
}

// callUpstream uses the refresh token first and falls back to a login when the refresh token is
// refused. A transient refresh failure does not fall back: a login would fail alike and costs one
// of the few logins the upstream allows.
func (s *Source) callUpstream(ctx context.Context, refresh string, lost func() bool) (set upstream.TokenSet, how string, refreshRejected bool, err error) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.upstreamTimeout)
	defer cancel()
	if refresh != "" {
		if lost() {
			return set, "", false, errLockLost
		}
		set, err = s.auth.RefreshToken(uctx, refresh)
		if err == nil && set.AccessToken == "" {
			err = fmt.Errorf("refresh answered without an access token: %w", upstream.ErrUnavailable)
		}
		switch {
		case err == nil:
			s.m.refreshes.WithLabelValues(resultOK).Inc()
			if set.RefreshToken == "" {
				set.RefreshToken = refresh
			}
			return set, "refresh", false, nil
		case transient(err):
			s.m.refreshes.WithLabelValues(resultError).Inc()
			return set, "", false, fmt.Errorf("tokens: refreshing the token: %w", err)
		}
		s.m.refreshes.WithLabelValues(resultRejected).Inc()
		s.log.Info("refresh token rejected; logging in", "err", scrub(err.Error(), refresh))
		refreshRejected = true
	}
	if lost() {
		return set, "", refreshRejected, errLockLost
	}
	set, err = s.auth.Login(uctx)
	if err == nil && set.AccessToken == "" {
		err = fmt.Errorf("login answered without an access token: %w", upstream.ErrUnavailable)
	}
	switch {
	case err == nil:
		s.m.logins.WithLabelValues(resultOK).Inc()
		return set, "login", refreshRejected, nil
	case errors.Is(err, upstream.ErrAuthFailed):
		s.m.logins.WithLabelValues(resultRejected).Inc()
		return set, "", refreshRejected, err
	default:
		s.m.logins.WithLabelValues(resultError).Inc()
		return set, "", refreshRejected, fmt.Errorf("tokens: logging in: %w", err)
	}
}

// transient tells failures worth a quick retry from refusals.
func transient(err error) bool {
	if errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrTimeout) ||
		errors.Is(err, upstream.ErrRateLimited) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// obtained stores and installs a token fresh from the upstream. A token that cannot be stored is
// still used: the login it cost must not be wasted; it is written back when Redis returns.
func (s *Source) obtained(ctx context.Context, set upstream.TokenSet, how string, floor int64, viaStore bool) *token {
	now := s.now()
	exp, from := s.expiry(set, now)
	t := s.newToken(set.AccessToken, set.RefreshToken, now, exp, floor+1)
	if viaStore {
		sctx, cancel := s.storeCtx(ctx)
		gen, _, err := s.save(sctx, t, floor, saveForce)
		cancel()
		if err != nil {
			s.storeDown(err)
			viaStore = false
		} else {
			t.tok.Generation = gen
		}
	}
	s.mu.Lock()
	s.meta.failN, s.meta.failUntil, s.meta.failAt, s.meta.failLocal = 0, time.Time{}, time.Time{}, false
	s.meta.retryN, s.meta.retryAt = 0, time.Time{}
	s.meta.lastErr, s.meta.lastErrAt = "", time.Time{}
	s.meta.dirty = !viaStore
	s.mu.Unlock()
	t = s.install(t)
	s.log.Info("upstream token obtained", "via", how, "fp", t.fp, "generation", t.tok.Generation,
		"lifetime", exp.Sub(now).Round(time.Millisecond).String(), "expiry_from", from, "stored", viaStore)
	return t
}

// failed records a failed login or refresh (for the fleet when viaStore) and returns the error for
// the callers. Only a login refused for bad credentials starts the credential backoff; every other
// failure, Redis errors included, is transient.
func (s *Source) failed(ctx context.Context, err error, refresh string, refreshRejected, viaStore bool) error {
	now := s.now()
	msg := scrub(err.Error(), refresh)
	fields := []any{fieldErr, msg, fieldErrAt, ms(now)}
	if refreshRejected {
		fields = append(fields, fieldNoRefresh, "1")
		if cur := s.cur.Load(); cur != nil && cur.refresh == refresh && !cur.noRefresh {
			c := *cur
			c.noRefresh = true
			s.cur.CompareAndSwap(cur, &c)
		}
	}
	out := err
	s.mu.Lock()
	m := &s.meta
	m.lastErr, m.lastErrAt = msg, now
	if errors.Is(err, upstream.ErrAuthFailed) {
		m.failN++
		m.failUntil, m.failAt, m.failLocal = now.Add(retrydelay.Exponential(s.cfg.authFirst, s.cfg.authMax, m.failN)), now, !viaStore
		fields = append(fields, fieldFailN, m.failN, fieldFailUntil, ms(m.failUntil), fieldFailAt, ms(now))
		out = authFailedError(m.failUntil)
		s.log.Error("upstream rejected the gateway credentials; logins paused", "attempt", m.failN,
			"next_attempt", m.failUntil, "err", msg)
	} else {
		m.retryN++
		m.retryAt = now.Add(retrydelay.Exponential(s.cfg.retryFirst, s.cfg.retryMax, m.retryN))
		fields = append(fields, fieldRetryN, m.retryN, fieldRetryAt, ms(m.retryAt))
		s.log.Warn("obtaining an upstream token failed; will retry", "attempt", m.retryN, "next_attempt", m.retryAt, "err", msg)
	}
	s.mu.Unlock()
	if viaStore {
		sctx, cancel := s.storeCtx(ctx)
		defer cancel()
		if err := s.storeFailure(sctx, fields); err != nil {
			s.storeDown(err)
		}
	}
	return out
}

func authFailedError(until time.Time) error {
	return fmt.Errorf("tokens: upstream rejected the gateway credentials; next attempt at %s: %w", stamp(until), upstream.ErrAuthFailed)
}

// blocked fails fast while a backoff forbids calling the upstream.
func (s *Source) blocked(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.meta.failUntil) {
		return authFailedError(s.meta.failUntil)
	}
	if now.Before(s.meta.retryAt) {
		return fmt.Errorf("tokens: obtaining a token failed (%s); next attempt at %s: %w",
			s.meta.lastErr, stamp(s.meta.retryAt), upstream.ErrUnavailable)
	}
	return nil
}

// adopt takes what Redis holds into memory and returns the token memory holds afterwards.
func (s *Source) adopt(ctx context.Context, rec *record) *token {
	s.absorb(rec)
	cur := s.cur.Load()
	st := rec.tok
	switch {
	case st == nil:
		return cur
	case cur != nil && cur.tok == st.tok:
		// The same token: take a rejection from Redis, or give it ours if Redis missed it.
		if rec.revoked && !cur.revoked {
			s.revokeMem(cur)
		}
		if cur.revoked && !rec.revoked {
			s.rejectInStore(ctx, cur.tok)
		}
		return s.cur.Load()
	case rec.revoked || !s.usable(st, s.now()):
		return cur
	default:
		return s.install(st)
	}
}

// install publishes t unless memory already holds a usable token at least as new.
func (s *Source) install(t *token) *token {
	for {
		cur := s.cur.Load()
		if cur != nil && cur.tok.Generation >= t.tok.Generation && s.usable(cur, s.now()) {
			return cur
		}
		if s.cur.CompareAndSwap(cur, t) {
			return t
		}
	}
}

// absorb takes the fleet's failure marks from Redis.
func (s *Source) absorb(rec *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.meta
	switch {
	case !rec.failUntil.IsZero():
		m.failN, m.failUntil, m.failAt, m.failLocal = rec.failN, rec.failUntil, rec.failAt, false
	case !m.failLocal || (rec.tok != nil && rec.tok.obtainedAt.After(m.failAt)):
		m.failN, m.failUntil, m.failAt, m.failLocal = 0, time.Time{}, time.Time{}, false
	}
	m.retryN, m.retryAt = rec.retryN, rec.retryAt
	m.lastErr, m.lastErrAt = rec.errMsg, rec.errAt
}

// refreshFor picks the newest refresh token known, from Redis or memory, unless it was rejected.
func (s *Source) refreshFor(rec *record) string {
	best := s.cur.Load()
	if rec != nil && rec.tok != nil && (best == nil || !best.obtainedAt.After(rec.tok.obtainedAt)) {
		best = rec.tok
	}
	if best == nil || best.noRefresh {
		return ""
	}
	return best.refresh
}

func (s *Source) memGen() int64 {
	if t := s.cur.Load(); t != nil {
		return t.tok.Generation
	}
	return 0
}

func (s *Source) newToken(access, refresh string, obtained, expires time.Time, gen int64) *token {
	life := max(expires.Sub(obtained), 0)
	usable := expires.Add(-min(s.cfg.leeway, life/10))
	frac := s.cfg.refreshAt + (2*rand.Float64()-1)*s.cfg.jitter
	refreshAt := obtained.Add(time.Duration(frac * float64(life)))
	if refreshAt.After(usable) {
		refreshAt = usable
	}
	return &token{
		tok:         upstream.AccessToken{Value: access, Generation: gen},
		refresh:     refresh,
		obtainedAt:  obtained,
		expiresAt:   expires,
		usableUntil: usable,
		refreshAt:   refreshAt,
		fp:          Fingerprint(access),
	}
}

// expiry takes the JWT exp claim, else expiresIn, else the default lifetime.
func (s *Source) expiry(set upstream.TokenSet, now time.Time) (time.Time, string) {
	if exp, ok := jwtExpiry(set.AccessToken); ok {
		if exp.After(now.Add(minLifetime)) {
			return exp, "jwt"
		}
		s.log.Warn("token exp claim is past or about to pass (clock skew?); ignoring it",
			"fp", Fingerprint(set.AccessToken), "exp", exp)
	}
	if d, ok := parseExpiresIn(set.ExpiresIn); ok {
		return now.Add(d), "expiresIn"
	}
	s.log.Warn("token has no readable expiry; assuming the default lifetime",
		"fp", Fingerprint(set.AccessToken), "lifetime", s.cfg.defaultLifetime.String())
	return now.Add(s.cfg.defaultLifetime), "default"
}

func (s *Source) usable(t *token, now time.Time) bool {
	return t != nil && now.Before(t.usableUntil)
}

func (s *Source) fresh(t *token, now time.Time) bool {
	return s.usable(t, now) && now.Before(t.refreshAt)
}

func (s *Source) now() time.Time { return s.cfg.clock.Now() }

// storeCtx bounds a Redis write that must happen even when the caller has stopped waiting.
func (s *Source) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.lockTTL)
}

// storeFailed handles a Redis error on the renewal path: the process goes on without Redis.
func (s *Source) storeFailed(ctx context.Context, err error, accept acceptFunc) (*token, error) {
	if ctx.Err() != nil {
		return nil, s.waitFailed(ctx)
	}
	s.storeDown(err)
	return s.acquireUnlocked(ctx, accept)
}

func (s *Source) waitFailed(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (%s)", ErrWaitTimeout, s.cfg.maxWait)
	}
	return ctx.Err()
}

func (s *Source) storeDown(err error) {
	now := s.now()
	s.mu.Lock()
	first := s.meta.storeErr == ""
	s.meta.storeErr = err.Error()
	s.meta.storeRetryAt = now.Add(s.cfg.pollInterval)
	s.mu.Unlock()
	if first {
		s.log.Error("token store (Redis) unavailable; serving the token held in memory", "err", err)
	}
}

func (s *Source) storeUp() {
	s.mu.Lock()
	was := s.meta.storeErr
	s.meta.storeErr = ""
	s.mu.Unlock()
	if was != "" {
		s.log.Info("token store (Redis) reachable again")
	}
}

func (s *Source) storeReady(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta.storeErr == "" || !now.Before(s.meta.storeRetryAt)
}

// tick is one round of the background refresher; it reports false when a renewal failed.
func (s *Source) tick(ctx context.Context) bool {
	s.syncStore(ctx)
	now := s.now()
	if s.fresh(s.cur.Load(), now) || s.blocked(now) != nil {
		return true
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.maxWait)
	defer cancel()
	if _, err := s.acquire(fctx, s.fresh); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("background token renewal failed", "err", err)
		}
		return false
	}
	return true
}

// syncStore reconciles memory with Redis: it takes a newer or revoked token from Redis, and writes
// the memory token back when Redis lost it (restart) or never got it (outage).
func (s *Source) syncStore(ctx context.Context) {
	now := s.now()
	if !s.storeReady(now) {
		return
	}
	rec, err := s.load(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.storeDown(err)
		}
		return
	}
	s.mu.Lock()
	dirty := s.meta.dirty
	s.meta.dirty = false
	s.mu.Unlock()
	stored := rec.tok != nil && !rec.revoked && s.usable(rec.tok, now)
	if cur := s.cur.Load(); dirty && stored && (cur == nil || cur.tok.Value != rec.tok.tok.Value) {
		// The fleet got a token while this process could not reach Redis: use the fleet's.
		s.absorb(rec)
		s.cur.Store(rec.tok)
		s.log.Info("token store reachable again; using the fleet's token", "fp", rec.tok.fp, "generation", rec.gen)
		return
	}
	t := s.adopt(ctx, rec)
	if stored || t == nil || t.revoked || !s.usable(t, now) {
		return
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	gen, written, err := s.save(sctx, t, t.tok.Generation-1, saveIfInvalid)
	if err != nil {
		s.storeDown(err)
		s.mu.Lock()
		s.meta.dirty = true
		s.mu.Unlock()
		return
	}
	if written {
		s.log.Info("wrote the token held in memory back to the store", "fp", t.fp, "generation", gen)
		if gen != t.tok.Generation {
			c := *t
			c.tok.Generation = gen
			s.cur.CompareAndSwap(t, &c)
		}
	}
}

// nextTick says when the refresher looks again: at the refresh point, after a backoff, soon while
// Redis is away or no token is held, and at least every ten poll intervals.
func (s *Source) nextTick(failing bool) time.Duration {
	now := s.now()
	poll := s.cfg.pollInterval
	d := 10 * poll
	if t := s.cur.Load(); s.usable(t, now) {
		d = min(d, t.refreshAt.Sub(now))
	} else {
		d = min(d, poll)
	}
	s.mu.Lock()
	until := s.meta.failUntil
	if s.meta.retryAt.After(until) {
		until = s.meta.retryAt
	}
	trouble := s.meta.storeErr != "" || s.meta.dirty
	s.mu.Unlock()
	d = max(d, until.Sub(now))
	if trouble {
		d = min(d, poll)
	}
	if failing {
		d = max(d, poll)
	}
	return max(d, poll/20)
}

// watch forwards the fleet's notifications (a token written, revoked, or a failure recorded).
func (s *Source) watch(ctx context.Context, out chan<- struct{}) {
	ps := broadcast.Subscribe(ctx, s.rdb, s.channel)
	defer func() { _ = ps.Close() }()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}

// scrub keeps known secrets and overlong text out of an error message that is stored and shown.
func scrub(msg string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			msg = strings.ReplaceAll(msg, sec, "[redacted]")
		}
	}
	return clip.Bytes(msg, 300, clip.Ellipsis)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
