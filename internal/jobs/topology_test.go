package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestQueueOnEveryTopology runs every script of the queue on each topology's strict clients (a
// script touching a key it did not declare fails), with workers on two clients: a task that fails
// twice is retried (fail, promote) and completes, one that always fails is archived, a long one
// shows life (heartbeat) and is not taken over, and a message without a task is dropped.
func TestQueueOnEveryTopology(t *testing.T) {
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			name := top.Prefix + "q"
			q, other := NewQueue(top.Client, name, 0), NewQueue(top.Another(t), name, 0)
			var flaky, long atomic.Int32
			h := func(ctx context.Context, task Task) error {
				switch task.ID {
				case "flaky":
					if flaky.Add(1) <= 2 {
						return errors.New("not yet")
					}
				case "broken":
					return errors.New("always broken")
				case "long":
					long.Add(1)
					select {
					case <-time.After(time.Second):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}
			o := Options{Concurrency: 2, ClaimIdle: 300 * time.Millisecond, Block: 100 * time.Millisecond,
				RetryDelay: func(int, error) time.Duration { return 10 * time.Millisecond }}
			runWorkers(t, q, h, o)
			runWorkers(t, other, h, o)
			for _, id := range []string{"flaky", "broken", "long"} {
				if err := q.Enqueue(ctx, id, []byte(id), EnqueueOptions{MaxRetry: 2}); err != nil {
					t.Fatal(err)
				}
			}
			if err := other.Enqueue(ctx, "long", nil, EnqueueOptions{}); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("second enqueue of a queued id: %v", err)
			}
			if err := top.Client.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(), Values: []any{"id", "ghost"}}).Err(); err != nil {
				t.Fatal(err)
			}
			wait.Until(t, 10*time.Second, "flaky completed", func() bool { return state(t, q, "flaky") == StateCompleted })
			wait.Until(t, 10*time.Second, "broken archived", func() bool { return state(t, q, "broken") == StateArchived })
			wait.Until(t, 10*time.Second, "long completed", func() bool { return state(t, other, "long") == StateCompleted })
			if flaky.Load() != 3 || long.Load() != 1 {
				t.Errorf("flaky ran %d times (want 3), long %d (want 1: never taken over)", flaky.Load(), long.Load())
			}
			wait.Until(t, 5*time.Second, "the stream emptied (the ghost dropped)", func() bool {
				n, err := top.Client.XLen(ctx, q.streamKey()).Result()
				return err == nil && n == 0
			})
		})
	}
}
