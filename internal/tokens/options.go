package tokens

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option changes one setting of a Source; see New for the defaults.
type Option func(*config)

// Clock tells the time. Tests pass a fake one to move through backoff windows without waiting.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

type config struct {
	prefix          string
	refreshAt       float64
	jitter          float64
	lockTTL         time.Duration
	maxWait         time.Duration
	pollInterval    time.Duration
	authFirst       time.Duration
	authMax         time.Duration
	retryFirst      time.Duration
	retryMax        time.Duration
	outageInterval  time.Duration
	defaultLifetime time.Duration
	upstreamTimeout time.Duration
	leeway          time.Duration
	currentKey      string
	keys            map[string][]byte
	logger          *slog.Logger
	registerer      prometheus.Registerer
	clock           Clock
}

func defaultConfig() config {
	return config{
		prefix:          "gw:token",
		refreshAt:       0.8,
		jitter:          0.05,
		lockTTL:         10 * time.Second,
		maxWait:         15 * time.Second,
		pollInterval:    time.Second,
		authFirst:       5 * time.Minute,
		authMax:         30 * time.Minute,
		retryFirst:      time.Second,
		retryMax:        30 * time.Second,
		outageInterval:  time.Minute,
		defaultLifetime: 15 * time.Minute,
		upstreamTimeout: 30 * time.Second,
		leeway:          30 * time.Second,
		logger:          slog.New(slog.DiscardHandler),
		clock:           systemClock{},
	}
}

func (c *config) validate() error {
	var errs []error
	if c.prefix == "" {
		errs = append(errs, errors.New("key prefix is empty"))
	}
	if c.refreshAt <= 0 || c.refreshAt >= 1 {
		errs = append(errs, fmt.Errorf("refresh-at fraction %v is not between 0 and 1", c.refreshAt))
	}
	if c.jitter < 0 || c.refreshAt-c.jitter <= 0 || c.refreshAt+c.jitter >= 1 {
		errs = append(errs, fmt.Errorf("refresh jitter %v takes the refresh point out of (0, 1)", c.jitter))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"lock TTL", c.lockTTL}, {"max wait", c.maxWait}, {"poll interval", c.pollInterval},
		{"first auth backoff", c.authFirst}, {"max auth backoff", c.authMax},
		{"first retry backoff", c.retryFirst}, {"max retry backoff", c.retryMax},
		{"outage renew interval", c.outageInterval}, {"default lifetime", c.defaultLifetime},
		{"upstream timeout", c.upstreamTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.authMax < c.authFirst {
		errs = append(errs, fmt.Errorf("max auth backoff %s is below the first one %s", c.authMax, c.authFirst))
	}
	if c.retryMax < c.retryFirst {
		errs = append(errs, fmt.Errorf("max retry backoff %s is below the first one %s", c.retryMax, c.retryFirst))
	}
	if c.logger == nil {
		errs = append(errs, errors.New("logger is nil"))
	}
	if c.clock == nil {
		errs = append(errs, errors.New("clock is nil"))
	}
	return errors.Join(errs...)
}

// WithKeyPrefix sets the prefix of the Redis keys (default "gw:token"): the token hash is the
// prefix itself, the lock "<prefix>:lock", the notification channel "<prefix>:updated".
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithRefreshAt sets when the background refresher renews a token: after fraction of its lifetime
// (default 0.8), moved by a random amount of up to ±jitter of the lifetime (default 0.05) so that
// replicas do not all wake at the same instant.
func WithRefreshAt(fraction, jitter float64) Option {
	return func(c *config) { c.refreshAt, c.jitter = fraction, jitter }
}

// WithLockTTL sets the lease of the fleet-wide renewal lock (default 10 s). The holder extends it
// every TTL/3 while its login or refresh runs, so a slow upstream does not let a second one start.
func WithLockTTL(d time.Duration) Option {
	return func(c *config) { c.lockTTL = d }
}

// WithMaxWait bounds how long Token waits for a token when none is valid (default 15 s); the
// caller's context can end the wait sooner.
func WithMaxWait(d time.Duration) Option {
	return func(c *config) { c.maxWait = d }
}

// WithPollInterval sets how often a waiter re-reads Redis when no notification arrives, and how
// soon Redis is tried again after it failed (default 1 s).
func WithPollInterval(d time.Duration) Option {
	return func(c *config) { c.pollInterval = d }
}

// WithAuthBackoff sets the schedule after the upstream rejected the gateway credentials: no login
// before first has passed, then twice as long after each further rejection, up to max (defaults
// 5 min and 30 min: at most about two login attempts per 15 minutes, below the upstream's 5).
func WithAuthBackoff(first, max time.Duration) Option {
	return func(c *config) { c.authFirst, c.authMax = first, max }
}

// WithRetryBackoff sets the schedule after a transient upstream failure of a login or refresh
// (timeout, 5xx, rate limited): retry after first, doubling up to max (defaults 1 s and 30 s).
func WithRetryBackoff(first, max time.Duration) Option {
	return func(c *config) { c.retryFirst, c.retryMax = first, max }
}

// WithOutageRenewInterval sets how often, at most, one process logs in or refreshes without the
// Redis lock while Redis is unreachable (default 1 min).
func WithOutageRenewInterval(d time.Duration) Option {
	return func(c *config) { c.outageInterval = d }
}

// WithDefaultLifetime sets the lifetime assumed for a token that has neither a JWT exp claim nor
// a readable expiresIn (default 15 min).
func WithDefaultLifetime(d time.Duration) Option {
	return func(c *config) { c.defaultLifetime = d }
}

// WithUpstreamTimeout bounds one login or refresh call (default 30 s). The call runs to its end
// even when the callers that started it gave up, so that a login once sent is not wasted.
func WithUpstreamTimeout(d time.Duration) Option {
	return func(c *config) { c.upstreamTimeout = d }
}

// WithEncryptionKeys encrypts tokens at rest with AES-256-GCM. Values are written with the key
// named current and can be read with any key in keys (each 32 bytes), so a key is rotated by adding
// the new one, making it current, and dropping the old one once every value was rewritten. Without
// this option tokens are stored in plain text and Encrypted reports false.
func WithEncryptionKeys(current string, keys map[string][]byte) Option {
	return func(c *config) {
		c.currentKey = current
		c.keys = make(map[string][]byte, len(keys))
		for id, k := range keys {
			c.keys[id] = append([]byte(nil), k...)
		}
	}
}

// WithLogger sets the logger (default: discard). Tokens appear in logs only as fingerprints.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithMetrics registers the Source's Prometheus metrics with reg (default: none).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *config) { c.registerer = reg }
}

// WithClock sets the clock (default: the system clock); for tests.
func WithClock(clock Clock) Option {
	return func(c *config) { c.clock = clock }
}
