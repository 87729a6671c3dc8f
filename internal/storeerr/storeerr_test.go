package storeerr_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/storeerr"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries, opts.DialTimeout, opts.DialerRetries = 0, 200*time.Millisecond, 1
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestUnavailableOnRealFailures: the errors a real server gives when it is gone (killed) or has
// become a replica (READONLY, as after a failover) are Unavailable and answered 503 with
// Retry-After; an answer about the command (WRONGTYPE, a script error), a missing key and a
// canceled request are not.
func TestUnavailableOnRealFailures(t *testing.T) {
	ctx := context.Background()
	master, replica := redistest.Start(t), redistest.Start(t)
	mc, rc := client(t, master.URL()), client(t, replica.URL())

	for _, s := range []*redistest.Server{master, replica} { // the replication writes RDB files here
		_, p, _ := net.SplitHostPort(s.Addr)
		t.Cleanup(func() { _ = os.Remove("dump-" + p + ".rdb") })
	}
	host, port, _ := net.SplitHostPort(master.Addr)
	if err := rc.SlaveOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	readOnly := rc.Set(ctx, "k", "v", 0).Err()
	if readOnly == nil || !storeerr.Unavailable(fmt.Errorf("syncjob: save: %w", readOnly)) {
		t.Fatalf("a write to a replica: %v, want Unavailable", readOnly)
	}

	if err := mc.Set(ctx, "list", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	wrongType := mc.LPush(ctx, "list", "x").Err()
	scriptErr := mc.Eval(ctx, "return redis.error_reply('ERR boom')", nil).Err()
	missing := mc.Get(ctx, "none").Err()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for name, err := range map[string]error{"wrong type": wrongType, "script error": scriptErr, "redis.Nil": missing,
		"canceled": errors.Join(context.Canceled, mc.Get(canceled, "k").Err()), "nil": nil} {
		if storeerr.Unavailable(err) {
			t.Errorf("%s (%v) counted as the store being unreachable", name, err)
		}
		if name != "nil" && storeerr.Mark(err) != err {
			t.Errorf("%s was marked", name)
		}
	}

	master.Stop()
	down := mc.Get(ctx, "k").Err()
	if down == nil || !storeerr.Unavailable(down) {
		t.Fatalf("a killed server: %v, want Unavailable", down)
	}
	p := problem.From(storeerr.Mark(fmt.Errorf("webhooks: accept: %w", down)))
	if p.Status != 503 || p.Code != problem.CodeUpstreamUnavailable || p.RetryAfter <= 0 {
		t.Fatalf("answer of a killed server: %+v", p)
	}
	if closed := mc.Close(); closed != nil || !storeerr.Unavailable(mc.Get(ctx, "k").Err()) {
		t.Fatal("a closed client is the store being unreachable")
	}
}
