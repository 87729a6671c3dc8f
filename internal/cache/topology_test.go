package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// TestReadThroughOnEveryTopology runs the cache's scripts and multi-key paths with two replicas
// on one server, a cluster and a sentinel set, through strict clients (a script touching a key it
// did not declare fails): fleet-wide coalescing of misses, another replica's invalidation reaching
// this one's in-process layer (a notice, sharded on the cluster) and deleting the scope's values,
// an invalidation during a load storing nothing, and a failed load waking the other replica.
func TestReadThroughOnEveryTopology(t *testing.T) {
	t.Parallel()
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			session := strings.TrimSuffix(top.Prefix, ":") // the keys of this test only
			read := func(c *CachedUpstream) (string, Info, error) {
				ctx, rec := Track(ctx)
				st, err := c.SessionStatus(ctx, session)
				info, _ := rec.Info()
				return st.PhoneNumber, info, err
			}
			fake := newFake()
			rtA := newRT(t, top.Client, WithLocal(100, time.Hour), WithPollInterval(time.Minute))
			a := NewCachedUpstream(fake, rtA, DefaultPolicies(), nil)
			rtB := newRT(t, top.Another(t), WithPollInterval(time.Minute))
			b := NewCachedUpstream(fake, rtB, DefaultPolicies(), nil)

			// Coalescing: concurrent misses on both replicas make one upstream call; the
			// waiters hear the winner's notice (they would otherwise poll only after a minute).
			fake.set(func(f *fakeUpstream) { f.delay = 200 * time.Millisecond })
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					if v, _, err := read([]*CachedUpstream{a, b}[i%2]); err != nil || v != "1" {
						t.Errorf("reader %d: %q, %v", i, v, err)
					}
				})
			}
			wg.Wait()
			if got := fake.calls.Load(); got != 1 {
				t.Fatalf("20 concurrent misses on two replicas made %d upstream calls, want 1", got)
			}
			wait.Until(t, 2*time.Second, "the value reaches A's in-process layer", func() bool {
				_, _, _ = read(a)
				return rtA.local.len() == 1
			})

			// B's invalidation deletes the scope's values in Redis and A's in-process copy.
			k := Key{Scope: SessionScope(session), Kind: KindStatus}
			if n, err := top.Client.Exists(ctx, k.redisKey(), indexKey(k.Scope)).Result(); err != nil || n != 2 {
				t.Fatalf("value and index in Redis: %d, %v; want both", n, err)
			}
			fake.set(func(f *fakeUpstream) { f.version, f.delay = 2, 0 })
			if err := b.Invalidate(ctx, session); err != nil {
				t.Fatalf("Invalidate: %v", err)
			}
			if n, err := top.Client.Exists(ctx, k.redisKey(), indexKey(k.Scope)).Result(); err != nil || n != 0 {
				t.Errorf("value and index after the invalidation: %d left, %v", n, err)
			}
			wait.Until(t, 2*time.Second, "A drops its in-process copy after B's Invalidate", func() bool {
				v, _, err := read(a)
				return err == nil && v == "2"
			})

			// An invalidation during a load: the load's value is answered but not stored.
			fake.set(func(f *fakeUpstream) { f.version, f.delay = 3, 300*time.Millisecond })
			if err := a.Invalidate(ctx, session); err != nil {
				t.Fatal(err)
			}
			calls := fake.calls.Load()
			done := make(chan string)
			go func() {
				v, _, _ := read(b)
				done <- v
			}()
			wait.Until(t, 2*time.Second, "the load started", func() bool { return fake.calls.Load() == calls+1 })
			if err := a.Invalidate(ctx, session); err != nil {
				t.Fatal(err)
			}
			if v := <-done; v != "3" {
				t.Fatalf("the reader during the invalidation got %q", v)
			}
			fake.set(func(f *fakeUpstream) { f.version, f.delay = 4, 0 })
			if v, info, _ := read(b); v != "4" || info.Status != StatusMiss {
				t.Errorf("read after the invalidation = %q, %+v; want a new load", v, info)
			}

			// A failed load wakes the replica waiting for it at once (its poll is a minute). B kept
			// the value it loaded in its in-process layer: A's notice drops it, a moment later.
			if err := a.Invalidate(ctx, session); err != nil {
				t.Fatal(err)
			}
			wait.Until(t, 2*time.Second, "B drops its in-process copy after A's Invalidate", func() bool { return rtB.local.len() == 0 })
			fake.set(func(f *fakeUpstream) {
				f.delay, f.err = 200*time.Millisecond, &upstream.Error{Status: 404, Code: upstream.CodeSessionNotFound}
			})
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			for i := range 10 {
				wg.Go(func() {
					rctx, rec := Track(wctx)
					_, err := []*CachedUpstream{a, b}[i%2].SessionStatus(rctx, session)
					_, _ = rec.Info()
					if !errors.Is(err, upstream.ErrSessionNotFound) {
						t.Errorf("reader %d: %v, want SESSION_NOT_FOUND", i, err)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestScopeKeysShareASlot: on the cluster every key of one scope (value, fill lock, index, epoch)
// is in one slot, and the scopes of different sessions spread over several.
func TestScopeKeysShareASlot(t *testing.T) {
	t.Parallel()
	top := redistest.OnCluster(t)
	ctx := context.Background()
	slot := func(key string) int64 {
		t.Helper()
		n, err := top.Client.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		return n
	}
	k := Key{Scope: SessionScope("ventas_01"), Kind: KindStatus, Name: "ventas_01"}
	want := slot(k.redisKey())
	for _, key := range []string{k.lockKey(), indexKey(k.Scope), epochKey(k.Scope)} {
		if got := slot(key); got != want {
			t.Errorf("%s in slot %d, the value in %d", key, got, want)
		}
	}
	slots := map[int64]bool{}
	for _, s := range []string{"ventas_01", "ventas_02", "soporte", "cobranza"} {
		slots[slot(indexKey(SessionScope(s)))] = true
	}
	if len(slots) < 2 {
		t.Errorf("four sessions' scopes all in one slot: %v", slots)
	}
}
