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
	results := make(chan launched, 2)
	go launch(results, redistest.ClusterURLEnv, func() (string, func(), error) {
		c, err := redistest.LaunchCluster(clusterDir, 3, replicas)
		if err != nil {
			return "", nil, err
		}
		return c.URL(), c.Stop, nil
	})
	go launch(results, redistest.SentinelURLEnv, func() (string, func(), error) {
		s, err := redistest.LaunchSentinel(sentinelDir)
		if err != nil {
			return "", nil, err
		}
		return s.URL(0), s.Stop, nil
	})
	stopAll, exports, err := collect(results, 2)
	if err != nil {
		return nil, err
	}
	if err := writeEnv(envFile, exports); err != nil {
		stopAll()
		return nil, err
	}
	return stopAll, nil
}

// launched is a topology started, with the variable that carries its URL, or why it did not start.
type launched struct {
	url, what string
	took      time.Duration
	stop      func()
	err       error
}

// launch starts a topology with up and sends the result, its URL named what, on results.
func launch(results chan<- launched, what string, up func() (url string, stop func(), err error)) {
	t0 := time.Now()
	url, stop, err := up()
	if err != nil {
		results <- launched{err: err}
		return
	}
	results <- launched{url: url, what: what, took: time.Since(t0), stop: stop}
}

// collect waits for n launches and returns their exports and what stops them all; when any failed,
// it stops those that started and returns the error.
func collect(results <-chan launched, n int) (stopAll func(), exports string, err error) {
	var stops []func()
	stopAll = func() {
		for _, s := range stops {
			s()
		}
	}
	for range n {
		r := <-results
		if r.err != nil {
			err = r.err
			continue
		}
		stops = append(stops, r.stop)
		exports += fmt.Sprintf("export %s=%q\n", r.what, r.url)
		fmt.Fprintf(os.Stderr, "redis-topologies: %s ready in %.1fs\n", r.what, r.took.Seconds())
	}
	if err != nil {
		stopAll()
		return nil, "", err
	}
	return stopAll, exports, nil
}

// writeEnv writes the exports to envFile at once (a rename), so that a reader never sees half.
func writeEnv(envFile, exports string) error {
	tmp := envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(exports), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, envFile)
}
