package lease

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// recv waits for what a renewal reports on ch, at most 10 s.
func recv(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// TestStartTellsTheHolderWhenLost: a background renewal keeps the lease past its TTL, notices
// another holder at its next renewal (OnLost with ErrLost, once; Lost true), and stops renewing.
func TestStartTellsTheHolderWhenLost(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	l := New(rdb, "kept", 300*time.Millisecond)
	if ok, _ := l.Acquire(ctx); !ok {
		t.Fatal("acquire")
	}
	var lost atomic.Int32
	var lostErr atomic.Value
	k := l.Start(ctx, KeepOptions{OnLost: func(err error) { lostErr.Store(err); lost.Add(1) }})
	defer k.Stop()
	// Renewed: the key outlives three TTLs (a renewal each TTL/3 extends it).
	before := time.Now()
	for time.Since(before) < 900*time.Millisecond {
		if rdb.Get(ctx, "kept").Val() != l.Token() {
			t.Fatal("the lease expired while renewed in the background")
		}
		time.Sleep(20 * time.Millisecond) // lets time pass: the key is sampled while three TTLs go by
	}
	if k.Lost() {
		t.Fatal("lost while held")
	}
	rdb.Set(ctx, "kept", "someone-else", 0)
	wait.Until(t, 10*time.Second, "OnLost", func() bool { return lost.Load() == 1 })
	if err, _ := lostErr.Load().(error); !errors.Is(err, ErrLost) || !k.Lost() {
		t.Fatalf("OnLost(%v), Lost() = %v; want ErrLost and true", err, k.Lost())
	}
	k.Stop()
	if lost.Load() != 1 || rdb.Get(ctx, "kept").Val() != "someone-else" {
		t.Fatal("OnLost called again, or the other holder's key was touched")
	}
}

// TestStopKeepsReleaseGivesUp: Stop ends the renewal and leaves the key to expire; Release gives
// it up at once, even when the holder's context has ended.
func TestStopKeepsReleaseGivesUp(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	a := New(rdb, "stop", time.Minute)
	if ok, _ := a.Acquire(ctx); !ok {
		t.Fatal("acquire a")
	}
	a.Start(ctx, KeepOptions{}).Stop()
	if rdb.Get(ctx, "stop").Val() != a.Token() {
		t.Fatal("Stop released the lease")
	}
	b := New(rdb, "release", time.Minute)
	if ok, _ := b.Acquire(ctx); !ok {
		t.Fatal("acquire b")
	}
	ended, cancel := context.WithCancel(ctx)
	k := b.Start(ended, KeepOptions{})
	cancel()
	if err := k.Release(ended, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "release").Val(); n != 0 {
		t.Fatal("Release left the lease in Redis")
	}
}

// TestPatientRenewalOutlastsRedisErrors: while Redis is down, a patient renewal reports each error
// and keeps trying past the TTL, where the default one gives the lease up (OnLost with ErrLost).
// When Redis comes back empty, the patient one finds the lease gone and reports it lost.
func TestPatientRenewalOutlastsRedisErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	patient, strict := New(rdb, "patient", ttl), New(rdb, "strict", ttl)
	for _, l := range []*Lease{patient, strict} {
		if ok, err := l.Acquire(ctx); !ok || err != nil {
			t.Fatalf("acquire: %v %v", ok, err)
		}
	}
	var errs atomic.Int32
	patientLost, strictLost := make(chan error, 1), make(chan error, 1)
	kp := patient.Start(ctx, KeepOptions{Patient: true, OnError: func(error) { errs.Add(1) },
		OnLost: func(err error) { patientLost <- err }})
	defer kp.Stop()
	ks := strict.Start(ctx, KeepOptions{OnLost: func(err error) { strictLost <- err }})
	defer ks.Stop()

	srv.Stop()
	if err := recv(t, strictLost, "the default renewal to give up"); !errors.Is(err, ErrLost) {
		t.Fatalf("the default renewal gave up with %v, want ErrLost", err)
	}
	// Six failed renewals at TTL/3 apart span more than the TTL.
	wait.Until(t, 10*time.Second, "six failed renewals", func() bool { return errs.Load() >= 6 })
	select {
	case err := <-patientLost:
		t.Fatalf("the patient renewal gave up on Redis errors: %v", err)
	default:
	}
	if kp.Lost() {
		t.Fatal("the patient renewal counts the lease lost while Redis is down")
	}
	srv.Restart(t) // empty: the lease is gone
	if err := recv(t, patientLost, "the lost lease after the restart"); !errors.Is(err, ErrLost) || !kp.Lost() {
		t.Fatalf("after Redis came back without the lease: %v, Lost() = %v", err, kp.Lost())
	}
}

// TestStartCostsNoGoroutineBeforeItsFirstRenewal: work shorter than a third of the TTL (most
// cache fills) costs a timer, not a goroutine that Stop must wake and wait for; a Keeper stopped
// then never renews, and a second Stop returns at once. (Not parallel: it counts the process'
// goroutines.)
func TestStartCostsNoGoroutineBeforeItsFirstRenewal(t *testing.T) {
	rdb := redistest.New(t)
	ctx := context.Background()
	const holders = 100
	keepers := make([]*Keeper, 0, holders)
	before := runtime.NumGoroutine()
	for i := range holders {
		l := New(rdb, fmt.Sprintf("short-%d", i), time.Minute)
		if ok, err := l.Acquire(ctx); !ok || err != nil {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		keepers = append(keepers, l.Start(ctx, KeepOptions{}))
	}
	if grown := runtime.NumGoroutine() - before; grown >= holders/2 {
		t.Errorf("%d keepers before their first renewal run %d more goroutines; want none of their own", holders, grown)
	}
	for _, k := range keepers {
		k.Stop()
		k.Stop()
		if k.Lost() {
			t.Error("a keeper stopped before its first renewal reports the lease lost")
		}
	}
	for i := range holders {
		if ttl := rdb.PTTL(ctx, fmt.Sprintf("short-%d", i)).Val(); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("short-%d: TTL %v after Stop; want the acquired one, untouched", i, ttl)
		}
	}
}
