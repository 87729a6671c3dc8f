package redisconn_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/redisconn"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// TestStoreSpeaksRedis runs the same Redis operations the gateway relies on (strings with TTL,
// hashes, Lua scripts, pub/sub, SET NX) through stores opened from the URL of each real topology
// (one server, a 3-master cluster, a sentinel set) and through the embedded store, so the one code
// path above the store behaves the same on all of them.
func TestStoreSpeaksRedis(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	embedded, err := redisconn.Open(ctx, "", logger)
	if err != nil {
		t.Fatalf("open embedded: %v", err)
	}
	t.Cleanup(embedded.Close)
	if !embedded.Embedded {
		t.Fatal("embedded store not marked embedded")
	}
	if !strings.Contains(logs.String(), "single replica") {
		t.Errorf("no single-replica warning logged for the embedded store: %s", logs.String())
	}
	t.Run("embedded", func(t *testing.T) { speaksRedis(t, embedded.Client, "") })

	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			s, err := redisconn.Open(ctx, top.URL, logger)
			if err != nil {
				t.Fatalf("open %s: %v", top.Name, err)
			}
			t.Cleanup(s.Close)
			if s.Embedded {
				t.Fatal("a REDIS_URL store reports itself embedded")
			}
			speaksRedis(t, s.Client, top.Prefix)
		})
	}
}

// speaksRedis runs the gateway's kinds of operations on c, every key starting with prefix.
func speaksRedis(t *testing.T, c redis.UniversalClient, prefix string) {
	ctx := context.Background()
	k, lock, h := prefix+"k", prefix+"lock", prefix+"h"
	if err := c.Set(ctx, k, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, _ := c.Get(ctx, k).Result(); got != "v" {
		t.Errorf("GET = %q", got)
	}
	if ttl, _ := c.TTL(ctx, k).Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("TTL = %v", ttl)
	}
	ok, _ := c.SetNX(ctx, lock, "a", time.Second).Result()
	again, _ := c.SetNX(ctx, lock, "b", time.Second).Result()
	if !ok || again {
		t.Errorf("SETNX = %v then %v, want true then false", ok, again)
	}
	script := redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	if n, err := script.Run(ctx, c, []string{lock}, "b").Int(); err != nil || n != 0 {
		t.Errorf("compare-and-delete with the wrong owner = %d, %v", n, err)
	}
	if n, err := script.Run(ctx, c, []string{lock}, "a").Int(); err != nil || n != 1 {
		t.Errorf("compare-and-delete with the owner = %d, %v", n, err)
	}
	if err := c.HSet(ctx, h, "a", "1", "b", "2").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	if m, _ := c.HGetAll(ctx, h).Result(); m["a"] != "1" || m["b"] != "2" {
		t.Errorf("HGETALL = %v", m)
	}

	sub := c.Subscribe(ctx, prefix+"chan")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscription confirmation
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if err := c.Publish(ctx, prefix+"chan", "hello").Err(); err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	select {
	case m := <-sub.Channel():
		if m.Payload != "hello" {
			t.Errorf("message = %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Error("no pub/sub message within 5s")
	}
}

// TestStoreSpreadsOverCluster writes keys of many hash slots through a store opened from the
// cluster URL and finds some on every master: the client routes by slot (following the cluster's
// MOVED answers), it does not send everything to the first node it was given.
func TestStoreSpreadsOverCluster(t *testing.T) {
	ctx := context.Background()
	top := redistest.OnCluster(t)
	s, err := redisconn.Open(ctx, top.URL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open cluster: %v", err)
	}
	t.Cleanup(s.Close)
	const n = 60
	for i := range n {
		if err := s.Client.Set(ctx, fmt.Sprintf("%skey-%d", top.Prefix, i), i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %d: %v", i, err)
		}
	}
	cc, ok := s.Client.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("a redis-cluster URL gave a %T, not a cluster client", s.Client)
	}
	var mu sync.Mutex
	perMaster := map[string]int{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, _, err := node.Scan(ctx, 0, top.Prefix+"key-*", 1000).Result()
		mu.Lock()
		defer mu.Unlock()
		perMaster[node.Options().Addr] = len(keys)
		return err
	})
	if err != nil {
		t.Fatalf("scan the masters: %v", err)
	}
	total := 0
	for addr, count := range perMaster {
		if count == 0 {
			t.Errorf("master %s holds none of the %d keys: %v", addr, n, perMaster)
		}
		total += count
	}
	if len(perMaster) != 3 || total != n {
		t.Errorf("keys per master = %v, want %d keys over 3 masters", perMaster, n)
	}
}

// TestStoreFollowsSentinelFailover kills the master of a private sentinel set under a store opened
// from its URL: once the sentinels have promoted the replica, the same store (no restart, no new
// client) writes to the new master and still reads what it wrote before the crash.
func TestStoreFollowsSentinelFailover(t *testing.T) {
	ctx := context.Background()
	set := redistest.StartSentinel(t)
	s, err := redisconn.Open(ctx, set.URL(1), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open sentinel: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Client.Set(ctx, "before", "kept", 0).Err(); err != nil {
		t.Fatalf("SET before the failover: %v", err)
	}
	// Replication is asynchronous: make sure the replica holds the key before the master dies.
	if n, err := s.Client.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica = %d, %v", n, err)
	}

	killed, err := set.KillMaster(ctx)
	if err != nil {
		t.Fatalf("kill the master: %v", err)
	}
	start := time.Now()
	var promoted string
	var lastErr error
	wait.UntilShowing(t, 30*time.Second, "a write through the store after the master was killed", func() bool {
		cur, err := set.CurrentMaster(ctx)
		if err != nil || cur == killed {
			return false
		}
		promoted = cur
		lastErr = s.Client.Set(ctx, "after", "written", 0).Err()
		return lastErr == nil
	}, func() string { return fmt.Sprintf("promoted %q, last error %v", promoted, lastErr) })
	t.Logf("the store wrote to the new master %v after the old one was killed", time.Since(start).Round(100*time.Millisecond))

	if got, err := s.Client.Get(ctx, "before").Result(); err != nil || got != "kept" {
		t.Errorf("GET of the key written before the failover = %q, %v", got, err)
	}
	info, err := s.Client.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	_, port, _ := strings.Cut(promoted, ":")
	if !strings.Contains(info, "tcp_port:"+port+"\r\n") {
		t.Errorf("the store does not talk to the promoted master %s", promoted)
	}
}

func TestOpenUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	srv.Stop()
	ctx := context.Background()
	_, err := redisconn.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("Open of a stopped Redis succeeded")
	}
}
