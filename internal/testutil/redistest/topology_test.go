package redistest

import (
	"context"
	"strings"
	"testing"
	"time"
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
