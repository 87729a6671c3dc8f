package broadcast

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestNoticesOnEveryTopology publishes through Publish to a subscriber made by Subscribe on each
// topology; on the cluster the subscription is a sharded one (PUBSUB SHARDNUMSUB counts it, a
// classic subscriber of the same channel hears nothing), elsewhere a classic one.
func TestNoticesOnEveryTopology(t *testing.T) {
	ctx := context.Background()
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ch := top.Prefix + "notices"
			sub := Subscribe(ctx, top.Client, ch)
			defer sub.Close()
			m, err := sub.Receive(ctx)
			if s, ok := m.(*redis.Subscription); err != nil || !ok || !Confirmed(s) {
				t.Fatalf("subscription confirmation = %v, %v", m, err)
			}
			classic := top.Client.Subscribe(ctx, ch)
			defer classic.Close()
			if _, err := classic.Receive(ctx); err != nil {
				t.Fatalf("classic SUBSCRIBE: %v", err)
			}
			if err := Publish(ctx, top.Client, ch, "hello"); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			select {
			case msg := <-sub.Channel():
				if msg.Payload != "hello" || msg.Channel != ch {
					t.Errorf("message = %q on %q", msg.Payload, msg.Channel)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no notice within 5s")
			}
			if Sharded(top.Client) != (top.Name == "cluster") {
				t.Fatalf("Sharded = %v on %s", Sharded(top.Client), top.Name)
			}
			if !Sharded(top.Client) {
				return
			}
			// Each node counts the sharded subscribers of its own slots: one in all.
			var mu sync.Mutex
			var total int64
			err = top.Client.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
				n, err := node.PubSubShardNumSub(ctx, ch).Result()
				mu.Lock()
				total += n[ch]
				mu.Unlock()
				return err
			})
			if err != nil || total != 1 {
				t.Errorf("PUBSUB SHARDNUMSUB over the masters = %d, %v; want one sharded subscriber", total, err)
			}
			// The sharded message went to the channel's shard only: the classic subscriber (on
			// some node of the cluster) got nothing, even after a classic message behind it.
			if err := top.Client.Publish(ctx, ch, "classic").Err(); err != nil {
				t.Fatalf("PUBLISH: %v", err)
			}
			select {
			case msg := <-classic.Channel():
				if msg.Payload != "classic" {
					t.Errorf("the classic subscriber got %q, want only the classic message", msg.Payload)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no classic message within 5s")
			}
		})
	}
}
