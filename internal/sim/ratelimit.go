package sim

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// category is the rate limit bucket of a route, besides the global one.
type category int

const (
	catNone   category = iota // global limit only
	catAuth                   // login and refresh-token
	catRead                   // GETs of sessions, contacts, chats and messages
	catSend                   // message sending
	catGlobal                 // every /api request
)

// rateLimiter keeps one fixed window per (category, caller), like express-rate-limit's
// memory store: every request in the window counts, refused ones included.
type rateLimiter struct {
	mu      sync.Mutex
	clock   func() time.Time
	windows map[windowKey]*window
}

type windowKey struct {
	cat    category
	caller string
}

type window struct {
	reset time.Time
	count int
}

// decision is the outcome of one hit on one limiter, enough to write the headers.
type decision struct {
	rate      Rate
	remaining int
	reset     time.Time
	allowed   bool
}

func newRateLimiter(clock func() time.Time) *rateLimiter {
	return &rateLimiter{clock: clock, windows: map[windowKey]*window{}}
}

// hit counts one request of caller against rate in category.
func (l *rateLimiter) hit(cat category, caller string, rate Rate) decision {
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	key := windowKey{cat, caller}
	w := l.windows[key]
	if w == nil || !now.Before(w.reset) {
		l.prune(now)
		w = &window{reset: now.Add(rate.Per)}
		l.windows[key] = w
	}
	w.count++
	return decision{rate: rate, remaining: max(rate.N-w.count, 0), reset: w.reset, allowed: w.count <= rate.N}
}

// prune forgets expired windows once there are many, so callers cannot grow memory forever.
func (l *rateLimiter) prune(now time.Time) {
	if len(l.windows) < 1024 {
		return
	}
	for k, w := range l.windows {
		if !now.Before(w.reset) {
			delete(l.windows, k)
		}
	}
}

func (l *rateLimiter) resetAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.windows)
}

// setRateHeaders writes both header families: the IETF draft ones with the reset in seconds
// from now, and the X- ones with the reset as epoch seconds. Retry-After goes on refusals.
func setRateHeaders(h http.Header, d decision, now time.Time) {
	secs := int(math.Ceil(d.reset.Sub(now).Seconds()))
	secs = max(secs, 0)
	h.Set("RateLimit-Policy", strconv.Itoa(d.rate.N)+";w="+strconv.Itoa(int(d.rate.Per/time.Second)))
	h.Set("RateLimit-Limit", strconv.Itoa(d.rate.N))
	h.Set("RateLimit-Remaining", strconv.Itoa(d.remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(secs))
	h.Set("X-RateLimit-Limit", strconv.Itoa(d.rate.N))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(d.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(time.Duration(secs)*time.Second).Unix(), 10))
	if !d.allowed {
		h.Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
}
