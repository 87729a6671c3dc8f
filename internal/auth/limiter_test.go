package auth

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// limitedRouter is a router whose /v1 routes authenticate with f's keys and tokens, then count
// against l.
func limitedRouter(t *testing.T, f *fixture, l *CallerLimiter) *gin.Engine {
	t.Helper()
	a, err := New(f.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	return router(&syncBuffer{}, nil, a.Middleware(), l.Middleware())
}

func TestCallerLimiterBudget(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	l := NewCallerLimiter(redistest.New(t), quota.Rate{N: 3, Per: time.Hour}, WithLimiterMetrics(reg))
	r := limitedRouter(t, f, l)
	crm := hdr("X-API-Key", f.readKey)
	for i := range 3 {
		a := do(r, http.MethodGet, "/v1/whoami", crm)
		if a.status != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200; %s", i+1, a.status, a.body)
		}
		if got, want := a.header.Get("RateLimit-Remaining"), strconv.Itoa(2-i); got != want || a.header.Get("RateLimit-Limit") != "3" {
			t.Errorf("request %d: RateLimit-Remaining %q of %q, want %s of 3", i+1, got, a.header.Get("RateLimit-Limit"), want)
		}
		if got := a.header.Get("RateLimit-Policy"); got != "3;w=3600;burst=3" {
			t.Errorf("RateLimit-Policy %q", got)
		}
	}
	a := do(r, http.MethodGet, "/v1/whoami", crm)
	d := problemOf(t, a, http.StatusTooManyRequests, problem.CodeRateLimited)
	retry, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || retry < 1190 || retry > 1200 {
		t.Errorf("Retry-After %q, want about 1200 (one request's worth of 3/1h)", a.header.Get("Retry-After"))
	}
	if d.RetryAfter != retry || !strings.Contains(d.Detail, `"crm"`) {
		t.Errorf("problem %+v, want retryAfter %d and the caller's name", d, retry)
	}
	if a.header.Get("RateLimit-Remaining") != "0" {
		t.Errorf("RateLimit-Remaining %q on a 429, want 0", a.header.Get("RateLimit-Remaining"))
	}
	if reset, _ := strconv.Atoi(a.header.Get("RateLimit-Reset")); reset < 3590 || reset > 3600 {
		t.Errorf("RateLimit-Reset %q, want about 3600", a.header.Get("RateLimit-Reset"))
	}
	if got := metricValue(t, reg, "caller_rate_limited_total", map[string]string{"caller": "crm"}); got != 1 {
		t.Errorf("caller_rate_limited_total{caller=crm} = %v, want 1", got)
	}

	// Other callers have budgets of their own, including an API key named like a JWT caller.
	for name, h := range map[string]map[string][]string{
		"ops":                      hdr("X-API-Key", f.adminKey),
		"jwt:alice (token)":        hdr("Authorization", "Bearer "+f.hs(t, claims())),
		"jwt:alice (a key's name)": hdr("X-API-Key", f.jwtLikeKey),
	} {
		for i := range 3 {
			if a := do(r, http.MethodGet, "/v1/whoami", h); a.status != http.StatusOK {
				t.Errorf("%s, request %d: status %d, want 200", name, i+1, a.status)
			}
		}
		if a := do(r, http.MethodGet, "/v1/whoami", h); a.status != http.StatusTooManyRequests {
			t.Errorf("%s, request 4: status %d, want 429", name, a.status)
		}
	}
}

func TestCallerLimiterSharedByReplicas(t *testing.T) {
	f := newFixture(t)
	rdb := redistest.New(t)
	rdb2 := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = rdb2.Close() })
	rate := quota.Rate{N: 4, Per: time.Hour}
	replicas := []*gin.Engine{limitedRouter(t, f, NewCallerLimiter(rdb, rate)), limitedRouter(t, f, NewCallerLimiter(rdb2, rate))}
	crm := hdr("X-API-Key", f.readKey)
	for i := range 4 {
		if a := do(replicas[i%2], http.MethodGet, "/v1/whoami", crm); a.status != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i+1, a.status)
		}
	}
	for i, r := range replicas {
		if a := do(r, http.MethodGet, "/v1/whoami", crm); a.status != http.StatusTooManyRequests {
			t.Errorf("replica %d after the shared budget: status %d, want 429", i+1, a.status)
		}
	}
}

func deadRedis() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
}

// TestCallerLimiterLimitsLocallyWithoutRedis: with Redis unreachable, each caller still gets
// only its rate (on this replica), with the usual 429 and headers, instead of no limit at all.
func TestCallerLimiterLimitsLocallyWithoutRedis(t *testing.T) {
	f := newFixture(t)
	rdb := deadRedis()
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	l := NewCallerLimiter(rdb, quota.Rate{N: 2, Per: time.Hour}, WithLimiterMetrics(reg), WithLimiterLogger(newLogger(logs)))
	r := limitedRouter(t, f, l)
	crm := hdr("X-API-Key", f.readKey)
	for i := range 2 {
		a := do(r, http.MethodGet, "/v1/whoami", crm)
		if a.status != http.StatusOK || a.header.Get("RateLimit-Limit") != "2" || a.header.Get("RateLimit-Remaining") != strconv.Itoa(1-i) {
			t.Fatalf("request %d with Redis down: status %d, RateLimit-Limit %q, Remaining %q; want 200, 2, %d",
				i+1, a.status, a.header.Get("RateLimit-Limit"), a.header.Get("RateLimit-Remaining"), 1-i)
		}
	}
	a := do(r, http.MethodGet, "/v1/whoami", crm)
	problemOf(t, a, http.StatusTooManyRequests, problem.CodeRateLimited)
	if retry, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || retry < 1790 || retry > 1800 {
		t.Errorf("Retry-After %q, want about 1800 (one request's worth of 2/1h)", a.header.Get("Retry-After"))
	}
	if l := leaks(a.body, f.readKey); l != nil {
		t.Error("the 429 repeats the key")
	}
	// Another caller has its own local budget.
	if a := do(r, http.MethodGet, "/v1/whoami", hdr("X-API-Key", f.adminKey)); a.status != http.StatusOK {
		t.Errorf("another caller with Redis down: %d, want 200", a.status)
	}
	if got := metricValue(t, reg, "caller_rate_limit_errors_total", nil); got != 4 {
		t.Errorf("caller_rate_limit_errors_total = %v, want 4", got)
	}
	if n := strings.Count(logs.String(), "Redis failed"); n != 1 {
		t.Errorf("%d warnings about Redis, want 1:\n%s", n, logs.String())
	}
}

func TestCallerLimiterUnlimitedAndMisplaced(t *testing.T) {
	f := newFixture(t)
	rdb := deadRedis()
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	r := limitedRouter(t, f, NewCallerLimiter(rdb, quota.Rate{}, WithLimiterMetrics(reg)))
	for i := range 5 {
		a := do(r, http.MethodGet, "/v1/whoami", hdr("X-API-Key", f.readKey))
		if a.status != http.StatusOK || a.header.Get("RateLimit-Limit") != "" {
			t.Fatalf("request %d, rate 0: status %d, RateLimit-Limit %q; want 200 and none", i+1, a.status, a.header.Get("RateLimit-Limit"))
		}
	}
	if got := metricValue(t, reg, "caller_rate_limit_errors_total", nil); got != 0 {
		t.Errorf("rate 0 asked Redis (%v errors)", got)
	}

	// Before authentication (a wiring mistake) and with an invalid rate, the limiter refuses.
	bare := router(&syncBuffer{}, nil, NewCallerLimiter(redistest.New(t), quota.Rate{N: 5, Per: time.Minute}).Middleware())
	problemOf(t, do(bare, http.MethodGet, "/v1/whoami", hdr("X-API-Key", f.readKey)), http.StatusInternalServerError, problem.CodeInternal)
	invalid := limitedRouter(t, f, NewCallerLimiter(rdb, quota.Rate{N: 5}))
	problemOf(t, do(invalid, http.MethodGet, "/v1/whoami", hdr("X-API-Key", f.readKey)), http.StatusInternalServerError, problem.CodeInternal)
}

func TestCallerLimiterRedisOutageAndReturn(t *testing.T) {
	f := newFixture(t)
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	defer rdb.Close()
	logs := &syncBuffer{}
	r := limitedRouter(t, f, NewCallerLimiter(rdb, quota.Rate{N: 3, Per: time.Hour}, WithLimiterLogger(newLogger(logs))))
	crm := hdr("X-API-Key", f.readKey)
	statuses := func(n int) []int {
		var out []int
		for range n {
			out = append(out, do(r, http.MethodGet, "/v1/whoami", crm).status)
		}
		return out
	}
	// One of three places taken in Redis.
	if got := statuses(1); !slices.Equal(got, []int{http.StatusOK}) {
		t.Fatalf("with Redis up: %v, want [200]", got)
	}
	// Redis down: the replica's own bucket of the same rate, fresh.
	srv.Stop()
	if got := statuses(5); !slices.Equal(got, []int{200, 200, 200, 429, 429}) {
		t.Fatalf("with Redis down: %v, want the rate's burst of 3 then 429", got)
	}
	// Redis back (restarted empty): the decisions are Redis' again, where the caller has a fresh
	// bucket of which the request that sees Redis answer takes one; the local bucket, spent, would
	// refuse.
	srv.Restart(t)
	wait.UntilShowing(t, 5*time.Second, "Redis used again after it came back", func() bool {
		if strings.Contains(logs.String(), "Redis is back") {
			return true
		}
		do(r, http.MethodGet, "/v1/whoami", crm)
		return false
	}, logs.String)
	if got := statuses(3); !slices.Equal(got, []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests}) {
		t.Errorf("after Redis came back: %v, want [200 200 429] (the rest of the Redis bucket, then none)", got)
	}
}

// TestCallerLimiterLeasesStayWithinTheLimit: with a rate large enough for leases of several
// places, two replicas sharing Redis together admit no more than the limit, and at most one lease
// of unspent places per replica less; and Redis sees one decision per lease, not per request.
func TestCallerLimiterLeasesStayWithinTheLimit(t *testing.T) {
	f := newFixture(t)
	rate := quota.Rate{N: 1000, Per: time.Hour} // lease of 10 places, burst 1000
	if got := leaseSizeFor(rate); got != 10 {
		t.Fatalf("lease size = %d, want 10", got)
	}
	opts := redistest.New(t).Options()
	var calls [2]atomic.Int64
	var routers [2]*gin.Engine
	for i := range routers {
		rdb := redis.NewClient(opts)
		t.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(countEvals{n: &calls[i]})
		routers[i] = limitedRouter(t, f, NewCallerLimiter(rdb, rate))
	}
	crm := hdr("X-API-Key", f.readKey)
	admitted := 0
	for i := range 1200 {
		if a := do(routers[i%2], http.MethodGet, "/v1/whoami", crm); a.status == http.StatusOK {
			admitted++
		}
	}
	// Each replica may end holding up to one and a half leases it did not spend (the lease in use
	// and the one taken ahead of time).
	if admitted > 1000 || admitted < 1000-2*15 {
		t.Errorf("admitted %d of 1200, want at most 1000 and at least 970", admitted)
	}
	if total := calls[0].Load() + calls[1].Load(); total > 1200/10+40 {
		t.Errorf("%d Redis decisions for 1200 requests, want about one per lease of 10", total)
	}
}

// countEvals counts the scripts a Redis client runs.
type countEvals struct{ n *atomic.Int64 }

func (h countEvals) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countEvals) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h countEvals) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// TestCallerLimiterRemembersBoundedCallers: many distinct callers (JWT subjects are not a closed
// list) keep at most the bound of leases in memory, least recently used dropped first, and every
// caller is still limited: a caller whose lease was dropped takes its places from the fleet-wide
// bucket again, so it never gets more than its rate.
func TestCallerLimiterRemembersBoundedCallers(t *testing.T) {
	l := NewCallerLimiter(redistest.New(t), quota.Rate{N: 2, Per: time.Hour})
	const bound = 50
	l.leases.Resize(bound)
	ctx := context.Background()
	for round := range 3 {
		for i := range 4 * bound {
			d, err := l.allow(ctx, "jwt/subject-"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			if want := round < 2; d.Allowed != want {
				t.Fatalf("round %d, caller %d: allowed %v, want %v (2 per hour)", round, i, d.Allowed, want)
			}
		}
		if n := l.leases.Len(); n > bound {
			t.Fatalf("%d callers remembered, bound %d", n, bound)
		}
	}
}

// TestCounts: the RateLimit-Remaining and -Reset values are the decimal numbers, shared for small
// ones, and an Add to one value (a later middleware) never writes into the other's.
func TestCounts(t *testing.T) {
	for _, tt := range []struct{ a, b int }{{0, 0}, {5, 1023}, {1024, 3600}, {99999999, 7}, {-1, 60}} {
		va, vb := counts(tt.a, tt.b)
		if len(va) != 1 || len(vb) != 1 || va[0] != strconv.Itoa(tt.a) || vb[0] != strconv.Itoa(tt.b) {
			t.Errorf("counts(%d, %d) = %q, %q", tt.a, tt.b, va, vb)
		}
		h := http.Header{"A": va, "B": vb}
		h.Add("A", "extra")
		if h.Get("B") != strconv.Itoa(tt.b) || len(h["B"]) != 1 {
			t.Errorf("counts(%d, %d): an Add to the first changed the second: %q", tt.a, tt.b, h["B"])
		}
	}
}
