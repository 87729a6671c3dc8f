package idempotency_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/idempotency"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestIdempotencyOnEveryTopology runs the store's scripts on each topology's strict clients (a
// script touching a key it did not declare fails), with two replicas: concurrent duplicates over
// both run once, a failure releases the key, a reused key is refused; on the cluster the keys of
// different callers spread over the masters (each key is hashed whole).
func TestIdempotencyOnEveryTopology(t *testing.T) {
	fp := idempotency.Fingerprint("POST", "/v1/sessions/s1/messages", []byte(`{"to":"1","text":"a"}`))
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			prefix := top.Prefix + "idem:"
			replicas := []*idempotency.Store{
				idempotency.New(top.Client, idempotency.WithKeyPrefix(prefix)),
				idempotency.New(top.Another(t), idempotency.WithKeyPrefix(prefix)),
			}
			var runs, replays atomic.Int64
			var wg sync.WaitGroup
			for i := range 10 {
				wg.Go(func() {
					_, replayed, err := replicas[i%2].Do(ctx, "api_key/crm", "k1", fp, counted(&runs, created, nil, 100*time.Millisecond))
					if err != nil {
						t.Errorf("duplicate %d: %v", i, err)
					}
					if replayed {
						replays.Add(1)
					}
				})
			}
			wg.Wait()
			if runs.Load() != 1 || replays.Load() != 9 {
				t.Errorf("runs = %d, replays = %d; want 1 and 9", runs.Load(), replays.Load())
			}
			other := idempotency.Fingerprint("POST", "/v1/sessions/s1/messages", []byte(`{"to":"1","text":"b"}`))
			if _, _, err := replicas[1].Do(ctx, "api_key/crm", "k1", other, counted(&runs, created, nil, 0)); !errors.Is(err, idempotency.ErrKeyReused) {
				t.Errorf("reused key = %v, want ErrKeyReused", err)
			}
			boom := errors.New("upstream unavailable")
			if _, _, err := replicas[0].Do(ctx, "api_key/crm", "k2", fp, counted(&runs, idempotency.Response{}, boom, 0)); !errors.Is(err, boom) {
				t.Fatalf("failed request = %v", err)
			}
			if _, replayed, err := replicas[1].Do(ctx, "api_key/crm", "k2", fp, counted(&runs, created, nil, 0)); err != nil || replayed {
				t.Errorf("after a failure on the other replica: %v, %v; want a fresh run", replayed, err)
			}
			if top.Name != "cluster" {
				return
			}
			for i := range 30 {
				if _, _, err := replicas[0].Do(ctx, "caller-"+strconv.Itoa(i), "k", fp, counted(&runs, created, nil, 0)); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			masters := 0
			err := top.Client.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
				iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
				if iter.Next(ctx) {
					mu.Lock()
					masters++
					mu.Unlock()
				}
				return iter.Err()
			})
			if err != nil || masters < 2 {
				t.Errorf("the keys of 32 callers are on %d masters (%v); want them spread", masters, err)
			}
		})
	}
}
