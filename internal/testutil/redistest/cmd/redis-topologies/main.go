// Command redis-topologies starts the test run's shared Redis Cluster (3 masters) and Sentinel
// set (a master, a replica, 3 sentinels) from the machine's redis-server, writes their REDIS_URLs
// as shell exports to a file once both are ready, and stops them when it is signalled (or dies).
// ./scripts/test runs it in the background and sources the file.
//
// It is a test tool: it binds loopback ports only and must not be shipped or run in a deployment.
//
//	redis-topologies -dir DIR -env FILE [-cluster-replicas N]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

func main() {
	dir := flag.String("dir", "", "directory for the nodes' and sentinels' files (created)")
	envFile := flag.String("env", "", "file to write the exports to once everything is ready")
	replicas := flag.Int("cluster-replicas", 1, "replicas per cluster master")
	flag.Parse()
	if *dir == "" || *envFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	stop, err := start(*dir, *envFile, *replicas)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redis-topologies:", err)
		os.Exit(1)
	}
	<-signals
	stop()
}

// start launches both topologies at once and writes the env file; stop kills them.
func start(dir, envFile string, replicas int) (stop func(), err error) {
	clusterDir, sentinelDir := filepath.Join(dir, "cluster"), filepath.Join(dir, "sentinel")
	for _, d := range []string{clusterDir, sentinelDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	type result struct {
		url, what string
		took      time.Duration
		stop      func()
		err       error
	}
	results := make(chan result, 2)
	go func() {
		t0 := time.Now()
		c, err := redistest.LaunchCluster(clusterDir, 3, replicas)
		if err != nil {
			results <- result{err: err}
			return
		}
		results <- result{url: c.URL(), what: redistest.ClusterURLEnv, took: time.Since(t0), stop: c.Stop}
	}()
	go func() {
		t0 := time.Now()
		s, err := redistest.LaunchSentinel(sentinelDir)
		if err != nil {
			results <- result{err: err}
			return
		}
		results <- result{url: s.URL(0), what: redistest.SentinelURLEnv, took: time.Since(t0), stop: s.Stop}
	}()
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	exports := ""
	var firstErr error
	for range 2 {
		r := <-results
		if r.err != nil {
			firstErr = r.err
			continue
		}
		stops = append(stops, r.stop)
		exports += fmt.Sprintf("export %s=%q\n", r.what, r.url)
		fmt.Fprintf(os.Stderr, "redis-topologies: %s ready in %.1fs\n", r.what, r.took.Seconds())
	}
	if firstErr != nil {
		stopAll()
		return nil, firstErr
	}
	tmp := envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(exports), 0o600); err != nil {
		stopAll()
		return nil, err
	}
	if err := os.Rename(tmp, envFile); err != nil {
		stopAll()
		return nil, err
	}
	return stopAll, nil
}
