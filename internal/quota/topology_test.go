package quota

import (
	"context"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// TestKeyedOnEveryTopology runs Keyed's scripts (the GCRA and its peek) on each topology's strict
// clients, with two replicas sharing one key's budget.
func TestKeyedOnEveryTopology(t *testing.T) {
	rate := Rate{N: 6, Per: time.Hour}
	for _, top := range redistest.Topologies(t) {
		t.Run(top.Name, func(t *testing.T) {
			ctx := context.Background()
			a, _ := NewKeyed(top.Client, rate, top.Prefix+"k:")
			b, _ := NewKeyed(top.Another(t), rate, top.Prefix+"k:")
			admitted := 0
			for i := range 10 {
				d, err := []*Keyed{a, b}[i%2].Allow(ctx, "crm")
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					admitted++
				}
			}
			if admitted != 6 {
				t.Errorf("two replicas admitted %d requests of one key, want 6", admitted)
			}
			if wait, err := b.Wait(ctx, "crm"); err != nil || wait <= 0 {
				t.Errorf("wait of a spent key = %s, %v; want a positive wait", wait, err)
			}
		})
	}
}
