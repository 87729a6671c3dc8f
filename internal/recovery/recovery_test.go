package recovery_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/recovery"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// world is the upstream as the replicas' probes see it.
type world struct{ healthy atomic.Bool }

// replica is one replica's breaker and upstream client, as far as the watcher sees them.
type replica struct {
	w      *world
	mu     sync.Mutex
	openAt time.Time
	open   bool
	probes atomic.Int64
}

func (r *replica) BreakerOpenSince() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.openAt, r.open
}

func (r *replica) Probe(context.Context) error {
	r.probes.Add(1)
	if !r.w.healthy.Load() {
		return errors.New("503")
	}
	return nil
}

func (r *replica) CloseBreaker() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open = false
}

func (r *replica) trip(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openAt, r.open = at, true
}

func (r *replica) isOpen() bool {
	_, open := r.BreakerOpenSince()
	return open
}

// TestOneReplicaProbesForTheFleet: three replicas' breakers are open during an outage. Only one of
// them probes the upstream (the fleet's prober); when the upstream is healthy again, its probe
// closes its own breaker and the others close theirs on their next step, without probing. On
// every topology.
func TestOneReplicaProbesForTheFleet(t *testing.T) {
	for _, topo := range redistest.Topologies(t) {
		t.Run(topo.Name, func(t *testing.T) {
			ctx := context.Background()
			w := &world{}
			replicas := make([]*replica, 3)
			watchers := make([]*recovery.Watcher, 3)
			opened := time.Now().Add(-time.Second)
			for i := range replicas {
				replicas[i] = &replica{w: w}
				replicas[i].trip(opened)
				watchers[i] = recovery.New(replicas[i], topo.Client, topo.Prefix+"recovery:", time.Second, slog.New(slog.DiscardHandler))
			}
			stepAll := func() {
				for _, wt := range watchers {
					wt.Step(ctx)
				}
			}

			for range 5 {
				stepAll()
			}
			probers := 0
			for i, r := range replicas {
				if r.probes.Load() > 0 {
					probers++
				}
				if !r.isOpen() {
					t.Errorf("replica %d closed its breaker while the upstream was down", i)
				}
			}
			if probers != 1 {
				t.Fatalf("%d replicas probed during the outage, want 1", probers)
			}

			w.healthy.Store(true)
			stepAll()
			for i, r := range replicas {
				if r.isOpen() {
					t.Errorf("replica %d still open one step after the upstream came back", i)
				}
			}
			var total int64
			for _, r := range replicas {
				total += r.probes.Load()
			}
			if total != 6 {
				t.Errorf("%d probes in 6 steps of the fleet, want 6 (one prober)", total)
			}

			// A later outage: an old healthy answer does not close a breaker that opened after it.
			w.healthy.Store(false)
			for _, r := range replicas {
				r.trip(time.Now().Add(time.Millisecond))
			}
			stepAll()
			for i, r := range replicas {
				if !r.isOpen() {
					t.Errorf("replica %d closed on a healthy answer older than its opening", i)
				}
			}
		})
	}
}

// TestProbesAloneWithoutRedis: with Redis unreachable every replica probes for itself, and still
// closes its breaker when the upstream answers.
func TestProbesAloneWithoutRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	w := &world{}
	r := &replica{w: w}
	r.trip(time.Now())
	wt := recovery.New(r, rdb, "", time.Second, slog.New(slog.DiscardHandler))
	wt.Step(context.Background())
	if r.probes.Load() != 1 || !r.isOpen() {
		t.Fatalf("probes %d, open %v; want one probe and the breaker still open", r.probes.Load(), r.isOpen())
	}
	w.healthy.Store(true)
	wt.Step(context.Background())
	if r.isOpen() {
		t.Error("the breaker stayed open after a healthy probe without Redis")
	}
}

// TestClosedBreakerIsLeftAlone: while the breaker is closed the watcher neither probes nor reads.
func TestClosedBreakerIsLeftAlone(t *testing.T) {
	r := &replica{w: &world{}}
	wt := recovery.New(r, redistest.New(t), "", time.Second, slog.New(slog.DiscardHandler))
	for range 3 {
		wt.Step(context.Background())
	}
	if r.probes.Load() != 0 {
		t.Errorf("%d probes with the breaker closed", r.probes.Load())
	}
}
