package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// latencyRounds is how many alternated windows of each path a latency run measures (see
// readRounds).
const latencyRounds = 4

// latencyPath is one way to the same upstream read: directly, or through the gateway.
type latencyPath struct {
	name string
	url  func(page int) string
	key  string
}

// measureLatency measures what the gateway adds to an upstream read, from outside: the same page
// of contacts (a new page each time, so that no cache answers), one request at a time, directly
// on the simulator, through the drop-in passthrough and through the gateway's own route, in
// alternated windows. Unlike the in-process benchmark (UpstreamCallPath), the gateway runs in its
// own process, so its latency holds only its own garbage collection and scheduling.
func measureLatency(ctx context.Context, h *harness, o options) error {
	// The per-caller limit stays on, at a rate too high to refuse anything (as in reads).
	f, err := h.startReadFleet(ctx, "latency", 1, "messages:read", o.callerRate)
	if err != nil {
		return err
	}
	defer f.stop()
	gw, simURL, gwURL, keys := f.gw, f.simURL, f.gwURL, f.keys
	paths := []latencyPath{
		{"direct", func(p int) string { return fmt.Sprintf("%s/api/contacts/demo_session?limit=1&page=%d", simURL, p) }, h.simKey},
		{"passthrough", func(p int) string { return fmt.Sprintf("%s/api/contacts/demo_session?limit=1&page=%d", gwURL, p) }, keys[0].key},
		{"gateway", func(p int) string {
			return fmt.Sprintf("%s/v1/sessions/demo_session/contacts?limit=1&page=%d", gwURL, p)
		}, keys[0].key},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	page := 0
	next := func() int { page = page%100000 + 1; return page }
	// Warm-up, not measured: the token, the connections, the session's mapping.
	for _, p := range paths {
		for range 200 {
			if d, ok := readURL(ctx, client, p.url(next()), p.key); !ok {
				return fmt.Errorf("warm-up: %s answered other than 200 after %s", p.name, d)
			}
		}
	}
	window := max(1, o.latencyRequests/latencyRounds)
	lat := make([][]time.Duration, len(paths))
	cpu := make([]time.Duration, len(paths))
	for round := range latencyRounds {
		for i, p := range paths {
			c0 := gw.CPU()
			for range window {
				d, ok := readURL(ctx, client, p.url(next()), p.key)
				if !ok {
					return fmt.Errorf("%s answered other than 200", p.name)
				}
				lat[i] = append(lat[i], d)
			}
			cpu[i] += gw.CPU() - c0
		}
		h.logf("latency round %d of %d done, %s", round+1, latencyRounds, loadavg())
	}
	printLatency(paths, lat, cpu)
	return nil
}

// printLatency prints each path's percentiles, the gateway's CPU per request, and what each
// gateway path adds to the direct one (the difference of the percentiles).
func printLatency(paths []latencyPath, lat [][]time.Duration, cpu []time.Duration) {
	results := make([]readResult, len(paths))
	for i := range paths {
		results[i] = summarize(lat[i])
	}
	fmt.Printf("\nupstream read latency, one request at a time, %d alternated windows, %s, %s\n",
		latencyRounds, stamp(), loadavg())
	fmt.Printf("%-12s %-8s %-10s %-10s %-10s %-16s %s\n", "path", "requests", "p50", "p99", "max", "gateway CPU/req", "added p50 / p99")
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	for i, p := range paths {
		r, added := results[i], "-"
		if i > 0 {
			added = us(r.p50-results[0].p50) + " / " + us(r.p99-results[0].p99)
		}
		fmt.Printf("%-12s %-8d %-10s %-10s %-10s %-16s %s\n", p.name, r.n, us(r.p50), us(r.p99), us(r.max),
			us(cpu[i]/time.Duration(max(1, r.n))), added)
	}
	fmt.Println("(goal: the passthrough adds at most 0.5 ms at p50 and 1 ms at p99)")
	fmt.Println()
}
