package app_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

// BenchmarkCachedSessionsThroughput compares the throughput of a cached GET /v1/sessions through
// the gateway's whole middleware chain, with every layer production runs switched on (request id,
// recovery, security headers, access log, metrics, errors, CORS with an allowed Origin, body
// limit, the failed-authentication throttle at its default rate, API-key auth, the fleet-wide
// per-caller limit, scope check, cache, envelope) with a bare gin handler that writes the same
// bytes from memory, and with a bare handler that also sends the gateway's header lines (the same
// answer), with the same load generator (wrk, Debian's package) in the same run. It reports the
// three rates, the gateway's ratio to each bare handler, and each side's CPU per request.
//
//	go test -run '^$' -bench CachedSessionsThroughput -benchtime 1x ./internal/app/
func BenchmarkCachedSessionsThroughput(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	g := startGateway(b, simURL, creds, redistest.URL(b), productionLayers())
	a := g.request(b, http.MethodGet, "/v1/sessions", nil, map[string]string{"Origin": benchOrigin})
	if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != benchOrigin {
		b.Fatalf("warm-up = %d %s (CORS %q)", a.status, a.body, a.header.Get("Access-Control-Allow-Origin"))
	}
	body, key := []byte(a.body), g.key
	urls := map[string]string{
		"gateway":     g.url + "/v1/sessions",
		"bare":        bareSessions(b, body, nil),
		"bare-answer": bareSessions(b, body, a.header),
	}

	// Rounds of the three, one after the other, so that the machine's changing load hits each
	// alike; the medians are reported.
	results, serverCPU, wrkCPU := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	var ratios, answerRatios, cpuRatios []float64
	for range 5 {
		round := map[string]wrkRound{}
		for _, name := range []string{"bare", "bare-answer", "gateway"} {
			round[name] = loadWrk(b, wrk, urls[name], key, benchOrigin)
			results[name] = append(results[name], round[name].rate)
			serverCPU[name] = append(serverCPU[name], round[name].serverCPU)
			wrkCPU[name] = append(wrkCPU[name], round[name].wrkCPU)
		}
		ratios = append(ratios, round["gateway"].rate/round["bare"].rate)
		answerRatios = append(answerRatios, round["gateway"].rate/round["bare-answer"].rate)
		cpuRatios = append(cpuRatios, round["bare"].serverCPU/round["gateway"].serverCPU)
	}
	for name := range results {
		b.ReportMetric(median(results[name]), name+"-req/s")
		b.ReportMetric(median(serverCPU[name]), name+"-server-µs/req")
		b.ReportMetric(median(wrkCPU[name]), name+"-wrk-µs/req")
	}
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(slices.Min(ratios), "ratio-min")
	b.ReportMetric(slices.Max(ratios), "ratio-max")
	b.ReportMetric(median(answerRatios), "ratio-same-answer")
	b.ReportMetric(median(cpuRatios), "ratio-server-cpu")
}

// BenchmarkCachedSessionsLayers is what each optional layer costs the cached GET /v1/sessions:
// the gateway with every production layer on, then with one of them off at a time (the
// per-caller limit, the failed-authentication throttle, CORS), then with all three off (request
// id, recovery, security headers, access log, metrics, errors, body limit, auth, scope check and
// cache stay: they are not optional), each against a bare gin handler writing the same bytes, in
// interleaved rounds of wrk. It reports each variant's median ratio to the bare handler.
//
//	go test -run '^$' -bench CachedSessionsLayers -benchtime 1x ./internal/app/
func BenchmarkCachedSessionsLayers(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	without := func(off ...string) map[string]string {
		env := productionLayers()
		for _, k := range off {
			env[k] = "0"
		}
		if slices.Contains(off, "GATEWAY_CORS_ORIGINS") {
			delete(env, "GATEWAY_CORS_ORIGINS")
		}
		return env
	}
	variants := []struct {
		name string
		env  map[string]string
	}{
		{"all", productionLayers()},
		{"no-caller-limit", without("GATEWAY_CALLER_RATE")},
		{"no-auth-throttle", without("GATEWAY_AUTH_FAILURE_RATE")},
		{"no-cors", without("GATEWAY_CORS_ORIGINS")},
		{"none-optional", without("GATEWAY_CALLER_RATE", "GATEWAY_AUTH_FAILURE_RATE", "GATEWAY_CORS_ORIGINS")},
	}
	type target struct{ url, key, origin string }
	targets := map[string]target{}
	var body []byte
	for _, v := range variants {
		g := startGateway(b, simURL, creds, redistest.URL(b), v.env)
		origin := ""
		if _, ok := v.env["GATEWAY_CORS_ORIGINS"]; ok {
			origin = benchOrigin
		}
		a := g.request(b, http.MethodGet, "/v1/sessions", nil, map[string]string{"Origin": origin})
		if a.status != http.StatusOK {
			b.Fatalf("%s: warm-up = %d %s", v.name, a.status, a.body)
		}
		body = []byte(a.body)
		targets[v.name] = target{g.url + "/v1/sessions", g.key, origin}
	}
	bareURL := bareSessions(b, body, nil)
	ratios := map[string][]float64{}
	for range 3 {
		rate := runWrk(b, wrk, bareURL, "unused", benchOrigin)
		for _, v := range variants {
			t := targets[v.name]
			ratios[v.name] = append(ratios[v.name], runWrk(b, wrk, t.url, t.key, t.origin)/rate)
		}
	}
	for _, v := range variants {
		b.ReportMetric(median(ratios[v.name]), "ratio-"+v.name)
	}
}

// bareSessions serves body at /v1/sessions from a bare gin handler until the benchmark ends, and
// returns that URL: the baseline of the throughput benchmarks. With header (the gateway's own
// answer's), the bare handler also sends the gateway's header lines, from memory: the same
// answer, byte for byte but for the date and the request id, so that a ratio to it leaves out
// what the answer's size costs the server, the kernel and the load generator.
func bareSessions(b *testing.B, body []byte, header http.Header) string {
	gin.SetMode(gin.ReleaseMode)
	bare := gin.New()
	fixed := header.Clone()
	for _, k := range []string{"Date", "Content-Length", "Content-Type"} {
		fixed.Del(k)
	}
	bare.GET("/v1/sessions", func(c *gin.Context) {
		h := c.Writer.Header()
		for k, v := range fixed {
			h[k] = v
		}
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
	})
	srv := httptest.NewServer(bare)
	b.Cleanup(srv.Close)
	return srv.URL + "/v1/sessions"
}

// benchOrigin is the browser origin the benchmarks' requests carry, allowed by productionLayers.
const benchOrigin = "https://crm.example.invalid"

// productionLayers is the configuration of a replica with every per-request layer production
// runs: the per-caller limit (a rate that never refuses during a run, so that its cost is
// measured, not its refusals), the failed-authentication throttle at its default rate, CORS
// with an allowed origin. The access log and the metrics are always on.
func productionLayers() map[string]string {
	return map[string]string{
		"GATEWAY_CALLER_RATE":       "100000000/1m",
		"GATEWAY_AUTH_FAILURE_RATE": "30/1m",
		"GATEWAY_CORS_ORIGINS":      benchOrigin,
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`([0-9]+) requests in`)
)

// runWrk loads url for 3 s with 2 threads and 32 connections and returns the requests per second;
// origin, when not empty, is sent as the requests' Origin.
func runWrk(b *testing.B, wrk, url, key, origin string) float64 {
	return loadWrk(b, wrk, url, key, origin).rate
}

// wrkRound is one wrk run: its rate, and the CPU per request of this test process (the servers:
// nothing else in it works while wrk runs) and of wrk itself.
type wrkRound struct {
	rate, serverCPU, wrkCPU float64 // req/s, µs, µs
}

// loadWrk is runWrk with the CPU each side spent per request. On this machine wrk shares the two
// cores with the servers, so what a longer answer costs wrk to read lowers the server's rate; the
// servers' CPU per request is the figure a load generator on other cores would see.
func loadWrk(b *testing.B, wrk, url, key, origin string) wrkRound {
	b.Helper()
	args := []string{"-t2", "-c32", "-d3s", "-H", "X-API-Key: " + key}
	if origin != "" {
		args = append(args, "-H", "Origin: "+origin)
	}
	cmd := exec.Command(wrk, append(args, url)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	before := processCPU(b)
	if err := cmd.Run(); err != nil {
		b.Fatalf("wrk: %v\n%s", err, out.String())
	}
	server := processCPU(b) - before
	if bytes.Contains(out.Bytes(), []byte("Non-2xx")) {
		b.Fatalf("wrk saw non-2xx answers from %s:\n%s", url, out.String())
	}
	m, n := wrkRate.FindSubmatch(out.Bytes()), wrkRequests.FindSubmatch(out.Bytes())
	if m == nil || n == nil {
		b.Fatalf("no rate in wrk output:\n%s", out.String())
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	requests, _ := strconv.ParseFloat(string(n[1]), 64)
	perRequest := func(d time.Duration) float64 { return float64(d.Microseconds()) / requests }
	return wrkRound{
		rate:      rps,
		serverCPU: perRequest(server),
		wrkCPU:    perRequest(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()),
	}
}

// processCPU is the CPU time this process has spent, user and system.
func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkRouterCachedSessions is the CPU cost of one cached GET /v1/sessions through the whole
// router, in process (no network), with every production layer on (productionLayers): a profile
// of it shows where the middleware chain spends its time.
//
//	go test -run '^$' -bench RouterCachedSessions -benchtime 100000x -cpuprofile cpu.out ./internal/app/
func BenchmarkRouterCachedSessions(b *testing.B) {
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	g := startGateway(b, simURL, creds, redistest.URL(b), productionLayers())
	h := g.app.Handler()
	req := httptest.NewRequest(http.MethodGet, "/v1/sessions", nil)
	req.Header.Set("X-API-Key", g.key)
	req.Header.Set("Origin", benchOrigin)
	h.ServeHTTP(httptest.NewRecorder(), req)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkConditionalSessions compares a cached GET /v1/sessions answered in full with the same
// GET carrying the answer's ETag in If-None-Match (304, no body), through the whole router.
func BenchmarkConditionalSessions(b *testing.B) {
	creds := newCreds()
	_, simURL := startSim(b, creds, sim.Options{})
	g := startGateway(b, simURL, creds, redistest.URL(b), map[string]string{"GATEWAY_CALLER_RATE": "100000000/1m"})
	h := g.app.Handler()
	req := httptest.NewRequest(http.MethodGet, "/v1/sessions", nil)
	req.Header.Set("X-API-Key", g.key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	tag := w.Header().Get("ETag")
	if tag == "" {
		b.Fatal("no ETag")
	}
	for _, bc := range []struct {
		name        string
		ifNoneMatch string
		want        int
	}{{"full", "", http.StatusOK}, {"not-modified", tag, http.StatusNotModified}} {
		b.Run(bc.name, func(b *testing.B) {
			r := req.Clone(req.Context())
			if bc.ifNoneMatch != "" {
				r.Header.Set("If-None-Match", bc.ifNoneMatch)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != bc.want {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
