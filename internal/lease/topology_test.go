package lease

import (
	"context"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestLeaseOnEveryTopology runs the lease's scripts (acquire, renew, release) on each topology's
// strict clients, with two holders on two clients.
func TestLeaseOnEveryTopology(t *testing.T) {
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			key := top.Prefix + "lease"
			a, b := New(top.Client, key, time.Second), New(top.Another(t), key, time.Second)
			if ok, err := a.Acquire(ctx); !ok || err != nil {
				t.Fatalf("a: %v %v", ok, err)
			}
			if ok, err := b.Acquire(ctx); ok || err != nil {
				t.Fatalf("b acquired a held lease: %v %v", ok, err)
			}
			if ok, err := b.Renew(ctx); ok || err != nil {
				t.Fatalf("b renewed a's lease: %v %v", ok, err)
			}
			if ok, err := a.Renew(ctx); !ok || err != nil {
				t.Fatalf("a's renewal: %v %v", ok, err)
			}
			if err := b.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if v := top.Client.Get(ctx, key).Val(); v != a.Token() {
				t.Fatal("b released a's lease")
			}
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if ok, err := b.Acquire(ctx); !ok || err != nil {
				t.Fatalf("b could not take the released lease: %v %v", ok, err)
			}
		})
	}
}
