// Command flatcost measures whether the gateway's costs stay flat as the load grows: each
// measurement runs the real gateway binary as a child process twice, at a small and at a large
// point, in the same run, and prints the two side by side with their ratio.
//
//	sync      peak RSS of the gateway during a full sync of 1x and of 10x today's scale run
//	          (25,000 contacts, 2,000 chats, 60,000 messages) to a counting CRM sink
//	webhooks  gateway CPU time per accepted signed webhook at 100/s and at 2,000/s
//	reads     p50/p99 of cached GET /v1/sessions at one rate from 1 and from 10,000 API keys
//	latency   what the gateway adds to an upstream read (p50/p99), against calling the simulator
//	          directly and through the floor (a bare reverse proxy, without and with one Redis
//	          round trip), one request at a time (not a flat cost: the same harness, from outside)
//
// The simulator (cmd/inboxhub-sim) and Redis run in processes of their own; the load generator
// and the CRM stand-in run here. Nothing is asserted: the figures are for docs/benchmarks.md.
// Run it through ./scripts/bench-flat, which builds the binaries.
//
// It owns nothing but the measurements; the gateway is measured as built.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	gatewayBin string
	simBin     string
	dir        string
	what       string
	// sync
	scaleBig float64
	// webhooks
	lowRate, highRate int
	hookSeconds       int
	// reads
	readRate     int
	readSeconds  int
	manyCallers  int
	readInFlight int
	callerRate   string
	// latency
	latencyRequests int
}

func main() {
	var o options
	flag.StringVar(&o.gatewayBin, "gateway", "", "the gateway binary (go build ./cmd/gateway)")
	flag.StringVar(&o.simBin, "sim", "", "the simulator binary (go build ./cmd/inboxhub-sim)")
	flag.StringVar(&o.dir, "dir", "", "working directory for logs and files (default: a temporary one, removed)")
	flag.Float64Var(&o.scaleBig, "sync-scale", 10, "sync: the large run's multiple of today's scale run")
	flag.IntVar(&o.lowRate, "hook-low", 100, "webhooks: the low rate, deliveries per second")
	flag.IntVar(&o.highRate, "hook-high", 2000, "webhooks: the high rate, deliveries per second")
	flag.IntVar(&o.hookSeconds, "hook-seconds", 10, "webhooks: seconds of sending at each rate")
	flag.IntVar(&o.readRate, "read-rate", 500, "reads: requests per second, in both cases")
	flag.IntVar(&o.readSeconds, "read-seconds", 20, "reads: seconds measured in each case")
	flag.IntVar(&o.manyCallers, "read-callers", 10000, "reads: the number of distinct API keys of the large case")
	flag.IntVar(&o.readInFlight, "read-inflight", 64, "reads: most requests in flight")
	flag.StringVar(&o.callerRate, "read-caller-rate", "1000000/1m", "reads: the gateway's GATEWAY_CALLER_RATE (on, too high to refuse; 0: off)")
	flag.IntVar(&o.latencyRequests, "latency-requests", 4000, "latency: requests measured on each path")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: flatcost -gateway BIN -sim BIN [flags] sync|webhooks|reads|latency|all")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 1 && flag.Arg(0) == floorCommand { // started by startFloor
		if err := serveFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "flatcost floor proxy:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 1 || o.gatewayBin == "" || o.simBin == "" {
		flag.Usage()
		os.Exit(2)
	}
	o.what = flag.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flatcost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "flatcost-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	measures := map[string]func(context.Context, *harness) error{
		"sync":     func(ctx context.Context, h *harness) error { return measureSync(ctx, h, o) },
		"webhooks": func(ctx context.Context, h *harness) error { return measureWebhooks(ctx, h, o) },
		"reads":    func(ctx context.Context, h *harness) error { return measureReads(ctx, h, o) },
		"latency":  func(ctx context.Context, h *harness) error { return measureLatency(ctx, h, o) },
	}
	order := []string{o.what}
	if o.what == "all" {
		order = []string{"sync", "webhooks", "reads", "latency"}
	}
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	for _, name := range order {
		m, ok := measures[name]
		if !ok {
			return fmt.Errorf("unknown measurement %q (sync, webhooks, reads, latency or all)", name)
		}
		h.logf("%s: start, %s", name, loadavg())
		if err := m(ctx, h); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		h.logf("%s: done, %s", name, loadavg())
	}
	return nil
}

// loadavg is the machine's load average now (other work shares it).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	var a, b5, c float64
	_, _ = fmt.Sscan(string(b), &a, &b5, &c)
	return fmt.Sprintf("load average %.2f %.2f %.2f", a, b5, c)
}

func stamp() string { return time.Now().UTC().Format("2006-01-02 15:04:05 UTC") }
