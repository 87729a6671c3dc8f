// Package recovery brings the fleet back to the upstream within seconds of the end of an outage.
//
// A replica's circuit breaker opens when the upstream fails and would otherwise wait out its
// whole open period before trying again. While it is open, the replica that holds the fleet's
// probe lease asks the upstream's unauthenticated GET /health (outside the WhatsApp quota) once
// a probe interval, and on a healthy answer writes the time to Redis; every replica whose
// breaker opened before that time closes it. So the fleet sends about one probe a second however
// many replicas it has, and callers see the upstream again within about two intervals. When
// Redis cannot be reached, each replica probes for itself.
//
// It must not send an authenticated call, spend quota, or decide anything but the closing of an
// open breaker; a closed breaker that meets failures again opens again by its own rules.
package recovery

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/lease"
)

// Upstream is what the watcher needs of the upstream client.
type Upstream interface {
	// BreakerOpenSince is when the breaker opened, and whether it is open now.
	BreakerOpenSince() (time.Time, bool)
	// Probe asks the upstream's health route once, outside the breaker and the quota.
	Probe(ctx context.Context) error
	// CloseBreaker closes an open breaker.
	CloseBreaker()
}

// Defaults.
const (
	DefaultInterval  = time.Second
	DefaultKeyPrefix = "inboxhub-gateway:upstream-recovery:"
)

// Watcher watches one replica's breaker and closes it when the upstream is healthy again.
type Watcher struct {
	up       Upstream
	rdb      redis.UniversalClient
	healthy  string // key: Unix ms of the last healthy probe answer, any replica's
	probe    *lease.Lease
	interval time.Duration
	log      *slog.Logger
}

// New returns a watcher of up's breaker that shares probes through rdb under keyPrefix
// (DefaultKeyPrefix when empty), probing every interval (DefaultInterval when zero).
func New(up Upstream, rdb redis.UniversalClient, keyPrefix string, interval time.Duration, log *slog.Logger) *Watcher {
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Watcher{
		up:       up,
		rdb:      rdb,
		healthy:  keyPrefix + "healthy-at",
		probe:    lease.New(rdb, keyPrefix+"prober", 3*interval),
		interval: interval,
		log:      log,
	}
}

// Run checks the breaker every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Step(ctx)
		}
	}
}

// Step is one check: nothing while the breaker is closed; while it is open, close it if any
// replica's probe found the upstream healthy since it opened, else probe when this replica is the
// fleet's prober.
func (w *Watcher) Step(ctx context.Context) {
	since, open := w.up.BreakerOpenSince()
	if !open {
		return
	}
	shared := true
	at, err := w.lastHealthy(ctx)
	switch {
	case err != nil:
		shared = false
	case at.After(since):
		w.up.CloseBreaker()
		return
	}
	if shared && !w.isProber(ctx) {
		return
	}
	if err := w.up.Probe(ctx); err != nil {
		return
	}
	if shared {
		w.publish(ctx, time.Now())
	}
	w.up.CloseBreaker()
}

// isProber takes or keeps the fleet's probe lease; a Redis failure makes this replica its own
// prober.
func (w *Watcher) isProber(ctx context.Context) bool {
	held, err := w.probe.Renew(ctx)
	if err == nil && !held {
		held, err = w.probe.Acquire(ctx)
	}
	return held || err != nil
}

// lastHealthy is the time of the fleet's last healthy probe answer (zero when none is kept).
func (w *Watcher) lastHealthy(ctx context.Context) (time.Time, error) {
	v, err := w.rdb.Get(ctx, w.healthy).Result()
	if err == redis.Nil {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, nil // not ours to fix: the next probe overwrites it
	}
	return time.UnixMilli(ms), nil
}

// publish records a healthy answer for the fleet; it is kept for a minute, long after every
// replica has read it.
func (w *Watcher) publish(ctx context.Context, at time.Time) {
	if err := w.rdb.Set(ctx, w.healthy, at.UnixMilli(), time.Minute).Err(); err != nil {
		w.log.WarnContext(ctx, "could not share the upstream's recovery with the fleet", "error", err)
	}
}
