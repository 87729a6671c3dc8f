package upstream

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// breaker is the client's one circuit breaker (one per Client, not per route).
//
// It counts as failures only the attempts that show the upstream is not there: connection
// failures, attempt timeouts and 502, 503, 504 (nginx's answers when the Node server is down or
// stuck). A 500 is the application answering with an error of one route (the chats route's missing
// column, CONNECTION_ERROR on connect, QR_GENERATION_ERROR): the server is alive, and counting it
// would let one broken route cut every other route off. 4xx and 429 are answers, so successes.
// The caller's own cancellation or deadline counts as nothing.
//
// One breaker per client (rather than per route group) because the failures it counts are those of
// the whole upstream, and /readyz wants one state.
type breaker struct {
	cb       atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	settings gobreaker.Settings
	openFor  time.Duration
	metrics  *metrics
	log      *slog.Logger

	mu       sync.Mutex
	openedAt time.Time
}

// Outcomes reported to the breaker.
var (
	errBreakerFailure  = errors.New("upstream unavailable")
	errBreakerExcluded = errors.New("not counted")
)

func newBreaker(failures int, openFor time.Duration, m *metrics, log *slog.Logger) *breaker {
	b := &breaker{openFor: openFor, metrics: m, log: log}
	b.settings = gobreaker.Settings{
		Name:        "inboxhub",
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsSuccessful: func(err error) bool {
			return err == nil
		},
		IsExcluded: func(err error) bool { return err == errBreakerExcluded },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.mu.Lock()
				b.openedAt = time.Now()
				b.mu.Unlock()
			}
			m.breakerState(to)
			log.Warn("upstream circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	}
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](b.settings))
	m.breakerState(gobreaker.StateClosed)
	return b
}

func (b *breaker) state() string { return b.cb.Load().State().String() }

func (b *breaker) open() bool { return b.cb.Load().State() == gobreaker.StateOpen }

// openSince is when the breaker opened, and whether it is open now.
func (b *breaker) openSince() (time.Time, bool) {
	if !b.open() {
		return time.Time{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openedAt, true
}

// close puts a fresh, closed breaker in place of an open one (gobreaker has no way to close a
// breaker from outside): the upstream answered a health probe, so its open period is over.
func (b *breaker) close() {
	old := b.cb.Load()
	if old.State() != gobreaker.StateOpen {
		return
	}
	if b.cb.CompareAndSwap(old, gobreaker.NewTwoStepCircuitBreaker[struct{}](b.settings)) {
		b.metrics.breakerState(gobreaker.StateClosed)
		b.log.Warn("upstream circuit breaker changed state", "from", gobreaker.StateOpen.String(),
			"to", gobreaker.StateClosed.String(), "by", "health probe")
	}
}

// allow reserves a place for one attempt; done reports its outcome.
func (b *breaker) allow() (done func(error), ok bool) {
	done, err := b.cb.Load().Allow()
	return done, err == nil
}

// retryAfter is how long until the breaker lets a probe through (at least a second, since a
// half-open breaker refuses all but its one probe).
func (b *breaker) retryAfter() time.Duration {
	b.mu.Lock()
	opened := b.openedAt
	b.mu.Unlock()
	d := b.openFor - time.Since(opened)
	if d < time.Second {
		d = time.Second
	}
	return d
}
