package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// latencyRounds is how many alternated windows of each path a latency run measures (see
// readRounds).
const latencyRounds = 4

// latencyPath is one way to the same upstream read: directly, through a floor proxy or through
// the gateway; proc is the process between (nil when direct), whose CPU time is reported.
type latencyPath struct {
	name string
	url  func(page int) string
	key  string
	proc *childproc.Process
}

// measureLatency measures what the gateway adds to an upstream read, from outside: the same page
// of contacts (a new page each time, so that no cache answers), one request at a time, directly
// on the simulator, through the floor proxies (floor.go), through the drop-in passthrough and
// through the gateway's own route, in alternated windows. Unlike the in-process benchmark
// (UpstreamCallPath), every process is its own, so a latency holds only its own garbage collection
// and scheduling; the floors show what one more process, and one Redis round trip, cost on this
// machine before the gateway does anything.
func measureLatency(ctx context.Context, h *harness, o options) error {
	// The per-caller limit stays on, at a rate too high to refuse anything (as in reads).
	f, err := h.startReadFleet(ctx, "latency", 1, "messages:read", o.callerRate)
	if err != nil {
		return err
	}
	defer f.stop()
	floor, floorURL, err := h.startFloor(ctx, "latency", f.simURL, "")
	if err != nil {
		return err
	}
	defer floor.Stop(10 * time.Second)
	floorRedis, floorRedisURL, err := h.startFloor(ctx, "latency-redis", f.simURL, h.redisURL)
	if err != nil {
		return err
	}
	defer floorRedis.Stop(10 * time.Second)
	contacts := func(base string) func(int) string {
		return func(p int) string { return fmt.Sprintf("%s/api/contacts/demo_session?limit=1&page=%d", base, p) }
	}
	key := f.keys[0].key
	paths := []latencyPath{
		{"direct", contacts(f.simURL), h.simKey, nil},
		{"floor", contacts(floorURL), h.simKey, floor},
		{"floor+redis", contacts(floorRedisURL), h.simKey, floorRedis},
		{"passthrough", contacts(f.gwURL), key, f.gw},
		{"gateway", func(p int) string {
			return fmt.Sprintf("%s/v1/sessions/demo_session/contacts?limit=1&page=%d", f.gwURL, p)
		}, key, f.gw},
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
			c0 := p.cpu()
			for range window {
				d, ok := readURL(ctx, client, p.url(next()), p.key)
				if !ok {
					return fmt.Errorf("%s answered other than 200", p.name)
				}
				lat[i] = append(lat[i], d)
			}
			cpu[i] += p.cpu() - c0
		}
		h.logf("latency round %d of %d done, %s", round+1, latencyRounds, loadavg())
	}
	printLatency(paths, lat, cpu)
	fmt.Printf("peak resident set (VmHWM): floor %s, floor+redis %s, gateway %s\n\n",
		mib(floor.Status("VmHWM")), mib(floorRedis.Status("VmHWM")), mib(f.gw.Status("VmHWM")))
	return nil
}

// cpu is the CPU time of the path's process so far (zero when direct).
func (p latencyPath) cpu() time.Duration {
	if p.proc == nil {
		return 0
	}
	return p.proc.CPU()
}

// printLatency prints each path's percentiles, the CPU per request of the process between, what
// each path adds to the direct one (the difference of the percentiles), and what the passthrough
// adds to the floor with Redis: the gateway's own share.
func printLatency(paths []latencyPath, lat [][]time.Duration, cpu []time.Duration) {
	results := make([]readResult, len(paths))
	byName := map[string]readResult{}
	for i, p := range paths {
		results[i] = summarize(lat[i])
		byName[p.name] = results[i]
	}
	fmt.Printf("\nupstream read latency, one request at a time, %d alternated windows, %s, %s\n",
		latencyRounds, stamp(), loadavg())
	fmt.Printf("%-12s %-8s %-10s %-10s %-10s %-16s %s\n", "path", "requests", "p50", "p99", "max", "CPU/req between", "added p50 / p99")
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	for i, p := range paths {
		r, added := results[i], "-"
		if i > 0 {
			added = us(r.p50-results[0].p50) + " / " + us(r.p99-results[0].p99)
		}
		fmt.Printf("%-12s %-8d %-10s %-10s %-10s %-16s %s\n", p.name, r.n, us(r.p50), us(r.p99), us(r.max),
			us(cpu[i]/time.Duration(max(1, r.n))), added)
	}
	pt, fl := byName["passthrough"], byName["floor+redis"]
	fmt.Printf("the passthrough over the floor with Redis: %s / %s\n", us(pt.p50-fl.p50), us(pt.p99-fl.p99))
	fmt.Println("(goal: the passthrough adds at most 0.5 ms at p50 and 1 ms at p99)")
}
