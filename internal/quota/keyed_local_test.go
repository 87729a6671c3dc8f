package quota

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestLocalKeyedDecidesAsKeyed: the same rate admits the same burst, refuses with the same wait,
// and Wait (which counts nothing) agrees, in Redis and in process.
func TestLocalKeyedDecidesAsKeyed(t *testing.T) {
	rate := Rate{N: 3, Per: time.Hour}
	k, err := NewKeyed(redistest.New(t), rate, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLocalKeyed(rate, 10)
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Now()
	for i := range 4 {
		wantAllowed := i < 3
		wait, err := k.Wait(ctx, "crm")
		if err != nil || (wait == 0) != wantAllowed {
			t.Fatalf("Keyed.Wait before request %d = %v, %v", i+1, wait, err)
		}
		if lw := l.Wait("crm", now); (lw == 0) != wantAllowed {
			t.Fatalf("LocalKeyed.Wait before request %d = %v", i+1, lw)
		}
		rd, err := k.Allow(ctx, "crm")
		if err != nil {
			t.Fatal(err)
		}
		ld := l.AllowN("crm", 1, now)
		if rd.Allowed != wantAllowed || ld.Allowed != wantAllowed || rd.Remaining != ld.Remaining || rd.Limit != ld.Limit {
			t.Fatalf("request %d: Redis %+v, local %+v; want allowed=%v and the same counts", i+1, rd, ld, wantAllowed)
		}
		if !wantAllowed {
			if d := rd.RetryAfter - ld.RetryAfter; d > time.Second || d < -time.Second || ld.RetryAfter < 19*time.Minute {
				t.Errorf("RetryAfter: Redis %v, local %v; want both about 20m", rd.RetryAfter, ld.RetryAfter)
			}
			if w, _ := k.Wait(ctx, "crm"); w < 19*time.Minute {
				t.Errorf("Keyed.Wait after the refusal = %v, want about 20m", w)
			}
			if w := l.Wait("crm", now); w != ld.RetryAfter {
				t.Errorf("LocalKeyed.Wait after the refusal = %v, want %v", w, ld.RetryAfter)
			}
		}
	}
	// Time passing refills the local bucket, as it does the Redis one.
	if d := l.AllowN("crm", 1, now.Add(20*time.Minute+time.Second)); !d.Allowed {
		t.Errorf("20 minutes later: %+v, want admitted", d)
	}
}

// TestLocalKeyedIsBounded: a stream of new keys (an attacker's addresses) never grows the limiter
// past its size; the keys forgotten are the least recently used.
func TestLocalKeyedIsBounded(t *testing.T) {
	l, err := NewLocalKeyed(Rate{N: 1, Per: time.Hour}, 100)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l.AllowN("busy", 1, now)
	for i := range 10_000 {
		l.AllowN(fmt.Sprintf("addr-%d", i), 1, now)
		if i%50 == 0 {
			l.AllowN("busy", 1, now) // refused, but used: stays remembered
		}
		if n := l.Len(); n > 100 {
			t.Fatalf("after %d keys the limiter remembers %d, want at most 100", i+1, n)
		}
	}
	if d := l.AllowN("busy", 1, now); d.Allowed {
		t.Error("a key in use was forgotten: its spent budget came back")
	}
	if d := l.AllowN("addr-0", 1, now); !d.Allowed {
		t.Error("the least recently used key was not the one forgotten")
	}
	if _, err := NewLocalKeyed(Rate{N: 5}, 10); err == nil {
		t.Error("NewLocalKeyed accepted a rate without a period")
	}
	u, _ := NewLocalKeyed(Rate{}, 1)
	for range 3 {
		if d := u.AllowN("x", 1, now); !d.Allowed || u.Len() != 0 {
			t.Fatalf("unlimited: %+v, %d keys", d, u.Len())
		}
	}
}
