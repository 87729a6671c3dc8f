package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// Sizes of the simulated data: each session a sync job reads has simContacts contacts and simChats
// chats of simMessages messages each (6 + 1 + 60 pages of 100).
const (
	simContacts = 600
	simChats    = 60
	simMessages = 40
	// webhookSessions receive the soak's webhooks; they are neither read nor synced.
	webhookSessions = 10
)

// Fixed sessions of the simulator (its seeded ones): reads go to readSession, sends to sendSession.
const (
	readSession = "demo_session"
	sendSession = "sales_team"
	// sendTo is the chat every send goes to: a number the generated data does not hold.
	sendTo = "34600000001"
)

// fleet is everything the soak started: the simulator, the Sentinel set, the gateway replicas and
// the CRM receiver.
type fleet struct {
	dir      string
	simURL   string
	simAdmin string // X-Sim-Admin-Key
	simKey   string // the upstream X-API-Key (to read the simulator's data at the end)
	apiKey   string // the soak's gateway key
	whSecret string // INBOXHUB_WEBHOOK_SECRET
	crm      *crm
	sim      *childproc.Process
	redis    *sentinelSet

	syncSessions []string
	whSessions   []string

	mu       sync.Mutex
	replicas []*replica
}

// replica is one gateway process, restarted on the same port with the same environment.
type replica struct {
	i    int
	addr string
	env  []string
	bin  string
	log  string
	mu   sync.Mutex
	proc *childproc.Process
	up   bool // taking traffic (the "load balancer" sends it requests)
}

func startFleet(ctx context.Context, o options, logf func(string, ...any)) (*fleet, error) {
	f := &fleet{dir: o.dir, simAdmin: childproc.Fake("soak-fake-sim-admin-"),
		simKey: childproc.Fake("soak_fake_upstream_key_"), apiKey: childproc.Fake("soak-fake-gateway-key-"),
		whSecret: childproc.Fake("soak-fake-webhook-secret-")}
	ok := false
	defer func() {
		if !ok {
			f.stop(logf)
		}
	}()
	var err error
	if f.crm, err = startCRM(childproc.Fake("soak-fake-crm-signing-secret-")); err != nil {
		return nil, err
	}
	if err := f.startSim(ctx, o, logf); err != nil {
		return nil, err
	}
	if f.redis, err = launchSentinelSet(filepath.Join(o.dir, "redis")); err != nil {
		return nil, fmt.Errorf("sentinel set: %w", err)
	}
	f.redis.watch(ctx)
	logf("sentinel set up: %s", f.redis.url)
	if err := f.startReplicas(ctx, o, logf); err != nil {
		return nil, err
	}
	ok = true
	return f, nil
}

// startSim starts the simulator with enough sessions for every sync job to read a fresh one, and
// connects all of them.
func (f *fleet) startSim(ctx context.Context, o options, logf func(string, ...any)) error {
	addr, err := childproc.FreeAddr()
	if err != nil {
		return err
	}
	// Two jobs at a time, each well over 10 s: 16 fresh sessions a minute is plenty (a slot that
	// runs out stops, and says so).
	nSync := 8 + 16*int(o.duration.Minutes()+1)
	total := 6 + nSync + webhookSessions
	env := append(os.Environ(),
		"SIM_ADDR="+addr,
		"SIM_IDENTIFIER=soak-fake-operator@example.invalid",
		"SIM_PASSWORD="+childproc.Fake("soak-fake-password-"),
		"SIM_API_KEY="+f.simKey,
		"SIM_ADMIN_KEY="+f.simAdmin,
		"SIM_SESSIONS="+strconv.Itoa(total),
		"SIM_CONTACTS="+strconv.Itoa(simContacts),
		"SIM_CHATS="+strconv.Itoa(simChats),
		"SIM_MESSAGES_PER_CHAT="+strconv.Itoa(simMessages),
		// The gateway's own quotas (below) stay within these, as in production.
		"SIM_RATE_AUTH=5/15m", "SIM_RATE_READ=600/1m", "SIM_RATE_SEND=120/1m", "SIM_RATE_GLOBAL=0",
		// Short tokens, so that refreshes happen under chaos too.
		"SIM_TOKEN_LIFETIME=6m",
	)
	f.simURL = "http://" + addr
	// The sim's password must be the gateway's: keep it in the environment given to both.
	f.sim, err = childproc.Start(o.simBin, nil, env, filepath.Join(o.dir, "sim.log"))
	if err != nil {
		return err
	}
	if err := childproc.WaitHTTP(ctx, f.simURL+"/health", 20*time.Second); err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	for i := 7; i <= total; i++ {
		sid := fmt.Sprintf("session_%02d", i)
		if err := f.simAdminPost(ctx, "/_sim/sessions/"+sid+"/status", `{"status":"connected"}`); err != nil {
			return err
		}
		if i <= 6+nSync {
			f.syncSessions = append(f.syncSessions, sid)
		} else {
			f.whSessions = append(f.whSessions, sid)
		}
	}
	if err := f.simAdminPost(ctx, "/_sim/sessions/"+sendSession+"/status", `{"status":"connected"}`); err != nil {
		return err
	}
	logf("simulator up at %s: %d sessions (%d for sync jobs, %d for webhooks)", f.simURL, total, nSync, webhookSessions)
	return nil
}

func (f *fleet) simEnv(name string) string {
	for _, kv := range f.sim.Env() {
		if len(kv) > len(name) && kv[:len(name)+1] == name+"=" {
			return kv[len(name)+1:]
		}
	}
	return ""
}

func (f *fleet) simAdminPost(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.simURL+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Sim-Admin-Key", f.simAdmin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulator admin %s: %d", path, resp.StatusCode)
	}
	return nil
}

// simGet reads one simulator route into out: the admin routes with the admin key, the upstream
// routes with the upstream API key.
func (f *fleet) simGet(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.simURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Sim-Admin-Key", f.simAdmin)
	req.Header.Set("X-API-Key", f.simKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulator %s: %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// startReplicas writes the callers' key file and starts the replicas, all with one environment
// but for their address and spool.
func (f *fleet) startReplicas(ctx context.Context, o options, logf func(string, ...any)) error {
	keys := []map[string]any{{"name": "soak", "key": f.apiKey,
		"scopes": []string{"sessions:read", "sessions:write", "messages:read", "messages:send", "sync", "admin"}}}
	b, _ := json.Marshal(keys)
	keyFile := filepath.Join(f.dir, "api_keys.json")
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		return err
	}
	tokenKey := make([]byte, 32)
	_, _ = crand.Read(tokenKey)
	common := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + f.dir,
		"GATEWAY_LOG_LEVEL=info", // the access log: every request with its duration
		"GATEWAY_ADMIN_ADDR=off",
		"GATEWAY_DRAIN_DELAY=0s",
		"INBOXHUB_BASE_URL=" + f.simURL,
		"INBOXHUB_IDENTIFIER=" + f.simEnv("SIM_IDENTIFIER"),
		"INBOXHUB_PASSWORD=" + f.simEnv("SIM_PASSWORD"),
		"INBOXHUB_API_KEY=" + f.simKey,
		"UPSTREAM_RATE_AUTH=5/15m", "UPSTREAM_RATE_READ=600/1m", "UPSTREAM_RATE_SEND=120/1m",
		"UPSTREAM_QUOTA_FALLBACK=0.33",
		"REDIS_URL=" + f.redis.url,
		"GATEWAY_API_KEYS_FILE=" + keyFile,
		"GATEWAY_CALLER_RATE=100000/1m",
		"TOKEN_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(tokenKey),
		"GATEWAY_SYNC_ON_CONNECT=0",
		"INBOXHUB_WEBHOOK_SECRET=" + f.whSecret,
		"CRM_SINK_URL=" + f.crm.url + "/sink",
		"CRM_EVENTS_URL=" + f.crm.url + "/events",
		"CRM_SIGNING_SECRET=" + f.crm.secret,
	}
	for i := range o.replicas {
		addr, err := childproc.FreeAddr()
		if err != nil {
			return err
		}
		env := append(append([]string(nil), common...), "GATEWAY_ADDR="+addr,
			"GATEWAY_WEBHOOK_SPOOL_DIR="+filepath.Join(f.dir, fmt.Sprintf("spool-%d", i)))
		r := &replica{i: i, addr: addr, env: env, bin: o.gatewayBin, log: filepath.Join(f.dir, fmt.Sprintf("gateway-%d.log", i))}
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("replica %d: %w", i, err)
		}
		f.replicas = append(f.replicas, r)
	}
	logf("%d gateway replicas up: %v", len(f.replicas), f.addrs())
	return nil
}

func (f *fleet) addrs() []string {
	var out []string
	for _, r := range f.replicas {
		out = append(out, r.addr)
	}
	return out
}

// start starts the replica's process and waits until it answers /readyz, then marks it up.
func (r *replica) start(ctx context.Context) error {
	p, err := childproc.Start(r.bin, nil, r.env, r.log)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	if err := childproc.WaitHTTP(ctx, "http://"+r.addr+"/readyz", 60*time.Second); err != nil {
		return err
	}
	r.mu.Lock()
	r.up = true
	r.mu.Unlock()
	return nil
}

// kill takes the replica out of rotation and kills it (SIGKILL, as a crash would).
func (r *replica) kill() {
	r.mu.Lock()
	r.up = false
	p := r.proc
	r.mu.Unlock()
	p.Signal(syscall.SIGKILL, 10*time.Second)
}

func (r *replica) isUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// stop ends every process: the replicas gracefully (SIGTERM), the rest at once.
func (f *fleet) stop(logf func(string, ...any)) {
	var wg sync.WaitGroup
	for _, r := range f.replicas {
		r.mu.Lock()
		p := r.proc
		r.mu.Unlock()
		if p != nil {
			wg.Go(func() { p.Stop(30 * time.Second) })
		}
	}
	wg.Wait()
	if f.sim != nil {
		f.sim.Stop(10 * time.Second)
	}
	if f.redis != nil {
		f.redis.stop()
	}
	if f.crm != nil {
		f.crm.close()
	}
}

// sentinelSet is redistest's Sentinel set plus the replicas the soak starts itself after each
// failover (a killed master is not restarted: a fresh server joins as the new master's replica).
type sentinelSet struct {
	dir   string
	set   *redistest.Sentinel
	url   string
	mu    sync.Mutex
	extra map[string]*childproc.Process // soak-started servers by address
}

// quietRedis drops go-redis' own log lines in this process (dial failures while a master is
// down are the point of the soak, not news).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func launchSentinelSet(dir string) (*sentinelSet, error) {
	redis.SetLogger(quietRedis{})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s, err := redistest.LaunchSentinel(dir)
	if err != nil {
		return nil, err
	}
	return &sentinelSet{dir: dir, set: s, url: s.URL(0), extra: map[string]*childproc.Process{}}, nil
}

// failover kills the current master (SIGKILL), waits until the sentinels name another one, and
// starts a new replica of it. It returns the old and new master and when the new one was named.
func (s *sentinelSet) failover(ctx context.Context) (oldMaster, newMaster string, promoted time.Time, err error) {
	oldMaster, err = s.set.CurrentMaster(ctx)
	if err != nil {
		return "", "", time.Time{}, err
	}
	s.mu.Lock()
	p, mine := s.extra[oldMaster]
	delete(s.extra, oldMaster)
	s.mu.Unlock()
	if mine {
		p.Signal(syscall.SIGKILL, 10*time.Second)
	} else if _, err := s.set.KillMaster(ctx); err != nil {
		return oldMaster, "", time.Time{}, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := s.agreedMaster(ctx)
		if err == nil && m != oldMaster && s.isMaster(ctx, m) {
			newMaster = m
			promoted = time.Now()
			break
		}
		if time.Now().After(deadline) {
			return oldMaster, "", time.Time{}, errors.New("no new master within 60 s")
		}
		select {
		case <-ctx.Done():
			return oldMaster, "", time.Time{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return oldMaster, newMaster, promoted, s.addReplica(newMaster)
}

// agreedMaster is the master every sentinel names, or an error while they disagree.
func (s *sentinelSet) agreedMaster(ctx context.Context) (string, error) {
	var agreed string
	for _, sn := range s.set.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: time.Second})
		addr, err := c.GetMasterAddrByName(ctx, redistest.MasterName).Result()
		_ = c.Close()
		if err != nil || len(addr) != 2 {
			return "", fmt.Errorf("sentinel %s: %v", sn.Addr, err)
		}
		m := net.JoinHostPort(addr[0], addr[1])
		if agreed != "" && m != agreed {
			return "", errors.New("the sentinels disagree")
		}
		agreed = m
	}
	return agreed, nil
}

func (s *sentinelSet) isMaster(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && bytes.Contains([]byte(info), []byte("role:master"))
}

// addReplica starts a redis-server replicating master; the sentinels find it through the master.
// It starts with replica-priority 0 (never promoted) and becomes a candidate only once its copy is
// complete, as an operator would add one: a replica promoted in the middle of its first sync would
// bring an empty data set to the fleet.
func (s *sentinelSet) addReplica(master string) error {
	addr, err := childproc.FreeAddr()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	mhost, mport, _ := net.SplitHostPort(master)
	p, err := childproc.Start("redis-server", []string{"--port", port, "--bind", host, "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0", "--dbfilename", "dump-" + port + ".rdb", "--dir", s.dir,
		"--databases", strconv.Itoa(redistest.Databases), "--loglevel", "warning", "--replicaof", mhost, mport,
		"--replica-priority", "0"},
		os.Environ(), filepath.Join(s.dir, "server-"+port+".log"))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.extra[addr] = p
	s.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && !strings.Contains(info, "master_sync_in_progress:1") {
			return c.ConfigSet(context.Background(), "replica-priority", "100").Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the new replica did not finish its first sync within 60 s")
}

// watch logs every event the first sentinel publishes (+sdown, +odown, +switch-master, ...) to
// redis/sentinel-events.log, to explain a failover afterwards.
func (s *sentinelSet) watch(ctx context.Context) {
	lf, err := os.OpenFile(filepath.Join(s.dir, "sentinel-events.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	c := redis.NewClient(&redis.Options{Addr: s.set.Sentinels[0].Addr})
	ps := c.PSubscribe(ctx, "*")
	go func() {
		defer lf.Close()
		defer c.Close()
		defer ps.Close()
		for m := range ps.Channel() {
			fmt.Fprintf(lf, "%s %s %s\n", time.Now().UTC().Format("15:04:05.000"), m.Channel, m.Payload)
		}
	}()
}

func (s *sentinelSet) stop() {
	s.set.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.extra {
		p.Signal(syscall.SIGKILL, 5*time.Second)
	}
}
