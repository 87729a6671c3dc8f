package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/promreg"
	"github.com/inboxhub-gateway/gateway/internal/quota"
)

// DefaultCallerKeyPrefix prefixes the Redis keys of the per-caller limits.
const DefaultCallerKeyPrefix = "inboxhub-gateway:caller-rate:"

// LimiterOption configures a CallerLimiter.
type LimiterOption func(*CallerLimiter)

// WithLimiterLogger sets where Redis failures are reported (default: nowhere).
func WithLimiterLogger(log *slog.Logger) LimiterOption {
	return func(l *CallerLimiter) { l.log = log }
}

// WithLimiterMetrics registers caller_rate_limited_total{caller} and
// caller_rate_limit_errors_total on reg.
func WithLimiterMetrics(reg prometheus.Registerer) LimiterOption {
	return func(l *CallerLimiter) { l.reg = reg }
}

// WithLimiterKeyPrefix sets the prefix of the limiter's Redis keys (default DefaultCallerKeyPrefix).
func WithLimiterKeyPrefix(p string) LimiterOption {
	return func(l *CallerLimiter) { l.prefix = p }
}

// CallerLimiter limits each authenticated caller to a rate "N/duration (burst up to N)", shared by
// every replica through Redis (quota.Keyed: GCRA on the Redis clock). While Redis fails, each
// replica limits each caller on its own to the same rate (quota.LocalKeyed, at most
// quota.DefaultLocalKeys callers remembered, least recently used forgotten first): a fleet of R
// replicas then admits a caller up to R times its rate, rather than without limit or not at all.
// It goes back to Redis as soon as Redis answers; the failures are logged and counted.
//
// A caller this replica has decided recently but whose lease has ended (a caller making fewer
// than one request per leaseTTL here) is admitted optimistically, without waiting for Redis, when
// the last decision Redis gave this replica for it is younger than the rate's period (Per) and
// left room for this request and one more; the place is then charged to the fleet-wide bucket in
// the background, at most one charge per caller in flight on this replica, and the charge's answer
// becomes the caller's state (a refusal is kept until its Retry-After). A caller with no recent
// state, near its limit, refused, or with a charge in flight is decided synchronously, as is
// every caller while the limiter's background slots (maxBackground) are all busy.
//
// The price is a bounded overshoot: an optimistic admission whose charge Redis refuses was a
// request past the caller's budget, and after one the replica admits that caller no more
// optimistically for a period (Per). A caller therefore exceeds its fleet-wide budget by at most
// one request per replica per period: a fleet of R replicas admits it at most N+b-1+R times in
// any window of length Per (N+b-1 being the GCRA's own most, N the rate and b the burst).
type CallerLimiter struct {
	keyed   *quota.Keyed
	local   *quota.LocalKeyed
	invalid error
	rate    quota.Rate
	policy  string
	// The header values that do not change, made once (middleware.Shared).
	burst                   int
	limitValue, policyValue []string

	prefix   string
	reg      prometheus.Registerer
	log      *slog.Logger
	limited  *prometheus.CounterVec
	fallback fallback

	// leaseSize places are taken from Redis at a time and spent locally (see lease). The leases
	// of at most quota.DefaultLocalKeys callers are kept, least recently used dropped first (with
	// their unspent places: a caller whose lease was dropped takes a new one from Redis), so that
	// many distinct callers (JWT subjects) cannot grow the replica's memory without bound.
	leaseSize int
	leases    *lru.Cache[string, *lease]

	// background holds a token per Redis call in flight outside a request (refills and charges),
	// so that they are bounded; when it is full, requests are decided synchronously.
	background chan struct{}
	// now is the clock of leases, states and refusals (time.Now; tests set another).
	now func() time.Time
}

// maxBackground bounds the Redis calls a limiter makes in the background at once.
const maxBackground = 256

// A lease is a run of a caller's places taken from the fleet-wide bucket in one Redis round trip
// and spent by this replica, so that a busy caller costs one round trip per leaseSize requests
// instead of one per request. The places are taken, not borrowed: the fleet never admits more
// than the limit. Places a replica leaves unspent are lost when the lease ends (after leaseTTL),
// which can refuse a caller near its limit up to leaseSize-1 requests early per replica.
//
// A refusal is kept too, until its Retry-After: the bucket cannot admit the caller before then,
// so a caller hammering past its limit costs no Redis round trips.
//
// last and decided are the caller's state, the last decision Redis gave this replica (its
// Remaining counts the places left in Redis, not those of the lease) and when; an optimistic
// admission trusts it (see CallerLimiter).
type lease struct {
	mu           sync.Mutex
	remaining    int
	expires      time.Time
	last         quota.KeyedDecision
	decided      time.Time // zero: no state known
	refusedUntil time.Time
	refusal      quota.KeyedDecision
	// optimisticAfter: an optimistic admission was refused by Redis; none before this time.
	optimisticAfter time.Time
	// inflight is closed when the Redis call made in the background for this caller (a refill or
	// a charge) has answered; nil when there is none.
	inflight chan struct{}
}

// leaseTTL bounds how long a replica holds places it has not spent.
const leaseTTL = time.Second

// leaseSizeFor is 1% of the rate, from 1 to 200 places, and never more than the burst: a busy
// caller then costs Redis one round trip per 1% of its budget at most.
func leaseSizeFor(r quota.Rate) int {
	burst := r.Burst
	if burst == 0 {
		burst = r.N
	}
	return max(1, min(r.N/100, 200, burst))
}

// NewCallerLimiter returns a limiter of rate per caller over rdb. A rate with N == 0 limits
// nothing and never asks Redis. An invalid rate (which configuration loading never produces) makes
// the middleware answer 500 to every request rather than run unlimited.
func NewCallerLimiter(rdb redis.UniversalClient, rate quota.Rate, opts ...LimiterOption) *CallerLimiter {
	l := &CallerLimiter{rate: rate, prefix: DefaultCallerKeyPrefix}
	for _, o := range opts {
		if o != nil {
			o(l)
		}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.keyed, l.invalid = quota.NewKeyed(rdb, rate, l.prefix)
	if l.invalid == nil {
		l.local, l.invalid = quota.NewLocalKeyed(rate, quota.DefaultLocalKeys)
	}
	l.fallback = fallback{what: "per-caller rate limits", log: l.log}
	l.leaseSize = leaseSizeFor(rate)
	l.leases, _ = lru.New[string, *lease](quota.DefaultLocalKeys) // a positive size cannot fail
	l.background, l.now = make(chan struct{}, maxBackground), time.Now
	if l.invalid != nil {
		l.log.Error("per-caller rate limit is invalid: every request will be refused", "rate", rate.String(), "error", l.invalid)
	} else if !rate.Unlimited() {
		burst := rate.Burst
		if burst == 0 {
			burst = rate.N
		}
		l.policy = fmt.Sprintf("%d;w=%d;burst=%d", rate.N, int64(rate.Per.Round(time.Second)/time.Second), burst)
		l.burst, l.limitValue, l.policyValue = burst, middleware.Shared(strconv.Itoa(burst)), middleware.Shared(l.policy)
	}
	if l.reg != nil {
		const failed = "caller limiter metrics not registered"
		l.limited = promreg.RegisterOrLog(l.reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caller_rate_limited_total",
			Help: "Requests refused with 429 by the per-caller rate limit, by caller name.",
		}, []string{"caller"}), l.log, failed)
		l.fallback.errors = promreg.RegisterOrLog(l.reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "caller_rate_limit_errors_total",
			Help: "Per-caller rate-limit decisions Redis did not answer; this replica decided them alone, at the same rate.",
		}), l.log, failed)
	}
	return l
}

// Middleware counts the request against its caller's budget (by caller name; it must run after
// the authentication middleware) and answers 429 RATE_LIMITED with Retry-After when the budget is
// spent. Answers carry RateLimit-Limit (the burst), RateLimit-Remaining, RateLimit-Reset (seconds
// until the full burst is back) and RateLimit-Policy ("N;w=seconds;burst=b").
func (l *CallerLimiter) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		if l.invalid != nil {
			middleware.Fail(c, &problem.Error{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
				Detail: "An internal error occurred. Quote the requestId when reporting it.", Cause: l.invalid})
			return
		}
		if l.rate.Unlimited() {
			c.Next()
			return
		}
		caller, ok := CallerOf(c)
		if !ok {
			middleware.Fail(c, &problem.Error{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
				Detail: "An internal error occurred. Quote the requestId when reporting it.", Cause: errNoAuthentication})
			return
		}
		key := caller.limitKey
		d, err := l.allow(c.Request.Context(), key)
		switch {
		case err != nil && c.Request.Context().Err() != nil:
			c.Abort() // the caller went away; nobody reads the answer
			return
		case err != nil:
			l.fallback.failed(middleware.RequestIDOf(c), err)
			d = l.local.AllowN(key, 1, time.Now())
		default:
			l.fallback.ok()
		}
		// The canonical forms of RateLimit-*, set directly: no name to canonicalise per request.
		h := c.Writer.Header()
		if d.Limit == l.burst {
			h["Ratelimit-Limit"] = l.limitValue
		} else {
			h["Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
		}
		h["Ratelimit-Remaining"], h["Ratelimit-Reset"] = counts(d.Remaining, ceilSeconds(d.Reset))
		h["Ratelimit-Policy"] = l.policyValue
		if !d.Allowed {
			if l.limited != nil {
				l.limited.WithLabelValues(caller.Label).Inc()
			}
			p := problem.New(http.StatusTooManyRequests, problem.CodeRateLimited,
				fmt.Sprintf("Caller %q has used its request budget (%s). Retry after the time given.", caller.Name, l.rate))
			p.RetryAfter = max(d.RetryAfter, time.Second)
			middleware.Fail(c, p)
			return
		}
		c.Next()
	}
}

// allow spends a place of the caller's current lease. When the lease runs low, the next one is
// taken in the background, so that requests do not queue behind the Redis round trip. A caller
// whose lease has ended is admitted optimistically when its state allows (see CallerLimiter);
// otherwise the request waits for Redis (after the caller's background call, if one is in flight),
// and then takes a lease, or a single place when a whole lease is not available. A request that
// waited for a background call is not admitted optimistically: the caller is busy, and a busy
// caller spends leases (charging its requests one by one would cost a round trip each).
func (l *CallerLimiter) allow(ctx context.Context, key string) (quota.KeyedDecision, error) {
	ls, ok := l.leases.Get(key)
	if !ok {
		ls = &lease{}
		if prev, found, _ := l.leases.PeekOrAdd(key, ls); found {
			ls = prev
		}
	}
	for guess := true; ; guess = false {
		now := l.now()
		ls.mu.Lock()
		if d, ok := l.held(key, ls, now, guess); ok {
			ls.mu.Unlock()
			return d, nil
		}
		inflight := ls.inflight
		ls.mu.Unlock()
		if inflight == nil {
			break
		}
		// Its answer may be all this request needs (places, a refusal, a state).
		select {
		case <-inflight:
		case <-ctx.Done():
			return quota.KeyedDecision{}, fmt.Errorf("quota: %w", ctx.Err())
		}
	}
	return l.decide(ctx, key, ls)
}

// held decides a request from what this replica holds for the caller, with ls locked: a place of
// the lease, the refusal kept, or (when guess allows it) an optimistic admission. ok is false
// when Redis must decide.
func (l *CallerLimiter) held(key string, ls *lease, now time.Time, guess bool) (d quota.KeyedDecision, ok bool) {
	switch {
	case ls.remaining > 0 && now.Before(ls.expires):
		ls.remaining--
		d = ls.last
		d.Remaining += ls.remaining
		if ls.remaining <= l.leaseSize/2 && l.leaseSize > 1 && ls.inflight == nil {
			l.inBackground(key, ls, l.refill)
		}
		return d, true
	case now.Before(ls.refusedUntil):
		d = ls.refusal
		d.RetryAfter = ls.refusedUntil.Sub(now)
		return d, true
	case guess && l.optimistic(ls, now) && l.inBackground(key, ls, l.charge):
		d = ls.last
		d.Remaining--
		d.Reset = max(ls.decided.Add(ls.last.Reset).Sub(now), 0) + l.rate.Per/time.Duration(l.rate.N)
		return d, true
	}
	return d, false
}

// optimistic says whether the caller, its lease ended, may be admitted before Redis counts the
// request: its state is younger than the rate's period, leaves room for this request and one
// more, and no refusal of an optimistic admission is younger than a period.
func (l *CallerLimiter) optimistic(ls *lease, now time.Time) bool {
	return ls.inflight == nil && !now.Before(ls.expires) && !ls.decided.IsZero() &&
		now.Sub(ls.decided) < l.rate.Per && ls.last.Allowed && ls.last.Remaining >= 2 &&
		!now.Before(ls.optimisticAfter)
}

// inBackground runs call for the caller outside the request, with ls locked, when a background
// slot is free; ls.inflight is closed when it is done.
func (l *CallerLimiter) inBackground(key string, ls *lease, call func(context.Context, string, *lease)) bool {
	select {
	case l.background <- struct{}{}:
	default:
		return false
	}
	done := make(chan struct{})
	ls.inflight = done
	go func() {
		defer func() { <-l.background }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		call(ctx, key, ls)
		ls.mu.Lock()
		ls.inflight = nil
		ls.mu.Unlock()
		close(done)
	}()
	return true
}

// decide asks Redis for a lease, or a single place when a whole lease is not available.
func (l *CallerLimiter) decide(ctx context.Context, key string, ls *lease) (quota.KeyedDecision, error) {
	n := l.leaseSize
	d, err := l.keyed.AllowN(ctx, key, n)
	if err == nil && !d.Allowed && n > 1 {
		n = 1
		d, err = l.keyed.AllowN(ctx, key, 1)
	}
	now := l.now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err != nil {
		ls.decided = time.Time{} // what this replica knew may be out of date by now
		return d, err
	}
	if !d.Allowed {
		ls.refuse(d, now)
		return d, nil
	}
	ls.add(n-1, d, now)
	d.Remaining += ls.remaining
	return d, nil
}

// refill takes the next lease of a caller whose lease runs low.
func (l *CallerLimiter) refill(ctx context.Context, key string, ls *lease) {
	d, err := l.keyed.AllowN(ctx, key, l.leaseSize)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err == nil && d.Allowed {
		ls.add(l.leaseSize, d, l.now())
	}
}

// charge counts an optimistic admission in the fleet-wide bucket, and keeps the answer as the
// caller's state. A refusal means the admission was past the budget: it is kept until its
// Retry-After, and the caller is admitted no more optimistically for a period. When Redis fails,
// the admission is counted in the replica's own bucket, as it would have been if decided then.
func (l *CallerLimiter) charge(ctx context.Context, key string, ls *lease) {
	d, err := l.keyed.AllowN(ctx, key, 1)
	now := l.now()
	if err != nil {
		l.fallback.failed("", err)
		l.local.AllowN(key, 1, time.Now())
	} else {
		l.fallback.ok()
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	switch {
	case err != nil:
		ls.decided = time.Time{}
	case d.Allowed:
		ls.last, ls.decided = d, now
	default:
		ls.refuse(d, now)
		ls.optimisticAfter = now.Add(l.rate.Per)
	}
}

// refuse keeps Redis' refusal until its Retry-After.
func (ls *lease) refuse(d quota.KeyedDecision, now time.Time) {
	ls.refusedUntil, ls.refusal = now.Add(d.RetryAfter), d
	ls.last, ls.decided = d, now
}

// add puts n more places into the lease, which then lasts leaseTTL from now.
func (ls *lease) add(n int, d quota.KeyedDecision, now time.Time) {
	if !now.Before(ls.expires) {
		ls.remaining = 0 // places of an ended lease are gone
	}
	ls.remaining += n
	ls.expires, ls.last, ls.decided = now.Add(leaseTTL), d, now
}

// ceilSeconds rounds d up to whole seconds.
// smallCounts are the header values of the numbers 0 to 1023, made once: most RateLimit-Reset
// values, and RateLimit-Remaining of the usual bursts, cost no allocation.
var smallCounts = func() (v [1024][]string) {
	for i := range v {
		v[i] = middleware.Shared(strconv.Itoa(i))
	}
	return v
}()

// counts are the header values of the numbers a and b, taken from smallCounts when they are
// there and otherwise made in two allocations for both: the pair of slices, and one text holding
// both numbers, which the two values share.
func counts(a, b int) (va, vb []string) {
	small := func(n int) bool { return n >= 0 && n < len(smallCounts) }
	if small(a) && small(b) {
		return smallCounts[a], smallCounts[b]
	}
	var buf [40]byte
	digits := strconv.AppendInt(buf[:0], int64(a), 10)
	cut := len(digits)
	both := string(strconv.AppendInt(digits, int64(b), 10))
	pair := make([]string, 2)
	pair[0], pair[1] = both[:cut], both[cut:]
	// Each value's capacity is its length, as Shared's: an Add to one copies it.
	return pair[0:1:1], pair[1:2:2]
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
