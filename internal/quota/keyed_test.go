package quota

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

func TestKeyedBurstThenRefused(t *testing.T) {
	tests := []struct {
		rate      Rate
		admitted  int
		wantRetry time.Duration // about Per/N: one request's worth
	}{
		{rate: Rate{N: 4, Per: time.Hour}, admitted: 4, wantRetry: 15 * time.Minute},
		{rate: Rate{N: 10, Per: time.Hour, Burst: 3}, admitted: 3, wantRetry: 6 * time.Minute},
		{rate: Rate{N: 1, Per: time.Minute}, admitted: 1, wantRetry: time.Minute},
	}
	for _, tt := range tests {
		rdb := redistest.New(t)
		k, err := NewKeyed(rdb, tt.rate, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := range tt.admitted {
			d, err := k.Allow(ctx, "crm")
			if err != nil || !d.Allowed {
				t.Fatalf("%v: request %d refused: %+v, %v", tt.rate, i+1, d, err)
			}
			if want := tt.admitted - i - 1; d.Remaining != want || d.Limit != tt.admitted {
				t.Errorf("%v: request %d: remaining %d of %d, want %d of %d", tt.rate, i+1, d.Remaining, d.Limit, want, tt.admitted)
			}
		}
		d, err := k.Allow(ctx, "crm")
		if err != nil || d.Allowed {
			t.Fatalf("%v: request %d admitted: %+v, %v", tt.rate, tt.admitted+1, d, err)
		}
		if d.Remaining != 0 || d.RetryAfter > tt.wantRetry || d.RetryAfter < tt.wantRetry-time.Second {
			t.Errorf("%v: refused with remaining %d, RetryAfter %v; want 0, about %v", tt.rate, d.Remaining, d.RetryAfter, tt.wantRetry)
		}
		if full := time.Duration(tt.admitted) * tt.wantRetry; d.Reset > full || d.Reset < full-time.Second {
			t.Errorf("%v: Reset %v, want about %v", tt.rate, d.Reset, full)
		}
		// Another key has a budget of its own.
		if d, err := k.Allow(ctx, "other"); err != nil || !d.Allowed {
			t.Errorf("%v: another key refused: %+v, %v", tt.rate, d, err)
		}
	}
}

func TestKeyedSharedAcrossReplicas(t *testing.T) {
	rdb := redistest.New(t)
	rdb2 := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = rdb2.Close() })
	rate := Rate{N: 6, Per: time.Hour}
	a, _ := NewKeyed(rdb, rate, "p:")
	b, _ := NewKeyed(rdb2, rate, "p:")
	ctx := context.Background()
	admitted := 0
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if d, err := l.Allow(ctx, "crm"); err != nil {
			t.Fatal(err)
		} else if d.Allowed {
			admitted++
		}
	}
	if admitted != 6 {
		t.Errorf("two replicas admitted %d requests of one key, want 6", admitted)
	}
	if n, _ := rdb.Exists(ctx, "p:crm").Result(); n != 1 {
		t.Errorf("key p:crm not in Redis")
	}
}

func TestKeyedUnlimitedInvalidAndRedisDown(t *testing.T) {
	rdb := deadRedis()
	defer rdb.Close()
	k, err := NewKeyed(rdb, Rate{}, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if d, err := k.Allow(context.Background(), "crm"); err != nil || !d.Allowed {
			t.Fatalf("unlimited rate: %+v, %v", d, err)
		}
	}
	if _, err := NewKeyed(rdb, Rate{N: 5}, ""); err == nil {
		t.Error("NewKeyed accepted a rate without a period")
	}
	k, _ = NewKeyed(rdb, Rate{N: 5, Per: time.Minute}, "")
	if _, err := k.Allow(context.Background(), "crm"); err == nil || !strings.HasPrefix(err.Error(), "quota: redis: ") {
		t.Errorf("error %v, want a quota: redis: error", err)
	}
}
