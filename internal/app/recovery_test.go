package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// TestFleetRecoversByHealthProbe: two replicas' breakers open during an outage of the upstream
// (the simulator answers 503 everywhere, /health included). Their open period is ten minutes, so
// only the health probe can close them: while the outage lasts one replica probes for the fleet
// (the simulator counts about one probe a second, not two), and once the upstream is back both
// replicas serve again. The time from the upstream's return to both replicas answering is logged.
func TestFleetRecoversByHealthProbe(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	redisURL := redistest.URL(t)
	opts := app.WithUpstreamOptions(upstream.WithRetry(1, 10*time.Millisecond, 10*time.Millisecond),
		upstream.WithBreaker(2, 10*time.Minute))
	fleet := []*gateway{
		startGateway(t, simURL, creds, redisURL, nil, opts),
		startGateway(t, simURL, creds, redisURL, nil, opts),
	}
	for _, g := range fleet {
		if a := g.get(t, nextUncached()); a.status != http.StatusOK {
			t.Fatalf("warm-up = %d %s", a.status, a.body)
		}
	}

	s.SetFaults(sim.Faults{AllStatus: http.StatusServiceUnavailable})
	for i, g := range fleet {
		wait.Until(t, 10*time.Second, "the breaker opens", func() bool {
			_ = g.get(t, nextUncached())
			return g.app.Upstream.BreakerState() == "open"
		})
		t.Logf("replica %d: breaker open", i)
	}
	s.ResetCounters()
	outage := time.Now()
	wait.Until(t, 30*time.Second, "probes during the outage", func() bool { return s.Counters().HealthChecks >= 6 })
	probes, lasted := s.Counters().HealthChecks, time.Since(outage)
	// A ticker never fires more than once an interval, so one prober sends at most one probe a
	// second (plus one at a lease hand-over); two probers would send about twice that.
	if limit := int64(lasted/time.Second) + 2; probes > limit {
		t.Errorf("%d health probes in %v of outage with 2 replicas: more than one replica probes (limit %d)", probes, lasted, limit)
	}
	for i, g := range fleet {
		if g.app.Upstream.BreakerState() != "open" {
			t.Errorf("replica %d closed its breaker while /health failed", i)
		}
	}

	s.SetFaults(sim.Faults{})
	back := time.Now()
	for i, g := range fleet {
		wait.Until(t, 30*time.Second, "the replica serves again", func() bool {
			return g.get(t, nextUncached()).status == http.StatusOK
		})
		t.Logf("replica %d serves again %v after the upstream came back (breaker open period: 10m)", i, time.Since(back).Round(10*time.Millisecond))
	}
}
