package cache

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestStoreSpeaksRedis runs the same Redis operations the gateway relies on (strings with TTL,
// hashes, Lua scripts, pub/sub, SET NX) against real Redis and against the embedded store, so the
// one code path above the store behaves the same on both.
func TestStoreSpeaksRedis(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	real, err := Open(ctx, redistest.URL(t), logger)
	if err != nil {
		t.Fatalf("open real redis: %v", err)
	}
	t.Cleanup(real.Close)
	if real.Embedded {
		t.Fatal("a REDIS_URL store reports itself embedded")
	}
	embedded, err := Open(ctx, "", logger)
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

	for name, s := range map[string]*Store{"redis": real, "embedded": embedded} {
		t.Run(name, func(t *testing.T) {
			c := s.Client
			if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if got, _ := c.Get(ctx, "k").Result(); got != "v" {
				t.Errorf("GET = %q", got)
			}
			if ttl, _ := c.TTL(ctx, "k").Result(); ttl <= 0 || ttl > time.Minute {
				t.Errorf("TTL = %v", ttl)
			}
			ok, _ := c.SetNX(ctx, "lock", "a", time.Second).Result()
			again, _ := c.SetNX(ctx, "lock", "b", time.Second).Result()
			if !ok || again {
				t.Errorf("SETNX = %v then %v, want true then false", ok, again)
			}
			script := redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
			if n, err := script.Run(ctx, c, []string{"lock"}, "b").Int(); err != nil || n != 0 {
				t.Errorf("compare-and-delete with the wrong owner = %d, %v", n, err)
			}
			if n, err := script.Run(ctx, c, []string{"lock"}, "a").Int(); err != nil || n != 1 {
				t.Errorf("compare-and-delete with the owner = %d, %v", n, err)
			}
			if err := c.HSet(ctx, "h", "a", "1", "b", "2").Err(); err != nil {
				t.Fatalf("HSET: %v", err)
			}
			if m, _ := c.HGetAll(ctx, "h").Result(); m["a"] != "1" || m["b"] != "2" {
				t.Errorf("HGETALL = %v", m)
			}

			sub := c.Subscribe(ctx, "chan")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil { // subscription confirmation
				t.Fatalf("SUBSCRIBE: %v", err)
			}
			if err := c.Publish(ctx, "chan", "hello").Err(); err != nil {
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
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	srv.Stop()
	ctx := context.Background()
	_, err := Open(ctx, url, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("Open of a stopped Redis succeeded")
	}
}

func TestParseURL(t *testing.T) {
	const pw = "fake-pw-19"
	cases := []struct {
		in      string
		addrs   []string
		master  string
		cluster bool
		db      int
		wantErr string
	}{
		{in: "redis://127.0.0.1:6379/2", addrs: []string{"127.0.0.1:6379"}, db: 2},
		{in: "rediss://:" + pw + "@r.example.invalid:6380", addrs: []string{"r.example.invalid:6380"}},
		{in: "redis-sentinel://:" + pw + "@s1:26379,s2:26379/1?master=mymaster", addrs: []string{"s1:26379", "s2:26379"}, master: "mymaster", db: 1},
		{in: "redis-cluster://n1:7000,n2:7000", addrs: []string{"n1:7000", "n2:7000"}, cluster: true},
		{in: "redis-sentinel://s1:26379", wantErr: "master"},
		{in: "redis-cluster://n1,n2:7000", wantErr: "host:port"},
		{in: "memcached://x:1", wantErr: "scheme"},
		{in: "redis://:" + pw + "@h:6379/notadb", wantErr: "REDIS_URL"},
		{in: "redis-sentinel://s1:26379/x?master=m", wantErr: "database"},
	}
	for _, tc := range cases {
		o, err := ParseURL(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseURL(%q) error = %v, want %q", strings.ReplaceAll(tc.in, pw, "***"), err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("error repeats the password: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL: %v", err)
			continue
		}
		if strings.Join(o.Addrs, ",") != strings.Join(tc.addrs, ",") || o.MasterName != tc.master || o.IsClusterMode != tc.cluster || o.DB != tc.db {
			t.Errorf("ParseURL(%q) = addrs %v master %q cluster %v db %d", strings.ReplaceAll(tc.in, pw, "***"), o.Addrs, o.MasterName, o.IsClusterMode, o.DB)
		}
	}
}
