package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/promreg"
	"github.com/inboxhub-gateway/gateway/internal/quota"
)

// DefaultFailureKeyPrefix prefixes the Redis keys of the failed-authentication counts.
const DefaultFailureKeyPrefix = "inboxhub-gateway:auth-failures:"

// failureCountTimeout bounds the Redis round trip that counts a failure; the count is made even
// when the client has gone away meanwhile (hanging up must not spare a guess from counting).
const failureCountTimeout = time.Second

// FailureThrottleOptions configure a FailureThrottle.
type FailureThrottleOptions struct {
	// Logger receives Redis failures and lock-outs (default: nowhere).
	Logger *slog.Logger
	// Registerer, when set, receives auth_throttled_total and auth_throttle_errors_total.
	Registerer prometheus.Registerer
	// KeyPrefix prefixes the Redis keys (default DefaultFailureKeyPrefix).
	KeyPrefix string
}

// FailureThrottle slows the guessing of credentials: it counts the failed authentications of each
// client address against a rate (GATEWAY_AUTH_FAILURE_RATE, GCRA), and once an address has used
// that budget, every request from it is answered 429 RATE_LIMITED with Retry-After, before its
// credential is even looked at, until the budget allows another failure. A request with a good
// credential is refused too during that time: otherwise a guesser would learn from a 200 among
// the 429s that it had found a key, and the lock-out would slow nothing.
//
// What counts: a request that presents a credential (X-API-Key or Authorization) and is refused
// with 401. A request without any credential is not a guess and does not count.
//
// The address is gin's ClientIP, which believes X-Forwarded-For only from GATEWAY_TRUSTED_PROXIES;
// an IPv6 client is counted by its /64 (one host owns a whole /64 and could otherwise rotate
// addresses without end). The counts are kept fleet-wide in Redis; while Redis fails each replica
// counts on its own (quota.LocalKeyed, at most quota.DefaultLocalKeys addresses, least recently
// used forgotten first). Lock-outs seen are remembered by the replica until they end, so that a
// locked-out address costs no Redis round trip; and an address Redis reported not locked is
// admitted without asking again for ClearMemory, unless this replica has counted a failure since
// (any failure it counts makes the next request ask Redis). A lock-out reached through another
// replica's counts is thus seen here at most ClearMemory late; a failure is always counted in
// Redis, so the number of guesses an address gets is the same.
type FailureThrottle struct {
	keyed    *quota.Keyed
	local    *quota.LocalKeyed
	rate     quota.Rate
	invalid  error
	log      *slog.Logger
	fallback fallback
	refused  prometheus.Counter

	mu       sync.Mutex
	lockouts *simplelru.LRU[string, time.Time] // address key -> end of its known lock-out
	clear    *simplelru.LRU[string, time.Time] // address key -> end of its known not-locked state
	// failures counts the failures this replica has counted, so that a "not locked" answer read
	// while a failure was being counted is not remembered.
	failures atomic.Uint64
}

// ClearMemory is how long a replica admits an address without asking Redis after Redis said it
// is not locked out (and this replica has counted no failure of it since).
const ClearMemory = 250 * time.Millisecond

// NewFailureThrottle returns a throttle of rate failed authentications per client address over
// rdb. A rate with N == 0 throttles nothing and never asks Redis. An invalid rate (which
// configuration loading never produces) makes every request be refused with 500.
func NewFailureThrottle(rdb redis.UniversalClient, rate quota.Rate, o FailureThrottleOptions) *FailureThrottle {
	t := &FailureThrottle{rate: rate, log: o.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	prefix := o.KeyPrefix
	if prefix == "" {
		prefix = DefaultFailureKeyPrefix
	}
	t.keyed, t.invalid = quota.NewKeyed(rdb, rate, prefix)
	if t.invalid == nil {
		t.local, t.invalid = quota.NewLocalKeyed(rate, quota.DefaultLocalKeys)
	}
	t.lockouts, _ = simplelru.NewLRU[string, time.Time](quota.DefaultLocalKeys, nil)
	t.clear, _ = simplelru.NewLRU[string, time.Time](quota.DefaultLocalKeys, nil)
	t.fallback = fallback{what: "failed-authentication throttle", log: t.log}
	if t.invalid != nil {
		t.log.Error("failed-authentication rate is invalid: every request will be refused", "rate", rate.String(), "error", t.invalid)
	}
	if o.Registerer != nil {
		const failed = "failed-authentication throttle metrics not registered"
		t.refused = promreg.RegisterOrLog(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auth_throttled_total",
			Help: "Requests refused with 429 because their client address had too many failed authentications.",
		}), t.log, failed)
		t.fallback.errors = promreg.RegisterOrLog(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auth_throttle_errors_total",
			Help: "Failed-authentication throttle decisions Redis did not answer; this replica decided them alone.",
		}), t.log, failed)
	}
	return t
}

// admit lets a request go on to its credential check unless its client address is locked out,
// in which case it answers 429 (or 500 for an invalid rate) and returns false.
func (t *FailureThrottle) admit(c *gin.Context) bool {
	if t.invalid != nil {
		middleware.Fail(c, &problem.Error{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
			Detail: "An internal error occurred. Quote the requestId when reporting it.", Cause: t.invalid})
		return false
	}
	if t.rate.Unlimited() {
		return true
	}
	key, now := clientKey(middleware.ClientIP(c)), time.Now()
	until, locked, clear := t.known(key, now)
	switch {
	case locked:
		t.refuse(c, until.Sub(now))
		return false
	case clear:
		return true
	}
	counted := t.failures.Load()
	wait, err := t.keyed.Wait(c.Request.Context(), key)
	switch {
	case err != nil && c.Request.Context().Err() != nil:
		c.Abort() // the caller went away; nobody reads the answer
		return false
	case err != nil:
		t.fallback.failed(middleware.RequestIDOf(c), err)
		wait = t.local.Wait(key, now)
	default:
		t.fallback.ok()
		if wait <= 0 {
			t.rememberClear(key, now, counted)
		}
	}
	if wait > 0 {
		t.lockOut(c, key, now, wait)
		t.refuse(c, wait)
		return false
	}
	return true
}

// failed counts a failed authentication of the request's client address. When that failure is
// beyond the budget, it answers 429 instead of the 401 and returns false.
func (t *FailureThrottle) failed(c *gin.Context) bool {
	if t.invalid != nil || t.rate.Unlimited() {
		return true
	}
	key, now := clientKey(middleware.ClientIP(c)), time.Now()
	// Before and after the count: a "not locked" read by a concurrent request of key while the
	// count is under way is not remembered.
	t.forgetClear(key)
	defer t.forgetClear(key)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), failureCountTimeout)
	defer cancel()
	d, err := t.keyed.Allow(ctx, key)
	if err != nil {
		t.fallback.failed(middleware.RequestIDOf(c), err)
		d = t.local.AllowN(key, 1, now)
	} else {
		t.fallback.ok()
	}
	if d.Allowed {
		return true
	}
	t.lockOut(c, key, now, d.RetryAfter)
	t.refuse(c, d.RetryAfter)
	return false
}

// known reports what this replica knows of key's state now: locked out until until, or not
// locked (clear), or neither (Redis must be asked).
func (t *FailureThrottle) known(key string, now time.Time) (until time.Time, locked, clear bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until, ok := t.lockouts.Get(key); ok {
		if now.Before(until) {
			return until, true, false
		}
		t.lockouts.Remove(key)
	}
	if until, ok := t.clear.Get(key); ok {
		if now.Before(until) {
			return time.Time{}, false, true
		}
		t.clear.Remove(key)
	}
	return time.Time{}, false, false
}

// rememberClear remembers for ClearMemory that key is not locked out, unless this replica has
// counted a failure since counted was read (before Redis was asked).
func (t *FailureThrottle) rememberClear(key string, now time.Time, counted uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures.Load() == counted {
		t.clear.Add(key, now.Add(ClearMemory))
	}
}

// forgetClear makes the next request of key ask Redis: a failure of key is being counted.
func (t *FailureThrottle) forgetClear(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures.Add(1)
	t.clear.Remove(key)
}

// lockOut remembers that key is locked out for wait, and logs the lock-out once per replica.
func (t *FailureThrottle) lockOut(c *gin.Context, key string, now time.Time, wait time.Duration) {
	t.mu.Lock()
	t.lockouts.Add(key, now.Add(wait))
	t.clear.Remove(key)
	t.mu.Unlock()
	t.log.Warn("failed-authentication throttle: client address locked out",
		"requestId", middleware.RequestIDOf(c), "clientIp", middleware.ClientIP(c), "retryAfter", wait.Round(time.Second).String())
}

// refuse answers 429 RATE_LIMITED with Retry-After; the answer says nothing of the credential.
func (t *FailureThrottle) refuse(c *gin.Context, wait time.Duration) {
	if t.refused != nil {
		t.refused.Inc()
	}
	p := problem.New(http.StatusTooManyRequests, problem.CodeRateLimited,
		fmt.Sprintf("Too many failed authentications from this client address (%s allowed). No request from it is accepted until the time given; retry after it.", t.rate))
	p.RetryAfter = max(wait, time.Second)
	middleware.Fail(c, p)
}

// clientKey is the key a client address is counted under: an IPv4 address itself, an IPv6 address
// its /64, and "unknown" for what is no address.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "unknown"
	}
	if a.Is4() {
		return ip // netip reads only the canonical dotted form, which String would give back
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return "unknown"
	}
	return p.String()
}
