// Command soak is the gateway's chaos soak: a whole fleet on one machine under steady mixed load
// while replicas are killed and Redis fails over, ending with a verdict (a table and the exit
// code: 0 pass, 1 fail, 2 the soak itself could not run).
//
//	./scripts/soak 10m      (builds the binaries, then runs this program with -duration 10m)
//
// What it starts: the Inbox Hub simulator (cmd/inboxhub-sim), a Redis Sentinel set (a master, a
// replica and three sentinels, from Debian's redis-server, through internal/testutil/redistest),
// three gateway replicas (cmd/gateway) on distinct ports sharing one redis-sentinel:// REDIS_URL and
// the same secrets (generated at start, obviously fake), and, in this process, a small CRM receiver
// that takes the signed sync batches (CRM_SINK_URL) and forwarded events (CRM_EVENTS_URL),
// checking X-Gateway-Signature as the gateway signs them.
//
// The load, round-robin over the replicas that are up (as a load balancer would): cached reads
// (/v1/sessions and a session's contacts, chats and messages), passthrough reads (/api/...), sends
// with an Idempotency-Key (each key used three times: twice at once on two replicas, once more after
// the idempotency lease has run out), about 200 signed webhooks a second (POST /webhooks/inbox-hub,
// one in flight per session so the order of acceptance is known) and two sync jobs at a time, each
// on a session never synced before.
//
// The chaos: every 60 s one replica gets SIGKILL and is started again; every 3 minutes (from 90 s)
// the Redis master gets SIGKILL (a failover), and a new replica of the promoted master is started.
//
// The verdict: every sync job's items (distinct ids the CRM got) equal what the simulator holds;
// every accepted webhook reached the CRM once, in order per session; no send reached the upstream
// twice (the simulator's messages and counters); the upstream logins; and per phase (steady, around
// replica kills, around failovers) the non-2xx answers, expected ones apart, with p50 and p99.
//
// It drives everything over HTTP and processes; it imports no gateway package but redistest.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the soak's flags.
type options struct {
	duration      time.Duration
	gatewayBin    string
	simBin        string
	dir           string
	replicas      int
	killEvery     time.Duration
	failoverEvery time.Duration
	failoverFirst time.Duration
	webhookRate   int
	keep          bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load and the chaos last (the drain and the verdict come after)")
	fs.StringVar(&o.gatewayBin, "gateway", "", "path of the gateway binary (required)")
	fs.StringVar(&o.simBin, "sim", "", "path of the inboxhub-sim binary (required)")
	fs.StringVar(&o.dir, "dir", "", "working directory for logs, spools and Redis files (default: a new temporary one)")
	fs.IntVar(&o.replicas, "replicas", 3, "gateway replicas")
	fs.DurationVar(&o.killEvery, "kill-every", time.Minute, "SIGKILL one replica this often (0: never)")
	fs.DurationVar(&o.failoverEvery, "failover-every", 3*time.Minute, "kill the Redis master this often (0: never)")
	fs.DurationVar(&o.failoverFirst, "failover-first", 90*time.Second, "when the first failover happens")
	fs.IntVar(&o.webhookRate, "webhooks", 200, "webhooks per second")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory even when the verdict passes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.gatewayBin == "" || o.simBin == "" || o.duration <= 0 || o.replicas < 2 {
		fmt.Fprintln(stderr, "soak: -gateway, -sim, a positive -duration and at least 2 -replicas are required")
		return 2
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "gateway-soak-")
		if err != nil {
			fmt.Fprintln(stderr, "soak:", err)
			return 2
		}
		o.dir = d
	} else if err := os.MkdirAll(o.dir, 0o700); err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	o.dir, _ = filepath.Abs(o.dir)
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "soak %s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, a...)...)
	}
	v, err := soak(ctx, o, logf)
	if err != nil {
		logf("failed: %v (logs in %s)", err, o.dir)
		return 2
	}
	v.print(stdout)
	if !v.pass() || o.keep {
		logf("logs kept in %s", o.dir)
	} else {
		_ = os.RemoveAll(o.dir)
	}
	if !v.pass() {
		return 1
	}
	return 0
}

// soak starts the fleet, runs the load and the chaos for o.duration, drains, and judges.
func soak(ctx context.Context, o options, logf func(string, ...any)) (*verdict, error) {
	f, err := startFleet(ctx, o, logf)
	if err != nil {
		return nil, err
	}
	defer f.stop(logf)
	rec := newRecorder()
	l := newLoad(f, rec, o, logf)
	ch := &chaos{f: f, logf: logf}

	start := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	loadDone := l.run(runCtx)
	chaosDone := ch.run(runCtx, o, start)
	go progress(runCtx, start, rec, f.crm, logf)
	<-chaosDone
	<-loadDone
	end := time.Now()
	samples := rec.close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	logf("load over after %s; draining: running sync jobs, event outboxes, late sends", end.Sub(start).Round(time.Second))
	if err := l.drain(ctx); err != nil {
		return nil, err
	}
	return judge(ctx, f, l, samples, ch.windows(), start, end)
}

// progress logs a line every 15 s while the load runs.
func progress(ctx context.Context, start time.Time, rec *recorder, crm *crm, logf func(string, ...any)) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, bad := rec.counts()
			ev, batches := crm.counts()
			logf("t=%s requests=%d non-2xx=%d events-at-crm=%d sync-batches=%d", time.Since(start).Round(time.Second), n, bad, ev, batches)
		}
	}
}
