package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

func TestOneHolderAtATime(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	a, b := New(rdb, "l", time.Second), New(rdb, "l", time.Second)
	if ok, err := a.Acquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	if ok, _ := b.Acquire(ctx); ok {
		t.Fatal("b acquired a held lease")
	}
	if ok, _ := b.Renew(ctx); ok {
		t.Fatal("b renewed a's lease")
	}
	_ = b.Release(ctx)
	if v := rdb.Get(ctx, "l").Val(); v != a.Token() {
		t.Fatal("b released a's lease")
	}
	if ok, _ := a.Acquire(ctx); !ok {
		t.Fatal("the holder could not acquire again")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Acquire(ctx); !ok {
		t.Fatal("b could not take the released lease")
	}
}

func TestHoldRenewsAndReleases(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	l := New(rdb, "held", 300*time.Millisecond)
	if ok, _ := l.Acquire(ctx); !ok {
		t.Fatal("acquire")
	}
	err := l.Hold(ctx, func(ctx context.Context) error {
		// Three TTLs: without renewal the key would have expired.
		deadline := time.Now().Add(900 * time.Millisecond)
		for time.Now().Before(deadline) {
			if rdb.Get(ctx, "held").Val() != l.Token() {
				return errors.New("lease expired while held")
			}
			time.Sleep(20 * time.Millisecond) // lets time pass: the key is sampled while three TTLs go by
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "held").Val(); n != 0 {
		t.Fatal("lease not released after the work")
	}
}

func TestHoldStopsWorkWhenLost(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	l := New(rdb, "stolen", 300*time.Millisecond)
	if ok, _ := l.Acquire(ctx); !ok {
		t.Fatal("acquire")
	}
	err := l.Hold(ctx, func(ctx context.Context) error {
		rdb.Set(ctx, "stolen", "someone-else", 0)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("work not stopped after the lease was lost")
		}
	})
	if !errors.Is(err, ErrLost) {
		t.Fatalf("Hold returned %v, want ErrLost", err)
	}
	if v := rdb.Get(ctx, "stolen").Val(); v != "someone-else" {
		t.Fatal("the other holder's key was released")
	}
}
