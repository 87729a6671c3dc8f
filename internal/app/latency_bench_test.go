package app_test

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// BenchmarkUpstreamCallPath measures what the gateway adds to an upstream call: the same upstream
// route (a page of contacts, a different page each time so the gateway's cache never answers)
// called directly on the simulator, and through the gateway's full path (caller auth, per-caller
// limit, cache miss, token, quota, breaker, upstream client, normalisation). Both run in
// one process against the same simulator, so the machine's noise hits both alike; p50 and p99 are
// reported per sub-benchmark. Run: go test -run '^$' -bench UpstreamCallPath -benchtime 3000x ./internal/app/
func BenchmarkUpstreamCallPath(b *testing.B) {
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	g := startGateway(b, simURL, creds, redistest.URL(b), nil)
	// The same with the fleet-wide per-caller limit and upstream quota switched on (limits too high
	// to refuse anything): each costs one Redis round trip per request.
	gl := startGateway(b, simURL, creds, redistest.URL(b), map[string]string{
		"GATEWAY_CALLER_RATE": "1000000/1m", "UPSTREAM_RATE_READ": "1000000/1m",
	})

	var seq int
	direct := func() *http.Request {
		seq++
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/contacts/demo_session?limit=1&page=%d", simURL, seq%100000+1), nil)
		req.Header.Set("X-API-Key", creds.apiKey)
		return req
	}
	via := func(g *gateway) func() *http.Request {
		return func() *http.Request {
			seq++
			req, _ := http.NewRequest(http.MethodGet, g.url+uncachedPath(seq), nil)
			req.Header.Set("X-API-Key", g.key)
			return req
		}
	}
	viaGateway, viaLimited := via(g), via(gl)
	// The drop-in passthrough: the very same upstream path and query, relayed (uncached: a new
	// page each time).
	viaPassthrough := func() *http.Request {
		seq++
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/contacts/demo_session?limit=1&page=%d", g.url, seq%100000+1), nil)
		req.Header.Set("X-API-Key", g.key)
		return req
	}
	// Warm both paths (token, session id mapping, connections).
	for range 20 {
		do(b, direct())
		do(b, viaGateway())
		do(b, viaLimited())
		do(b, viaPassthrough())
	}
	for _, bc := range []struct {
		name string
		req  func() *http.Request
	}{{"direct", direct}, {"gateway", viaGateway}, {"gateway-with-limits", viaLimited}, {"passthrough", viaPassthrough}} {
		b.Run(bc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				do(b, bc.req())
				lat = append(lat, time.Since(start))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func do(b *testing.B, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s = %d", req.URL.Path, resp.StatusCode)
	}
}
