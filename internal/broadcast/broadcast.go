// Package broadcast owns the choice of Redis pub/sub for the gateway's notices between replicas:
// on a Redis Cluster sharded pub/sub (SPUBLISH, SSUBSCRIBE: a channel lives on the shard that
// owns its slot, instead of every message going to every node), elsewhere classic pub/sub
// (PUBLISH, SUBSCRIBE; the embedded store has no sharded commands). Every publisher and
// subscriber of a channel goes through it, so both ends always use the same kind.
package broadcast

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Sharded reports whether notices on rdb use sharded pub/sub (rdb is a Redis Cluster client).
func Sharded(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// Publish sends msg on channel.
func Publish(ctx context.Context, rdb redis.UniversalClient, channel, msg string) error {
	if Sharded(rdb) {
		return rdb.SPublish(ctx, channel, msg).Err()
	}
	return rdb.Publish(ctx, channel, msg).Err()
}

// Subscribe follows channels; the caller closes the subscription. Its confirmations are
// *redis.Subscription values whose Kind is "subscribe" or "ssubscribe" (see Confirmed).
func Subscribe(ctx context.Context, rdb redis.UniversalClient, channels ...string) *redis.PubSub {
	if Sharded(rdb) {
		return rdb.SSubscribe(ctx, channels...)
	}
	return rdb.Subscribe(ctx, channels...)
}

// Confirmed reports whether m confirms a subscription made by Subscribe.
func Confirmed(m *redis.Subscription) bool {
	return m.Kind == "subscribe" || m.Kind == "ssubscribe"
}
