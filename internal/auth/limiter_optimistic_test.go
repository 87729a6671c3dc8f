package auth

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// fakeClock is the limiters' clock in these tests: leases end when the test says so, not after
// a second of a loaded machine. (Redis keeps its own clock: the rates below are slow enough that
// no place comes back while a test runs.)
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestCallerLimiterOptimisticOvershootIsBounded: a caller hammering concurrently on several
// replicas over one Redis, every replica's lease ending between rounds (so each first request of
// a round may be admitted on a stale state), never gets more than its budget plus one request per
// replica, and gets its whole budget.
func TestCallerLimiterOptimisticOvershootIsBounded(t *testing.T) {
	f := newFixture(t)
	rate := quota.Rate{N: 150, Per: 24 * time.Hour} // single places (no lease), none back within the test
	opts := redistest.New(t).Options()
	clock := newFakeClock()
	const replicas, concurrent, rounds = 3, 8, 10
	var routers [replicas]*gin.Engine
	for i := range routers {
		rdb := redis.NewClient(opts)
		t.Cleanup(func() { _ = rdb.Close() })
		l := NewCallerLimiter(rdb, rate)
		l.now = clock.Now
		routers[i] = limitedRouter(t, f, l)
	}
	crm := hdr("X-API-Key", f.readKey)
	var admitted atomic.Int64
	for range rounds {
		clock.Advance(leaseTTL) // every replica's lease has ended: its state may be admitted on
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, r := range routers {
			for range concurrent {
				wg.Go(func() {
					<-start
					if do(r, http.MethodGet, "/v1/whoami", crm).status == http.StatusOK {
						admitted.Add(1)
					}
				})
			}
		}
		close(start)
		wg.Wait()
	}
	n := admitted.Load()
	t.Logf("admitted %d of %d requests, budget %d", n, replicas*concurrent*rounds, rate.N)
	if n < int64(rate.N) || n > int64(rate.N+replicas) {
		t.Errorf("admitted %d, want from %d (the budget) to %d (one more per replica)", n, rate.N, rate.N+replicas)
	}
}

// requestCtx marks the context of a request, so that a hook tells the Redis calls a request waits
// for from those made in the background.
type requestCtx struct{}

// countDecisions counts, once answered, the scripts run for a request (synchronously) and those
// run in the background.
type countDecisions struct{ sync, background *atomic.Int64 }

func (h countDecisions) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countDecisions) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h countDecisions) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return err // go-redis sends the script itself next: one decision
		}
		if ctx.Value(requestCtx{}) != nil {
			h.sync.Add(1)
		} else {
			h.background.Add(1)
		}
		return err
	}
}

// countedLimiter is a limiter of rate over a Redis database of the test's own whose scripts are
// counted (calls), on a clock the test moves, with the context a request's Redis calls carry.
func countedLimiter(t *testing.T, rate quota.Rate) (*CallerLimiter, *redis.Client, countDecisions, *fakeClock, context.Context) {
	t.Helper()
	rdb := redistest.New(t)
	calls := countDecisions{sync: new(atomic.Int64), background: new(atomic.Int64)}
	rdb.AddHook(calls)
	l := NewCallerLimiter(rdb, rate)
	clock := newFakeClock()
	l.now = clock.Now
	return l, rdb, calls, clock, context.WithValue(context.Background(), requestCtx{}, true)
}

// TestCallerLimiterSlowCallerCostsNoRoundTrip: a caller making a request now and then (its lease
// ended each time) waits for Redis on its first request only; each later one is admitted at once
// and charged in the background, and the bucket in Redis counts every one of them.
func TestCallerLimiterSlowCallerCostsNoRoundTrip(t *testing.T) {
	rate := quota.Rate{N: 1000, Per: 24 * time.Hour} // leases of 10 places
	l, rdb, calls, clock, ctx := countedLimiter(t, rate)

	d, err := l.allow(ctx, "crm")
	if err != nil || !d.Allowed || d.Remaining != 999 || calls.sync.Load() != 1 {
		t.Fatalf("first request: %+v, %v, %d Redis calls; want admitted, 999 left, 1 call", d, err, calls.sync.Load())
	}
	const later = 5
	for i := 1; i <= later; i++ {
		clock.Advance(leaseTTL) // the lease of the request before has ended
		d, err := l.allow(ctx, "crm")
		if err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v; want admitted", i+1, d, err)
		}
		// 990 left in Redis after the first request's lease of 10 (whose unspent places are gone),
		// less this replica's requests since.
		if d.Remaining != 990-i {
			t.Errorf("request %d: %d left, want %d", i+1, d.Remaining, 990-i)
		}
		if n := calls.sync.Load(); n != 1 {
			t.Fatalf("request %d waited for Redis (%d calls for requests in all), want no round trip after the first", i+1, n)
		}
		wait.Until(t, 5*time.Second, "the request's charge to reach Redis", func() bool { return calls.background.Load() == int64(i) })
	}
	// Redis counts the lease of 10 and the five charges: 985 places left.
	check, err := quota.NewKeyed(rdb, rate, DefaultCallerKeyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := check.AllowN(context.Background(), "crm", 986); err != nil || d.Allowed {
		t.Errorf("986 places taken from the bucket in Redis: %+v, %v; want refused (985 left)", d, err)
	}
	if d, err := check.AllowN(context.Background(), "crm", 985); err != nil || !d.Allowed {
		t.Errorf("985 places taken from the bucket in Redis: %+v, %v; want admitted", d, err)
	}
}

// TestCallerLimiterOptimisticAdmissionWithRedisDown: a caller admitted optimistically just as
// Redis goes down is counted in the replica's own bucket when its charge fails, so the replica
// decides as it did without the optimistic admission: the rate's burst, then 429.
func TestCallerLimiterOptimisticAdmissionWithRedisDown(t *testing.T) {
	f := newFixture(t)
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	l := NewCallerLimiter(rdb, quota.Rate{N: 3, Per: time.Hour}, WithLimiterMetrics(reg))
	clock := newFakeClock()
	l.now = clock.Now
	r := limitedRouter(t, f, l)
	crm := hdr("X-API-Key", f.readKey)
	if a := do(r, http.MethodGet, "/v1/whoami", crm); a.status != http.StatusOK {
		t.Fatalf("with Redis up: %d, want 200", a.status)
	}
	srv.Stop()
	clock.Advance(leaseTTL) // the caller's state (2 left) would admit the next request at once
	var got []int
	for range 4 {
		got = append(got, do(r, http.MethodGet, "/v1/whoami", crm).status)
	}
	if !slices.Equal(got, []int{200, 200, 200, 429}) {
		t.Errorf("with Redis down: %v, want the rate's burst of 3 then 429", got)
	}
	if n := metricValue(t, reg, "caller_rate_limit_errors_total", nil); n != 4 {
		t.Errorf("caller_rate_limit_errors_total = %v, want 4 (the charge and three decisions)", n)
	}
}

// TestCallerLimiterBusyCallerGoesBackToLeases: a caller admitted optimistically after a quiet
// spell, then busy again, spends a lease: its requests do not each wait for the charge of the one
// before (a round trip per request, which held a busy caller to one request per round trip).
func TestCallerLimiterBusyCallerGoesBackToLeases(t *testing.T) {
	rate := quota.Rate{N: 100000, Per: 24 * time.Hour} // leases of 200 places
	l, _, calls, clock, ctx := countedLimiter(t, rate)
	if d, err := l.allow(ctx, "crm"); err != nil || !d.Allowed {
		t.Fatalf("first request: %+v, %v; want admitted", d, err)
	}
	clock.Advance(leaseTTL) // a quiet spell: the lease has ended, the state admits optimistically
	const busy = 100
	for i := range busy {
		if d, err := l.allow(ctx, "crm"); err != nil || !d.Allowed {
			t.Fatalf("request %d of the busy run: %+v, %v; want admitted", i+1, d, err)
		}
	}
	wait.Until(t, 5*time.Second, "the background calls to answer", func() bool {
		ls, _ := l.leases.Get("crm")
		ls.mu.Lock()
		defer ls.mu.Unlock()
		return ls.inflight == nil
	})
	// The first lease, the optimistic admission's charge, one lease for the busy run, and at most
	// one refill as that lease ran low.
	if s, b := calls.sync.Load(), calls.background.Load(); s+b > 4 {
		t.Errorf("%d requests of a busy caller cost %d Redis calls (%d waited for), want at most 4", busy+1, s+b, s)
	}
}
