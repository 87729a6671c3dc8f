// Package redistest gives tests a real Redis: a fresh, empty logical database on the server that
// the test script started (TEST_REDIS_URL), or a redis-server process of the test's own when a test
// needs to stop and restart it. Tests never use the embedded store in place of Redis.
//
// It is for tests only: no package outside tests imports it.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Databases is how many logical databases the test script gives its redis-server; database 0 holds
// the allocation counter, every other one is handed to at most one test at a time.
const Databases = 1024

const counterKey = "redistest:next-db"

// New returns a client on an empty logical database of the shared test Redis. The database is
// flushed before use and the client closed when the test ends. Without TEST_REDIS_URL it starts a
// private redis-server (see Start).
func New(t testing.TB) *redis.Client {
	t.Helper()
	base := os.Getenv("TEST_REDIS_URL")
	if base == "" {
		srv := sharedServer(t)
		base = srv.URL()
	}
	opts, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin := redis.NewClient(opts)
	n, err := admin.Incr(ctx, counterKey).Result()
	_ = admin.Close()
	if err != nil {
		t.Fatalf("test redis at %s: %v", opts.Addr, err)
	}
	opts.DB = int(n%(Databases-1)) + 1
	client := redis.NewClient(opts)
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush test redis db %d: %v", opts.DB, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// URL returns a redis:// URL of an empty logical database, for code under test that opens its own
// clients (for example a whole gateway instance built from configuration).
func URL(t testing.TB) string {
	t.Helper()
	c := New(t)
	o := c.Options()
	return fmt.Sprintf("redis://%s/%d", o.Addr, o.DB)
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

func sharedServer(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = startProcess()
	})
	if sharedErr != nil {
		skipOrFail(t, sharedErr)
	}
	return shared
}

// Server is a redis-server process owned by one test, which may stop and restart it on the same
// port to check how code behaves while Redis is away.
type Server struct {
	Addr string
	mu   sync.Mutex
	proc *proc // nil while stopped
}

// Start runs a private redis-server on a free loopback port and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := startProcess()
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL is the redis:// URL of database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Stop kills the server; Restart brings it back on the same address, empty.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.kill()
	s.proc = nil
}

// Restart starts the server again on its old address after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	p, err := launch(port, serverArgs(port, "--databases", strconv.Itoa(Databases)))
	if err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	s.proc = p
}

func startProcess() (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errNoRedis
	}
	p, err := startFree(func(port string) []string {
		return serverArgs(port, "--databases", strconv.Itoa(Databases))
	})
	if err != nil {
		return nil, err
	}
	return &Server{Addr: p.Addr, proc: p}, nil
}

// skipOrFail skips a test that needs Redis when none can be had, except under CI or the test script
// (REQUIRE_REDIS=1), where a missing Redis is a failure rather than a silently skipped test.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" || strings.TrimSpace(os.Getenv("REQUIRE_REDIS")) == "1" {
		t.Fatalf("real Redis required: %v", err)
	}
	t.Skipf("no Redis for this test: %v", err)
}
