// Package lease is the gateway's one Redis lease: a key held by one holder for a limited time,
// taken with SET NX PX, renewed and released only by the holder that took it (compare-and-pexpire,
// compare-and-delete), and kept alive in the background while its work runs.
//
// It is the one mechanism behind the token refresh lock, the sync job's owner, the event
// drainer of a session, the read cache's fill lock, the status poller's leadership and the upstream recovery probe; Start
// renews a lease in the background and tells its holder when it is lost. It holds no other state and takes no
// decision of its own: what a lost lease means is its caller's business.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLost: the lease expired or was taken by another holder.
var ErrLost = errors.New("lease: lost")

// Lease is one holder's claim on a key.
type Lease struct {
	rdb   redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
}

// New returns an unacquired lease on key with a fresh random holder token.
func New(rdb redis.UniversalClient, key string, ttl time.Duration) *Lease {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &Lease{rdb: rdb, key: key, token: hex.EncodeToString(b), ttl: ttl}
}

// Adopt returns the lease on key that a script of the caller's own took with token (SET NX PX
// token), so that it can be renewed and released like one taken with Acquire.
func Adopt(rdb redis.UniversalClient, key, token string, ttl time.Duration) *Lease {
	return &Lease{rdb: rdb, key: key, token: token, ttl: ttl}
}

// Key is the Redis key of the lease (for scripts that check it beside other keys).
func (l *Lease) Key() string { return l.key }

// Token is the holder's token stored in the key.
func (l *Lease) Token() string { return l.token }

// TTL is the lease's lifetime from its last renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

var acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// Acquire takes the lease if nobody holds it, in one round trip; it reports whether this holder
// has it now (true as well when this holder held it already, which is then renewed).
func (l *Lease) Acquire(ctx context.Context) (bool, error) {
	n, err := acquireScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: acquire: %w", err)
	}
	return n == 1, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// Renew extends the lease by its TTL if this holder still has it; false when it is lost.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: renew: %w", err)
	}
	return n == 1, nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Release gives the lease up if this holder still has it.
func (l *Lease) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("lease: release: %w", err)
	}
	return nil
}

// Keep renews the lease every TTL/3 until ctx ends, and returns ErrLost as soon as a renewal finds
// it lost, or once Redis errors have kept it from renewing for longer than the TTL (by then
// another holder may have taken it). It returns nil when ctx ends first. Run it beside the work
// the lease protects and stop the work when it returns ErrLost.
func (l *Lease) Keep(ctx context.Context) error {
	renewed := time.Now()
	t := time.NewTimer(l.ttl / 3)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-t.C:
	}
	return l.keep(ctx, KeepOptions{}, renewed)
}

// KeepOptions say how a background renewal (Start) treats Redis errors and a lost lease.
type KeepOptions struct {
	// Patient renews through Redis errors for as long as they last: the lease counts as lost only
	// when a renewal finds it gone. By default, as in Keep, it also counts as lost once errors have
	// kept it from renewing for longer than its TTL.
	Patient bool
	// OnError is told each Redis error of a renewal (nil: none is).
	OnError func(err error)
	// OnLost is called once, from the renewing goroutine, when the lease is lost (err matches
	// ErrLost); renewing stops then. The caller stops the work the lease protects.
	OnLost func(err error)
}

// keep is the one renewal loop, of Keep and of Start: it renews at once (the lease was last
// renewed at renewed, TTL/3 ago), then every TTL/3, until ctx ends or the lease is lost.
func (l *Lease) keep(ctx context.Context, o KeepOptions, renewed time.Time) error {
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		ok, err := l.Renew(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && !ok:
			return ErrLost
		case err == nil:
			renewed = time.Now()
		default:
			if o.OnError != nil {
				o.OnError(err)
			}
			if !o.Patient && time.Since(renewed) >= l.ttl {
				return fmt.Errorf("%w: not renewed for %v: %w", ErrLost, l.ttl, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Keeper is a lease renewed in the background (see Start).
type Keeper struct {
	l      *Lease
	cancel context.CancelFunc
	first  *time.Timer // starts the renewing goroutine at the first renewal
	done   chan struct{}
	lost   atomic.Bool
}

// Start renews the held lease every TTL/3 in the background, as Keep does (with o's rules), until
// ctx ends or Stop or Release is called; OnLost tells the holder when the lease is lost. The
// renewing goroutine starts only at the first renewal, TTL/3 from now: work shorter than that
// (most cache fills) costs a timer, not a goroutine that Stop has to wake and wait for.
func (l *Lease) Start(ctx context.Context, o KeepOptions) *Keeper {
	ctx, cancel := context.WithCancel(ctx)
	k := &Keeper{l: l, cancel: cancel, done: make(chan struct{})}
	renewed := time.Now()
	k.first = time.AfterFunc(l.ttl/3, func() {
		defer close(k.done)
		if err := l.keep(ctx, o, renewed); err != nil {
			k.lost.Store(true)
			if o.OnLost != nil {
				o.OnLost(err)
			}
		}
	})
	return k
}

// Lost reports whether the background renewal found the lease lost.
func (k *Keeper) Lost() bool { return k.lost.Load() }

// Stop ends the background renewal and waits for it; the lease itself stays until it expires (for
// a holder that gave it up another way, e.g. in a script of its own).
func (k *Keeper) Stop() {
	k.cancel()
	if k.first.Stop() { // the renewing goroutine never started, and never will
		close(k.done)
	}
	<-k.done
}

// Release ends the background renewal and gives the lease up, waiting at most timeout for Redis.
// ctx's values are kept but not its end, so that a lease is released even when its work was
// canceled.
func (k *Keeper) Release(ctx context.Context, timeout time.Duration) error {
	k.Stop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return k.l.Release(rctx)
}

// Hold runs work under the lease: it renews the lease while work runs, cancels work's context
// with ErrLost as the cause when the lease is lost, and releases the lease when work returns.
// The caller must have acquired the lease.
func (l *Lease) Hold(ctx context.Context, work func(ctx context.Context) error) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	k := l.Start(wctx, KeepOptions{OnLost: func(err error) { cancel(err) }})
	err := work(wctx)
	cause := context.Cause(wctx)
	cancel(nil)
	_ = k.Release(ctx, 2*time.Second)
	if err == nil && errors.Is(cause, ErrLost) {
		return cause
	}
	return err
}
