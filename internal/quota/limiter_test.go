package quota

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const read = upstream.CategoryRead

func TestRateString(t *testing.T) {
	for r, want := range map[Rate]string{
		{N: 30, Per: time.Minute}: "30/1m", {N: 5, Per: 15 * time.Minute}: "5/15m", {N: 2, Per: time.Hour}: "2/1h",
		{N: 7, Per: 90 * time.Second}: "7/1m30s", {N: 3, Per: 48 * time.Hour}: "3/48h", {}: "0",
	} {
		if got := r.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", r, got, want)
		}
	}
}

// TestParamsNeverExceedWindow checks the GCRA bound of params for many rates: the most calls any
// window of length Per can hold, b + ceil(Per/T) - 1, is never more than N.
func TestParamsNeverExceedWindow(t *testing.T) {
	for n := 1; n <= 120; n++ {
		for _, per := range []time.Duration{time.Second, time.Minute, 15 * time.Minute, time.Hour} {
			for _, burst := range []float64{0.01, 0.2, 0.5, 1} {
				r := Rate{N: n, Per: per}
				p := r.params(burst, 0.2, 0)
				perUS := per.Microseconds()
				most := int64(p.burst) + (perUS+p.T-1)/p.T - 1
				if most > int64(n) || p.burst < 1 || p.burst > n || p.tauBg < 0 || p.tauBg > p.tau {
					t.Fatalf("%v burst %.2f: %+v allows %d per window", r, burst, p, most)
				}
			}
		}
	}
}

func TestAllowNThenRefused(t *testing.T) {
	tests := []struct {
		rate      Rate
		admitted  int
		wantRetry time.Duration
	}{
		{rate: Rate{N: 5, Per: 15 * time.Minute, Burst: 5}, admitted: 5, wantRetry: 15*time.Minute + time.Second},
		{rate: Rate{N: 5, Per: 15 * time.Minute}, admitted: 3, wantRetry: (15*time.Minute + time.Second) / 3},
		{rate: Rate{N: 30, Per: time.Minute}, admitted: 15, wantRetry: (time.Minute + time.Second) / 16},
	}
	for _, tt := range tests {
		rdb := redistest.New(t)
		l := New(rdb, map[upstream.Category]Rate{read: tt.rate})
		ctx := context.Background()
		for i := range tt.admitted {
			d, err := l.Allow(ctx, read)
			if err != nil || !d.Allowed {
				t.Fatalf("%v: call %d refused: %+v, %v", tt.rate, i+1, d, err)
			}
		}
		d, err := l.Allow(ctx, read)
		if err != nil || d.Allowed {
			t.Fatalf("%v: call %d admitted: %+v, %v", tt.rate, tt.admitted+1, d, err)
		}
		if d.RetryAfter > tt.wantRetry || d.RetryAfter < tt.wantRetry-time.Second {
			t.Errorf("%v: RetryAfter %v, want about %v", tt.rate, d.RetryAfter, tt.wantRetry)
		}
	}
}

// TestNeverMoreThanNPerWindow runs 50 goroutines over two limiters (two replicas) on one Redis and
// checks, on the Redis clock, that no window of length Per holds more than N admissions.
func TestNeverMoreThanNPerWindow(t *testing.T) {
	rdb := redistest.New(t)
	rdb2 := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = rdb2.Close() })
	rate := Rate{N: 10, Per: 400 * time.Millisecond}
	limits := map[upstream.Category]Rate{read: rate}
	replicas := []*Limiter{New(rdb, limits, WithMargin(0)), New(rdb2, limits, WithMargin(0))}

	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var admitted []time.Time
	var wg sync.WaitGroup
	for i := range 50 {
		l := replicas[i%2]
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := l.Allow(ctx, read)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Allow: %v", err)
					}
					return
				}
				if d.Allowed {
					mu.Lock()
					admitted = append(admitted, d.At)
					mu.Unlock()
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(d.RetryAfter):
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(admitted, func(a, b time.Time) int { return a.Compare(b) })
	if len(admitted) < rate.N {
		t.Fatalf("only %d admissions", len(admitted))
	}
	for i := 0; i+rate.N < len(admitted); i++ {
		if span := admitted[i+rate.N].Sub(admitted[i]); span < rate.Per {
			t.Fatalf("%d admissions within %v (window %v)", rate.N+1, span, rate.Per)
		}
	}
}

func TestReserveForInteractive(t *testing.T) {
	rdb := redistest.New(t)
	l := New(rdb, map[upstream.Category]Rate{read: {N: 10, Per: time.Hour, Burst: 10}}) // 20% of 10: 2 reserved
	bg := WithBackground(context.Background())
	ctx := context.Background()
	for i := range 8 {
		if d, err := l.Allow(bg, read); err != nil || !d.Allowed {
			t.Fatalf("background call %d refused: %+v, %v", i+1, d, err)
		}
	}
	if d, _ := l.Allow(bg, read); d.Allowed {
		t.Fatal("background admitted into the reserved share")
	}
	if err := l.Wait(bg, read); !errors.Is(err, upstream.ErrRateLimited) {
		t.Fatalf("background Wait: %v, want a rate limit", err)
	}
	for i := range 2 {
		if err := l.Wait(ctx, read); err != nil {
			t.Fatalf("interactive call %d refused while background is: %v", i+1, err)
		}
	}
	if d, _ := l.Allow(ctx, read); d.Allowed {
		t.Fatal("interactive admitted beyond N")
	}
}

func TestWait(t *testing.T) {
	rdb := redistest.New(t)
	reg := prometheus.NewRegistry()
	limits := map[upstream.Category]Rate{read: {N: 2, Per: 200 * time.Millisecond, Burst: 1}} // one every 100ms
	l := New(rdb, limits, WithMargin(0), WithMetrics(reg))
	ctx := context.Background()

	if err := l.Wait(ctx, read); err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(ctx, read); err != nil {
		t.Fatalf("Wait within the maximum wait: %v", err)
	}
	if n := counter(t, l.metrics.waits.WithLabelValues("read", "interactive")); n != 1 {
		t.Errorf("quota_waits_total %v, want 1", n)
	}

	short := New(rdb, limits, WithMargin(0), WithMaxWait(10*time.Millisecond, time.Minute), WithMetrics(reg))
	err := short.Wait(ctx, read)
	var rle *upstream.RateLimitError
	if !errors.As(err, &rle) || rle.Source != "gateway" || rle.RetryAfter <= 0 || rle.RetryAfter > 100*time.Millisecond {
		t.Fatalf("Wait beyond the maximum: %v, want a gateway RateLimitError", err)
	}
	if n := counter(t, l.metrics.rejections.WithLabelValues("read", "interactive")); n != 1 {
		t.Errorf("quota_rejections_total %v, want 1", n)
	}

	_ = l.Wait(ctx, read) // take the next place, so that the next call must wait ~100ms
	dctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if err := l.Wait(dctx, read); !errors.Is(err, upstream.ErrRateLimited) || dctx.Err() != nil {
		t.Fatalf("Wait past the deadline: %v (ctx %v), want a rate limit at once", err, dctx.Err())
	}
}

func TestWaitCanceled(t *testing.T) {
	rdb := redistest.New(t)
	l := New(rdb, map[upstream.Category]Rate{read: {N: 1, Per: time.Second}}, WithMargin(0), WithMaxWait(5*time.Second, 5*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Wait(ctx, read); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := l.Wait(ctx, read)
	if !errors.Is(err, context.Canceled) || errors.Is(err, upstream.ErrRateLimited) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Errorf("Wait returned %v after cancel", time.Since(start))
	}
}

func deadRedis() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
}

func TestRedisFailure(t *testing.T) {
	rdb := deadRedis()
	defer rdb.Close()
	l := New(rdb, map[upstream.Category]Rate{read: {N: 5, Per: time.Minute}})
	err := l.Wait(context.Background(), read)
	if err == nil || errors.Is(err, upstream.ErrRateLimited) || errors.Is(err, upstream.ErrAuthFailed) ||
		!strings.HasPrefix(err.Error(), "quota: redis: ") {
		t.Fatalf("error %v, want a quota: redis: error that is no rate limit", err)
	}
	// Unlimited categories never ask Redis.
	if err := l.Wait(context.Background(), upstream.CategorySend); err != nil {
		t.Errorf("unlimited category: %v", err)
	}
}

func TestLocalFallback(t *testing.T) {
	rdb := deadRedis()
	defer rdb.Close()
	l := New(rdb, map[upstream.Category]Rate{read: {N: 10, Per: time.Hour, Burst: 10}}, WithLocalFallback(0.5), WithReserve(0))
	for i := range 5 {
		if err := l.Wait(context.Background(), read); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if err := l.Wait(context.Background(), read); !errors.Is(err, upstream.ErrRateLimited) {
		t.Fatalf("call 6: %v, want a rate limit (half of 10 per replica)", err)
	}
}

func TestInvalidRateFailsClosed(t *testing.T) {
	l := New(deadRedis(), map[upstream.Category]Rate{read: {N: 5}})
	err := l.Wait(context.Background(), read)
	if err == nil || errors.Is(err, upstream.ErrRateLimited) {
		t.Fatalf("error %v, want a configuration error", err)
	}
}

func TestGlobalLimit(t *testing.T) {
	rdb := redistest.New(t)
	l := New(rdb, map[upstream.Category]Rate{
		read:                  {N: 30, Per: time.Hour, Burst: 30},
		upstream.CategorySend: {N: 10, Per: time.Hour, Burst: 10},
		CategoryGlobal:        {N: 4, Per: time.Hour, Burst: 4},
	}, WithReserve(0))
	ctx := context.Background()
	for _, c := range []upstream.Category{read, read, upstream.CategorySend, upstream.CategoryAuth} {
		if d, err := l.Allow(ctx, c); err != nil || !d.Allowed {
			t.Fatalf("%s refused: %+v, %v", c, d, err)
		}
	}
	before, err := rdb.Get(ctx, DefaultKeyPrefix+"read").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Allow(ctx, read); d.Allowed {
		t.Fatal("read admitted beyond the global limit")
	}
	// A refusal by the global bucket does not spend the category's.
	if after, _ := rdb.Get(ctx, DefaultKeyPrefix+"read").Int64(); after != before {
		t.Errorf("read bucket moved from %d to %d on a refused call", before, after)
	}
}

func counter(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}

func BenchmarkLimiterAllow(b *testing.B) {
	rdb := redistest.New(b)
	l := New(rdb, map[upstream.Category]Rate{read: {N: 1_000_000_000, Per: time.Second}})
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Allow(ctx, read); err != nil {
			b.Fatal(err)
		}
	}
}
