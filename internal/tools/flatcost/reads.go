package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// readResult is one read case: latencies of the measured requests.
type readResult struct {
	lat           []time.Duration // sorted
	callers       int
	n, non200     int
	took          time.Duration
	p50, p99, max time.Duration
	cpu           time.Duration
}

// readRounds is how many alternated windows of each case a run measures: the machine's load
// drifts, and alternating spreads the drift over both cases.
const readRounds = 4

// measureReads sends cached GET /v1/sessions to one gateway at one rate, from one API key and from
// manyCallers keys in turn (one key file of manyCallers entries), after a warm-up that uses every
// key once; the two cases alternate in readRounds windows each, and their latencies are compared.
func measureReads(ctx context.Context, h *harness, o options) error {
	// The per-caller limit stays on (its state is per caller), by default too high to refuse anything.
	f, err := h.startReadFleet(ctx, "reads", o.manyCallers, "sessions:read", o.callerRate)
	if err != nil {
		return err
	}
	defer f.stop()
	gw, gwURL, keys := f.gw, f.gwURL, f.keys
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.readInFlight}}
	// Warm-up, not measured: every key once (and at least 2 s of the rate).
	warm := max(o.manyCallers, 2*o.readRate)
	if w := paceReads(ctx, client, gwURL, keys, o.readRate, o.readInFlight, warm, 0); w.non200 > 0 {
		return fmt.Errorf("warm-up: %d of %d answers were not 200", w.non200, w.n)
	}
	window := o.readRate * o.readSeconds / readRounds
	lat := [2][]time.Duration{}
	var cpu [2]time.Duration
	var non200 [2]int
	next := warm // the many callers' next key
	for round := range readRounds {
		for c, ks := range [][]apiKey{keys[:1], keys} {
			c0 := gw.CPU()
			r := paceReads(ctx, client, gwURL, ks, o.readRate, o.readInFlight, window, next)
			cpu[c] += gw.CPU() - c0
			lat[c] = append(lat[c], r.lat...)
			non200[c] += r.non200
			if c == 1 {
				next += window
			}
			h.logf("reads round %d, %d callers: p50 %s, p99 %s, %d not 200, %s", round+1, len(ks),
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.non200, loadavg())
		}
	}
	results := []readResult{summarize(lat[0]), summarize(lat[1])}
	results[0].callers, results[1].callers = 1, o.manyCallers
	for c := range results {
		results[c].cpu, results[c].non200 = cpu[c], non200[c]
	}
	fmt.Printf("\ncached reads, GET /v1/sessions at %d/s, %d alternated windows of %d requests per case, GATEWAY_CALLER_RATE=%s, %s, %s\n",
		o.readRate, readRounds, window, o.callerRate, stamp(), loadavg())
	fmt.Printf("%-8s %-8s %-7s %-10s %-10s %-10s %s\n", "callers", "requests", "non-200", "p50", "p99", "max", "gateway CPU/request")
	for _, r := range results {
		fmt.Printf("%-8d %-8d %-7d %-10s %-10s %-10s %s\n", r.callers, r.n, r.non200, r.p50.Round(time.Microsecond),
			r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond), (r.cpu / time.Duration(max(1, r.n))).Round(time.Microsecond))
	}
	fmt.Printf("p99 ratio %d callers / 1: %.2f; p50 ratio %.2f (goal: flat, near 1)\n\n", o.manyCallers,
		float64(results[1].p99)/float64(results[0].p99), float64(results[1].p50)/float64(results[0].p50))
	return nil
}

// summarize sorts lat and takes its percentiles.
func summarize(lat []time.Duration) readResult {
	slices.Sort(lat)
	r := readResult{n: len(lat), lat: lat}
	if len(lat) > 0 {
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	return r
}

// paceReads sends n cached reads at rate per second (open loop, at most inFlight at once),
// request i with key (first+i) mod len(keys), and returns their latency percentiles.
func paceReads(ctx context.Context, c *http.Client, gwURL string, keys []apiKey, rate, inFlight, n, first int) readResult {
	work := make(chan int, inFlight)
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, n)
		non200 int
		wg     sync.WaitGroup
	)
	for range inFlight {
		wg.Go(func() {
			for i := range work {
				d, ok := readOnce(ctx, c, gwURL, keys[(first+i)%len(keys)].key)
				mu.Lock()
				lat = append(lat, d)
				if !ok {
					non200++
				}
				mu.Unlock()
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		work <- i
	}
	close(work)
	wg.Wait()
	r := summarize(lat)
	r.non200, r.took = non200, time.Since(start)
	return r
}

func readOnce(ctx context.Context, c *http.Client, gwURL, key string) (time.Duration, bool) {
	return readURL(ctx, c, gwURL+"/v1/sessions", key)
}

// readURL GETs url with the API key and reads the answer to its end; it reports how long that
// took and whether the answer was a 200.
func readURL(ctx context.Context, c *http.Client, url, key string) (time.Duration, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	req.Header.Set("X-API-Key", key)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(t0), false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return time.Since(t0), resp.StatusCode == http.StatusOK
}
