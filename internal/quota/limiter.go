// Package quota enforces the upstream's rate limits fleet-wide: every replica asks one Redis, in
// one EVALSHA round trip, whether a call of a category (auth, read, send) may go out now, under a
// GCRA whose parameters guarantee that no window of the upstream's length ever sees more calls
// than the upstream allows (see params). A reserved share of each category is kept for
// interactive calls, so that a background sync never starves the CRM's clicks.
//
// Limiter implements upstream.Limiter. Keyed applies the same script to a rate per key (the
// per-caller limit and the failed-authentication throttle of package auth); LocalKeyed decides
// the same per-key rate in process, in a bounded memory, for when Redis does not answer.
//
// It must not admit more calls than the configured limits in any window, whatever the number of
// replicas, nor report a Redis failure as a rate limit: without Redis it fails with an error, or
// decides locally on a share of each limit when WithLocalFallback is set. It knows nothing of HTTP.
package quota

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// CategoryGlobal, as a key of the limits given to New, is a limit over every category together
// (the upstream's "everything together", 100 or 1000 per 15 minutes): each call must fit both its
// own category's bucket and this one, decided atomically in the same script.
const CategoryGlobal upstream.Category = "global"

// Defaults of the options.
const (
	DefaultReserve           = 0.2
	DefaultBurst             = 0.5
	DefaultMaxWait           = 2 * time.Second
	DefaultMaxWaitBackground = 60 * time.Second
	DefaultMargin            = time.Second
	DefaultKeyPrefix         = "{inboxhub-gateway:quota}:"
	priorityInteractive      = "interactive"
	priorityBackground       = "background"
	maxJitter                = 20 * time.Millisecond
)

//go:embed gcra.lua
var gcraSource string

type priorityKey struct{}

// WithBackground marks ctx as background work (a sync, a status poll): such calls see a smaller
// effective limit, leaving the reserved share to interactive calls, and may wait longer (see
// WithMaxWait). Calls are interactive unless marked.
func WithBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, priorityKey{}, true)
}

// IsBackground reports whether ctx was marked by WithBackground.
func IsBackground(ctx context.Context) bool {
	b, _ := ctx.Value(priorityKey{}).(bool)
	return b
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithReserve sets the share of each category's burst kept for interactive calls (default 0.2,
// clamped to [0, 0.9]). With a burst of one call nothing can be reserved.
func WithReserve(share float64) Option {
	return func(l *Limiter) { l.reserve = min(max(share, 0), 0.9) }
}

// WithBurst sets the default burst of a category as a share of its N (default 0.5, clamped to
// (0, 1]); a Rate's own Burst takes precedence. A bigger burst costs sustained rate (see params).
func WithBurst(share float64) Option {
	return func(l *Limiter) {
		if share > 0 {
			l.burst = min(share, 1)
		}
	}
}

// WithMaxWait sets how long Wait may hold an interactive and a background call before it gives up
// with a *upstream.RateLimitError (defaults 2 s and 60 s). Wait never waits past ctx's deadline.
func WithMaxWait(interactive, background time.Duration) Option {
	return func(l *Limiter) { l.maxWait = [2]time.Duration{max(interactive, 0), max(background, 0)} }
}

// WithMargin sets the safety margin added to every period (default 1 s, and at most a tenth of the
// period): calls admitted a period apart can arrive closer together after network jitter.
func WithMargin(d time.Duration) Option {
	return func(l *Limiter) { l.margin = max(d, 0); l.marginSet = true }
}

// WithKeyPrefix sets the prefix of the Redis keys (one key per category). The default carries a
// hash tag so that all keys live in one Redis Cluster slot and one script may touch several; a
// prefix for Redis Cluster must keep one ({...}).
func WithKeyPrefix(p string) Option { return func(l *Limiter) { l.prefix = p } }

// WithMetrics registers the limiter's metrics on reg; nil (the default) records none.
func WithMetrics(reg prometheus.Registerer) Option { return func(l *Limiter) { l.reg = reg } }

// WithLogger sets the logger (Redis failures, fallback).
func WithLogger(log *slog.Logger) Option { return func(l *Limiter) { l.log = log } }

// WithLocalFallback makes the limiter fail open when Redis fails: decisions are then taken by an
// in-process GCRA with every N multiplied by share (at least 1), instead of returning the Redis
// error. Set share to 1/replicas so that the fleet stays within the upstream's limits while Redis
// is away; the guarantee of params then holds per replica only. Off by default: without it a Redis
// failure is an error (not a rate limit).
func WithLocalFallback(share float64) Option {
	return func(l *Limiter) {
		if share > 0 {
			l.fallbackShare = min(share, 1)
		}
	}
}

// Limiter is the fleet-wide upstream quota. It is safe for concurrent use; every replica builds
// its own over the same Redis and the same limits.
type Limiter struct {
	rdb     redis.UniversalClient
	script  *redis.Script
	buckets map[upstream.Category][]*bucket // the category's bucket, then the global one
	global  *bucket

	reserve       float64
	burst         float64
	maxWait       [2]time.Duration // interactive, background
	margin        time.Duration
	marginSet     bool
	prefix        string
	reg           prometheus.Registerer
	log           *slog.Logger
	metrics       *metrics
	fallbackShare float64
	local         *localGCRA
	degraded      atomic.Bool
}

var _ upstream.Limiter = (*Limiter)(nil)

// bucket is one GCRA state in Redis.
type bucket struct {
	key     string
	p       params
	local   params // the fallback's parameters
	invalid error
}

// Decision is the answer to one request for quota.
type Decision struct {
	// Allowed says the call may go out now.
	Allowed bool
	// RetryAfter is how long until it would be admitted, when refused.
	RetryAfter time.Duration
	// At is the time of the decision on the Redis clock (the local clock for fallback decisions).
	At time.Time
}

// New returns a limiter over rdb with a Rate per category; a category without a rate (or with
// N == 0) is unlimited and costs no Redis call. An invalid rate makes every call of its category
// fail (fail closed) with an error that is not a rate limit.
func New(rdb redis.UniversalClient, limits map[upstream.Category]Rate, opts ...Option) *Limiter {
	l := &Limiter{
		rdb:     rdb,
		script:  redis.NewScript(gcraSource),
		reserve: DefaultReserve,
		burst:   DefaultBurst,
		maxWait: [2]time.Duration{DefaultMaxWait, DefaultMaxWaitBackground},
		margin:  DefaultMargin,
		prefix:  DefaultKeyPrefix,
	}
	for _, o := range opts {
		if o != nil {
			o(l)
		}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(l.reg)
	if err != nil {
		l.log.Error("quota metrics not registered", "error", err)
	}
	l.metrics = m
	if l.fallbackShare > 0 {
		l.local = newLocalGCRA()
	}
	l.buckets, l.global = l.newBuckets(limits)
	return l
}

// newBuckets makes the buckets each category's calls take from: its own rate (when limited) and
// the global one (when limited), shared by every category. Auth, read and send always have an
// entry, empty when unlimited.
func (l *Limiter) newBuckets(limits map[upstream.Category]Rate) (buckets map[upstream.Category][]*bucket, global *bucket) {
	buckets = map[upstream.Category][]*bucket{}
	for _, c := range []upstream.Category{upstream.CategoryAuth, upstream.CategoryRead, upstream.CategorySend} {
		buckets[c] = nil
	}
	for c := range limits {
		if c != CategoryGlobal {
			buckets[c] = nil
		}
	}
	if r, ok := limits[CategoryGlobal]; ok && !r.Unlimited() {
		global = l.newBucket(CategoryGlobal, r)
	}
	for c := range buckets {
		var bs []*bucket
		if r, ok := limits[c]; ok && !r.Unlimited() {
			bs = append(bs, l.newBucket(c, r))
		}
		if global != nil {
			bs = append(bs, global)
		}
		buckets[c] = bs
	}
	return buckets, global
}

// newBucket is category c's bucket at rate r, with its share for the local fallback; an invalid
// rate makes a bucket that refuses every call with the rate's problem.
func (l *Limiter) newBucket(c upstream.Category, r Rate) *bucket {
	b := &bucket{key: l.prefix + string(c)}
	if err := r.Validate(); err != nil {
		b.invalid = err
		return b
	}
	margin := l.margin
	if !l.marginSet {
		margin = min(margin, r.Per/10)
	}
	b.p = r.params(l.burst, l.reserve, margin)
	lr := r
	lr.N = max(1, int(float64(r.N)*l.fallbackShare))
	lr.Burst = min(lr.Burst, lr.N)
	b.local = lr.params(l.burst, l.reserve, margin)
	return b
}

// Allow asks once whether a call of category c may go out now, and if so takes its place. The
// priority comes from ctx (WithBackground). A Redis failure is an error that wraps the Redis error
// ("quota: redis: ...") and matches neither upstream.ErrRateLimited nor upstream.ErrAuthFailed,
// unless WithLocalFallback is set.
func (l *Limiter) Allow(ctx context.Context, c upstream.Category) (Decision, error) {
	bs, known := l.buckets[c]
	if !known && l.global != nil {
		bs = []*bucket{l.global} // a category of no limit of its own still counts globally
	}
	if len(bs) == 0 {
		return Decision{Allowed: true, At: time.Now()}, nil
	}
	for _, b := range bs {
		if b.invalid != nil {
			return Decision{}, fmt.Errorf("quota: category %s: %w", c, b.invalid)
		}
	}
	bg := IsBackground(ctx)
	keys := make([]string, len(bs))
	args := make([]any, 0, 2*len(bs))
	for i, b := range bs {
		keys[i] = b.key
		tau := b.p.tau
		if bg {
			tau = b.p.tauBg
		}
		args = append(args, b.p.T, tau)
	}
	res, err := l.script.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err == nil && len(res) < 3 {
		err = errors.New("unexpected script answer")
	}
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("quota: %w", ctx.Err())
		}
		l.metrics.redisError(c)
		if l.local != nil {
			l.warnDegraded(err)
			return l.local.allow(bs, bg, time.Now()), nil
		}
		return Decision{}, fmt.Errorf("quota: redis: %w", err)
	}
	if l.degraded.CompareAndSwap(true, false) {
		l.log.Info("quota: Redis is back; fleet-wide limits restored")
	}
	return Decision{Allowed: res[0] == 1, RetryAfter: time.Duration(res[1]) * time.Microsecond,
		At: time.UnixMicro(res[2])}, nil
}

func (l *Limiter) warnDegraded(err error) {
	if l.degraded.CompareAndSwap(false, true) {
		l.log.Warn("quota: Redis failed; deciding locally with a share of each limit until it is back",
			"error", err, "share", l.fallbackShare)
	}
}

// Wait blocks until a call of category c may go out, asking again after each refusal's
// RetryAfter, as long as the total wait stays within the priority's maximum and ctx's deadline.
// Otherwise it returns a *upstream.RateLimitError (Source "gateway") with the time still to wait.
// A canceled ctx returns an error matching ctx.Err(); a Redis failure the error of Allow.
func (l *Limiter) Wait(ctx context.Context, c upstream.Category) error {
	prio, maxWait := priorityInteractive, l.maxWait[0]
	if IsBackground(ctx) {
		prio, maxWait = priorityBackground, l.maxWait[1]
	}
	start := time.Now()
	slept := false
	for {
		d, err := l.Allow(ctx, c)
		if err != nil {
			return err
		}
		if d.Allowed {
			l.metrics.waited(c, prio, time.Since(start))
			return nil
		}
		wait := d.RetryAfter + rand.N(min(d.RetryAfter/10, maxJitter)+1)
		dl, hasDeadline := ctx.Deadline()
		if time.Since(start)+wait > maxWait || (hasDeadline && time.Until(dl) < wait) {
			l.metrics.rejected(c, prio, time.Since(start))
			return &upstream.RateLimitError{RetryAfter: d.RetryAfter, Source: "gateway"}
		}
		if !slept {
			slept = true
			l.metrics.waiting(c, prio)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("quota: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// localGCRA is the in-process fallback: the same algorithm over TATs kept in memory.
type localGCRA struct {
	mu   sync.Mutex
	tats map[string]int64 // µs since the Unix epoch
}

func newLocalGCRA() *localGCRA { return &localGCRA{tats: map[string]int64{}} }

func (g *localGCRA) allow(bs []*bucket, bg bool, now time.Time) Decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := now.UnixMicro()
	var wait int64
	next := make([]int64, len(bs))
	for i, b := range bs {
		tat := max(g.tats[b.key], t)
		tau := b.local.tau
		if bg {
			tau = b.local.tauBg
		}
		wait = max(wait, tat-tau-t)
		next[i] = tat + b.local.T
	}
	if wait > 0 {
		return Decision{RetryAfter: time.Duration(wait) * time.Microsecond, At: now}
	}
	for i, b := range bs {
		g.tats[b.key] = next[i]
	}
	return Decision{Allowed: true, At: now}
}
