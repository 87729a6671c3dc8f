package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterNamespaceIsCleaned checks the cluster's only isolation between tests: a test's keys
// carry its prefix, and they are gone once the test has ended.
func TestClusterNamespaceIsCleaned(t *testing.T) {
	ctx := context.Background()
	var prefix string
	t.Run("writer", func(t *testing.T) {
		top := OnCluster(t)
		other := OnCluster(t)
		if top.Prefix == other.Prefix || strings.ContainsAny(top.Prefix, "{}") {
			t.Fatalf("prefixes %q and %q: want distinct, without hash-tag braces", top.Prefix, other.Prefix)
		}
		prefix = top.Prefix
		for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
			if err := top.Client.Set(ctx, prefix+k, "1", time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
		}
	})
	probe := OnCluster(t)
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if n, err := probe.Client.Exists(ctx, prefix+k).Result(); err != nil || n != 0 {
			t.Errorf("key %s of the finished test: exists = %d, %v", k, n, err)
		}
	}
}

// TestSentinelDatabasesAreApart checks that two tests on the sentinel set get different, empty
// logical databases.
func TestSentinelDatabasesAreApart(t *testing.T) {
	ctx := context.Background()
	a, b := OnSentinel(t), OnSentinel(t)
	if a.URL == b.URL {
		t.Fatalf("both got %s", a.URL)
	}
	if err := a.Client.Set(ctx, "k", "a", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if n, err := b.Client.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("the other test's database sees the key: %d, %v", n, err)
	}
}

// TestStrictRefusesUndeclaredKeys runs scripts through a Topology's client on every topology: one
// that touches only its KEYS passes; one that builds a key from KEYS[1] or takes one from ARGV
// (both in the declared key's slot, so that the cluster itself would not object) fails.
func TestStrictRefusesUndeclaredKeys(t *testing.T) {
	ctx := context.Background()
	for _, top := range Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			declared := top.Prefix + "{t}a"
			ok := redis.NewScript(`redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])`)
			if v, err := ok.Run(ctx, top.Client, []string{declared}, "v").Text(); err != nil || v != "v" {
				t.Fatalf("script on its declared key = %q, %v", v, err)
			}
			for name, src := range map[string]string{
				"built":    `return redis.call('GET', KEYS[1] .. ':x')`,
				"argv":     `return redis.call('SET', ARGV[1], 'v')`,
				"pcall":    `return redis.pcall('DEL', KEYS[1], ARGV[1])`,
				"multikey": `return redis.call('MGET', KEYS[1], ARGV[1])`,
			} {
				err := redis.NewScript(src).Run(ctx, top.Client, []string{declared}, top.Prefix+"{t}b").Err()
				if err == nil || !strings.Contains(err.Error(), "STRICT undeclared key") {
					t.Errorf("%s: script touching an undeclared key = %v, want a STRICT error", name, err)
				}
			}
		})
	}
}
