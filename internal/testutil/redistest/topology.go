package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/redisconn"
)

// The environment variables through which the test script hands its shared topologies to the
// tests, as REDIS_URLs of the forms package redisconn reads.
const (
	ClusterURLEnv  = "TEST_REDIS_CLUSTER_URL"
	SentinelURLEnv = "TEST_REDIS_SENTINEL_URL"
)

// MasterName is the name under which the sentinels watch their master.
const MasterName = "mymaster"

// Cluster is a Redis Cluster of redis-server processes on loopback ports, made by
// `redis-cli --cluster create`.
type Cluster struct {
	// Nodes are the masters, then their replicas (if any).
	Nodes []*proc
}

// LaunchCluster starts a cluster of masters masters with replicas replicas each, keeping its node
// files in dir, and returns once every node reports cluster_state:ok and knows every other node.
func LaunchCluster(dir string, masters, replicas int) (*Cluster, error) {
	c := &Cluster{}
	var addrs []string
	for range masters * (1 + replicas) {
		p, err := startFree(func(port string) []string {
			return serverArgs(port, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
				"--cluster-config-file", filepath.Join(dir, "nodes-"+port+".conf"), "--dir", dir)
		})
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, p)
		addrs = append(addrs, p.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := poll(ctx, func() (bool, string) { return c.ready(ctx) }); err != nil {
		c.Stop()
		return nil, fmt.Errorf("cluster not ready: %w", err)
	}
	return c, nil
}

// ready reports whether every node sees the whole cluster with every slot served, and every
// replica has its copy.
func (c *Cluster) ready(ctx context.Context) (bool, string) {
	want := "cluster_known_nodes:" + strconv.Itoa(len(c.Nodes))
	for _, n := range c.Nodes {
		info, err := infoOf(ctx, n.Addr, "CLUSTER", "INFO")
		if err != nil {
			return false, err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") || !strings.Contains(info, want) {
			return false, n.Addr + ": " + strings.Join(strings.Fields(info)[:4], " ")
		}
		repl, err := infoOf(ctx, n.Addr, "INFO", "replication")
		if err != nil {
			return false, err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return false, n.Addr + ": replica not in sync yet"
		}
	}
	return true, ""
}

// URL is the cluster's REDIS_URL, naming every master.
func (c *Cluster) URL() string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr)
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// Stop kills every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.kill()
	}
}

// Sentinel is a master, one replica and three sentinels watching them (quorum 2, a master is
// judged down after one second), on loopback ports.
type Sentinel struct {
	// Servers are the data-holding servers: the first started as master, the second as its
	// replica. After a failover the roles differ; CurrentMaster asks the sentinels.
	Servers   []*proc
	Sentinels []*proc
}

// LaunchSentinel starts the set, keeping the sentinels' files in dir, and returns once the replica
// is in sync and every sentinel knows the master, the replica and the two other sentinels (so a
// failover can be agreed at once).
func LaunchSentinel(dir string) (*Sentinel, error) {
	s := &Sentinel{}
	master, err := startFree(func(port string) []string {
		return serverArgs(port, "--databases", strconv.Itoa(Databases), "--dir", dir)
	})
	if err != nil {
		return nil, err
	}
	s.Servers = append(s.Servers, master)
	replica, err := startFree(func(port string) []string {
		return serverArgs(port, "--databases", strconv.Itoa(Databases), "--replicaof", "127.0.0.1", master.Port(), "--dir", dir)
	})
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Servers = append(s.Servers, replica)
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("bind 127.0.0.1\ndir %s\nloglevel warning\n"+
			"sentinel monitor %[2]s 127.0.0.1 %[3]s 2\n"+
			"sentinel down-after-milliseconds %[2]s 1000\n"+
			"sentinel failover-timeout %[2]s 5000\n", dir, MasterName, master.Port())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			s.Stop()
			return nil, err
		}
		p, err := startFree(func(port string) []string { return []string{conf, "--sentinel", "--port", port} })
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := poll(ctx, func() (bool, string) { return s.ready(ctx, master.Addr) }); err != nil {
		s.Stop()
		return nil, fmt.Errorf("sentinel set not ready: %w", err)
	}
	return s, nil
}

func (s *Sentinel) ready(ctx context.Context, master string) (bool, string) {
	repl, err := infoOf(ctx, s.Servers[1].Addr, "INFO", "replication")
	if err != nil {
		return false, err.Error()
	}
	if !strings.Contains(repl, "master_link_status:up") {
		return false, "replica not in sync yet"
	}
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: time.Second})
		m, err := c.Master(ctx, MasterName).Result()
		_ = c.Close()
		if err != nil {
			return false, sn.Addr + ": " + err.Error()
		}
		if m["ip"]+":"+m["port"] != master || m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
			return false, fmt.Sprintf("%s: master %s:%s flags %s, %s replicas, %s other sentinels",
				sn.Addr, m["ip"], m["port"], m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return true, ""
}

// URL is the set's REDIS_URL for logical database db, naming every sentinel.
func (s *Sentinel) URL(db int) string {
	var addrs []string
	for _, sn := range s.Sentinels {
		addrs = append(addrs, sn.Addr)
	}
	return fmt.Sprintf("redis-sentinel://%s/%d?master_name=%s", strings.Join(addrs, ","), db, MasterName)
}

// CurrentMaster is the master's address as the first sentinel that answers reports it.
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	var lastErr error
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: time.Second})
		addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		_ = c.Close()
		if err == nil && len(addr) == 2 {
			return addr[0] + ":" + addr[1], nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel names the master: %v", lastErr)
}

// KillMaster kills the current master's process (SIGKILL, as a crash would) and returns its
// address; the sentinels then promote the replica.
func (s *Sentinel) KillMaster(ctx context.Context) (string, error) {
	addr, err := s.CurrentMaster(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range s.Servers {
		if p.Addr == addr {
			p.kill()
			return addr, nil
		}
	}
	return "", fmt.Errorf("the sentinels name %s, which is none of the set's servers", addr)
}

// Stop kills every process of the set.
func (s *Sentinel) Stop() {
	for _, p := range append(s.Sentinels, s.Servers...) {
		p.kill()
	}
}

// StartCluster starts a private 3-master cluster for one test (which may, say, kill a node) and
// stops it when the test ends. Tests that only read and write use OnCluster instead.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	needTools(t)
	c, err := LaunchCluster(t.TempDir(), 3, 0)
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(c.Stop)
	return c
}

// StartSentinel starts a private sentinel set for one test (which may kill its master) and stops
// it when the test ends. Tests that only read and write use OnSentinel instead.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	needTools(t)
	s, err := LaunchSentinel(t.TempDir())
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Topology is one kind of Redis deployment prepared for one test: a client, and a REDIS_URL for
// code under test that opens its own, both on the test's own namespace. The client is Strict: a
// script that touches a key it did not declare in KEYS fails on it.
type Topology struct {
	Name   string // "single", "cluster" or "sentinel"
	Client redis.UniversalClient
	URL    string
	// Prefix is unique to the test. A cluster has only database 0, shared by every test of the
	// run, so on it tests are kept apart only by starting every key with Prefix (it holds no
	// braces, so keys keep their own hash tags); its keys are deleted when the test ends. On the
	// single server and the sentinel set the test also has an empty database of its own.
	Prefix string
}

// Another is a second client on the topology's namespace, as another replica of the gateway
// would have (strict as well); it is closed when the test ends.
func (tp Topology) Another(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := open(t, tp.URL)
	Strict(c)
	return c
}

// Topologies gives the test each kind of deployment the gateway supports: one server, a Redis
// Cluster and a Sentinel-managed master. They are the test script's shared ones
// (TEST_REDIS_URL, TEST_REDIS_CLUSTER_URL, TEST_REDIS_SENTINEL_URL), or else ones this test
// binary starts once for all its tests.
func Topologies(t testing.TB) []Topology {
	t.Helper()
	return []Topology{OnSingle(t), OnCluster(t), OnSentinel(t)}
}

// OnSingle is the single-server topology: an empty database of the shared test server (see New).
func OnSingle(t testing.TB) Topology {
	t.Helper()
	c := New(t)
	o := c.Options()
	Strict(c)
	return Topology{Name: "single", Client: c, URL: fmt.Sprintf("redis://%s/%d", o.Addr, o.DB), Prefix: newPrefix(t)}
}

// OnCluster is the shared cluster, with a key prefix of the test's own.
func OnCluster(t testing.TB) Topology {
	t.Helper()
	base := sharedURL(t, ClusterURLEnv, &clusterOnce)
	c := open(t, base)
	prefix := newPrefix(t)
	t.Cleanup(func() { deletePrefix(c.(*redis.ClusterClient), prefix) })
	Strict(c)
	return Topology{Name: "cluster", Client: c, URL: base, Prefix: prefix}
}

// OnSentinel is the shared sentinel set, on an empty logical database of the test's own.
func OnSentinel(t testing.TB) Topology {
	t.Helper()
	base := sharedURL(t, SentinelURLEnv, &sentinelOnce)
	admin := open(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := admin.Incr(ctx, counterKey).Result()
	if err != nil {
		t.Fatalf("sentinel test redis: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", SentinelURLEnv, err)
	}
	u.Path = "/" + strconv.Itoa(int(n%(Databases-1))+1)
	c := open(t, u.String())
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush sentinel test db: %v", err)
	}
	Strict(c)
	return Topology{Name: "sentinel", Client: c, URL: u.String(), Prefix: newPrefix(t)}
}

// open builds the gateway's own kind of client for a REDIS_URL, closed when the test ends.
func open(t testing.TB, redisURL string) redis.UniversalClient {
	t.Helper()
	target, err := redisconn.Parse(redisURL)
	if err != nil {
		t.Fatalf("test topology: %v", err)
	}
	c := target.NewClient()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deletePrefix removes a finished test's keys from every master of the cluster.
func deletePrefix(c *redis.ClusterClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			node.Unlink(ctx, iter.Val())
		}
		return iter.Err()
	})
}

func newPrefix(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("key prefix: %v", err)
	}
	return "rt" + hex.EncodeToString(b) + ":"
}

// sharedTopology is a topology this test binary started because the script gave none.
type sharedTopology struct {
	once sync.Once
	url  string
	err  error
}

var clusterOnce, sentinelOnce sharedTopology

// sharedURL is the script's topology from env, or one this binary starts once (it dies with the
// binary).
func sharedURL(t testing.TB, env string, sh *sharedTopology) string {
	t.Helper()
	if u := os.Getenv(env); u != "" {
		return u
	}
	needTools(t)
	sh.once.Do(func() {
		dir, err := os.MkdirTemp("", "redistest-")
		if err != nil {
			sh.err = err
			return
		}
		if env == ClusterURLEnv {
			var c *Cluster
			if c, sh.err = LaunchCluster(dir, 3, 1); sh.err == nil {
				sh.url = c.URL()
			}
		} else {
			var s *Sentinel
			if s, sh.err = LaunchSentinel(dir); sh.err == nil {
				sh.url = s.URL(0)
			}
		}
	})
	if sh.err != nil {
		skipOrFail(t, sh.err)
	}
	return sh.url
}

func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, errNoRedis)
		}
	}
}

// infoOf runs one command that answers text (INFO, CLUSTER INFO) on one server.
func infoOf(ctx context.Context, addr string, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	return c.Do(ctx, args...).Text()
}

// poll calls check until it reports done or ctx ends; the error then carries check's last reason.
func poll(ctx context.Context, check func() (bool, string)) error {
	for {
		ok, why := check()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New(why)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
