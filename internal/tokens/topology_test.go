package tokens

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// TestTokensOnEveryTopology runs two replicas on each topology's strict clients (a script that
// touches an undeclared key fails): one logs in while the other waits for it and wakes on the
// notice (its poll is 30 s away), a rejection revokes the token fleet-wide, and the replicas
// follow the channel with the kind of pub/sub of the topology (sharded on the cluster).
func TestTokensOnEveryTopology(t *testing.T) {
	t.Parallel()
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			fa := newFakeAuth(time.Hour)
			started := make(chan struct{}, 1)
			fa.set(func(f *fakeAuth) { f.delay, f.started = 300*time.Millisecond, started })
			prefix := top.Prefix + "token"
			a := newSource(t, top.Client, fa, WithKeyPrefix(prefix), WithPollInterval(30*time.Second))
			b := newSource(t, top.Another(t), fa, WithKeyPrefix(prefix), WithPollInterval(30*time.Second))
			start(t, b)
			if top.Name == "cluster" {
				wait.Until(t, 10*time.Second, "the replica's sharded subscription", func() bool {
					return shardSubscribers(t, top.Client, prefix+":updated") == 1
				})
			}

			done := make(chan error, 1)
			go func() {
				_, err := a.Token(t.Context())
				done <- err
			}()
			<-started
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			first, err := b.Token(ctx)
			if err != nil {
				t.Fatalf("waiting replica: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := fa.logins.Load(); n != 1 {
				t.Errorf("logins = %d, want 1", n)
			}

			// The rejection reaches b through the notice alone (its poll is 30 s away).
			fa.set(func(f *fakeAuth) { f.delay, f.started = 0, nil })
			a.Rejected(t.Context(), first)
			var next upstream.AccessToken
			wait.Until(t, 10*time.Second, "the other replica to drop the rejected token", func() bool {
				next, err = b.Token(ctx)
				return err == nil && next.Value != first.Value
			})
			if next.Generation != first.Generation+1 {
				t.Errorf("generation after the rejection = %d, want %d", next.Generation, first.Generation+1)
			}
		})
	}
}

// shardSubscribers counts, over the cluster's masters, the sharded subscribers of channel.
func shardSubscribers(t testing.TB, c redis.UniversalClient, channel string) int64 {
	t.Helper()
	var mu sync.Mutex
	var total int64
	err := c.(*redis.ClusterClient).ForEachMaster(t.Context(), func(ctx context.Context, node *redis.Client) error {
		n, err := node.PubSubShardNumSub(ctx, channel).Result()
		mu.Lock()
		total += n[channel]
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("PUBSUB SHARDNUMSUB: %v", err)
	}
	return total
}
