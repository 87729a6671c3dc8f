package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// harness holds what every measurement shares: Redis (TEST_REDIS_URL, or a private
// redis-server), the CRM stand-in and the fake credentials.
type harness struct {
	o        options
	redisURL string
	redis    *childproc.Process
	crm      *crmStandIn
	simKey   string
	simID    string
	simPW    string
	whSecret string
}

func newHarness(o options) (*harness, error) {
	h := &harness{o: o, simKey: childproc.Fake("flat-fake-upstream-key-"), simID: "flat-fake-operator@example.invalid",
		simPW: childproc.Fake("flat-fake-password-"), whSecret: childproc.Fake("flat-fake-webhook-secret-")}
	h.redisURL = os.Getenv("TEST_REDIS_URL")
	if h.redisURL == "" {
		addr, err := childproc.FreeAddr()
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(addr)
		h.redis, err = childproc.Start("redis-server", []string{"--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no"}, os.Environ(), filepath.Join(o.dir, "redis.log"))
		if err != nil {
			return nil, fmt.Errorf("redis-server (apt-get install redis-server, or set TEST_REDIS_URL): %w", err)
		}
		h.redisURL = "redis://" + addr + "/0"
	}
	var err error
	if h.crm, err = startCRM(childproc.Fake("flat-fake-crm-secret-")); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *harness) close() {
	if h.crm != nil {
		h.crm.close()
	}
	if h.redis != nil {
		h.redis.Stop(5 * time.Second)
	}
}

func (h *harness) logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", stamp(), fmt.Sprintf(format, args...))
}

// flushRedis empties the database, so that each case starts from the same state.
func (h *harness) flushRedis(ctx context.Context) error {
	opt, err := redis.ParseURL(h.redisURL)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.FlushDB(ctx).Err()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simData is the simulator's data per connected session.
type simData struct{ contacts, chats, perChat int }

// startSim starts the simulator in its own process with one connected session (demo_session)
// holding d, and no rate limits.
func (h *harness) startSim(ctx context.Context, name string, d simData) (*childproc.Process, string, error) {
	addr, err := childproc.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	env := append(os.Environ(), "SIM_ADDR="+addr, "SIM_IDENTIFIER="+h.simID, "SIM_PASSWORD="+h.simPW,
		"SIM_API_KEY="+h.simKey, "SIM_SESSIONS=1",
		"SIM_CONTACTS="+strconv.Itoa(d.contacts), "SIM_CHATS="+strconv.Itoa(d.chats),
		"SIM_MESSAGES_PER_CHAT="+strconv.Itoa(d.perChat),
		"SIM_RATE_AUTH=0", "SIM_RATE_READ=0", "SIM_RATE_SEND=0", "SIM_RATE_GLOBAL=0")
	return h.startReady(ctx, "simulator", h.o.simBin, nil, env, name+"-sim.log", addr, "/health", 5*time.Minute)
}

// startReady starts bin (what) with args and env, logging to the file logName in the working
// directory, and waits until http://addr+ready answers; it returns the process and its URL.
func (h *harness) startReady(ctx context.Context, what, bin string, args, env []string, logName, addr, ready string,
	limit time.Duration) (*childproc.Process, string, error) {
	p, err := childproc.Start(bin, args, env, filepath.Join(h.o.dir, logName))
	if err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	if err := childproc.WaitHTTP(ctx, url+ready, limit); err != nil {
		p.Stop(5 * time.Second)
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	return p, url, nil
}

// startGateway starts the gateway binary against simURL and the harness' Redis and CRM, with the
// extra environment, and waits until it is ready.
func (h *harness) startGateway(ctx context.Context, name, simURL, keyFile string, extra ...string) (*childproc.Process, string, error) {
	addr, err := childproc.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	tokenKey := make([]byte, 32)
	_, _ = crand.Read(tokenKey)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + h.o.dir,
		"GATEWAY_ADDR=" + addr,
		"GATEWAY_LOG_LEVEL=warn",
		"GATEWAY_ADMIN_ADDR=off",
		"GATEWAY_DRAIN_DELAY=0s",
		"GATEWAY_WEBHOOK_SPOOL_DIR=" + filepath.Join(h.o.dir, name+"-spool"),
		"INBOXHUB_BASE_URL=" + simURL,
		"INBOXHUB_IDENTIFIER=" + h.simID,
		"INBOXHUB_PASSWORD=" + h.simPW,
		"INBOXHUB_API_KEY=" + h.simKey,
		"UPSTREAM_RATE_AUTH=0", "UPSTREAM_RATE_READ=0", "UPSTREAM_RATE_SEND=0",
		"REDIS_URL=" + h.redisURL,
		"GATEWAY_API_KEYS_FILE=" + keyFile,
		"TOKEN_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(tokenKey),
		"GATEWAY_SYNC_ON_CONNECT=0",
		"INBOXHUB_WEBHOOK_SECRET=" + h.whSecret,
		"CRM_SINK_URL=" + h.crm.url + "/sink",
		"CRM_EVENTS_URL=" + h.crm.url + "/events",
		"CRM_SIGNING_SECRET=" + h.crm.secret,
	}
	return h.startReady(ctx, "gateway", h.o.gatewayBin, nil, append(env, extra...), name+"-gateway.log", addr, "/readyz", time.Minute)
}

// readFleet is a simulator and a gateway on it, started for the read measurements.
type readFleet struct {
	gw            *childproc.Process
	simURL, gwURL string
	keys          []apiKey
	stop          func()
}

// startReadFleet writes a key file of callers with scopes, empties Redis, and starts the
// simulator (small data) and a gateway on it without sync or webhook workers, with the per-caller
// limit at callerRate; stop stops both.
func (h *harness) startReadFleet(ctx context.Context, name string, callers int, scope, callerRate string) (readFleet, error) {
	keyFile, keys, err := h.writeKeys(name, callers, scope)
	if err != nil {
		return readFleet{}, err
	}
	if err := h.flushRedis(ctx); err != nil {
		return readFleet{}, err
	}
	simP, simURL, err := h.startSim(ctx, name, simData{contacts: 10, chats: 5, perChat: 5})
	if err != nil {
		return readFleet{}, err
	}
	gw, gwURL, err := h.startGateway(ctx, name, simURL, keyFile, "GATEWAY_SYNC_WORKERS=0", "GATEWAY_WEBHOOK_WORKERS=0",
		"GATEWAY_CALLER_RATE="+callerRate)
	if err != nil {
		simP.Stop(10 * time.Second)
		return readFleet{}, err
	}
	stop := func() { gw.Stop(30 * time.Second); simP.Stop(10 * time.Second) }
	return readFleet{gw: gw, simURL: simURL, gwURL: gwURL, keys: keys, stop: stop}, nil
}

// apiKey is one caller of the gateway's key file.
type apiKey struct{ name, key string }

// writeKeys writes a key file of n callers with scopes, in the production form (SHA-256 of the key).
func (h *harness) writeKeys(name string, n int, scopes ...string) (string, []apiKey, error) {
	keys := make([]apiKey, n)
	entries := make([]map[string]any, n)
	for i := range keys {
		keys[i] = apiKey{name: fmt.Sprintf("caller-%05d", i), key: childproc.Fake("flat-fake-key-")}
		entries[i] = map[string]any{"name": keys[i].name, "sha256": sha256Hex(keys[i].key), "scopes": scopes}
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(h.o.dir, name+"-keys.json")
	return path, keys, os.WriteFile(path, b, 0o600)
}

// call sends one request with an API key and decodes a JSON answer into out (when not nil).
func call(ctx context.Context, c *http.Client, method, url, key string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// crmStandIn takes the gateway's signed sync batches (/sink) and events (/events), checks their
// signatures and counts them; it keeps no items.
type crmStandIn struct {
	url    string
	secret string
	srv    *http.Server

	badSig  atomic.Int64
	batches atomic.Int64
	events  atomic.Int64
	mu      sync.Mutex
	items   map[string]int64 // resource -> items received
}

func startCRM(secret string) (*crmStandIn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &crmStandIn{url: "http://" + ln.Addr().String(), secret: secret, items: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sink", c.verified(c.sink))
	mux.HandleFunc("POST /events", c.verified(func([]byte) { c.events.Add(1) }))
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *crmStandIn) close() { _ = c.srv.Close() }

func (c *crmStandIn) verified(h func(body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !crm.Verify(c.secret, r.Header.Get(crm.HeaderTimestamp), body, r.Header.Get(crm.HeaderSignature)) {
			c.badSig.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h(body)
		w.WriteHeader(http.StatusOK)
	}
}

func (c *crmStandIn) sink(body []byte) {
	var b struct {
		Resource string            `json:"resource"`
		Items    []json.RawMessage `json:"items"`
	}
	if json.Unmarshal(body, &b) != nil {
		return
	}
	c.batches.Add(1)
	c.mu.Lock()
	c.items[b.Resource] += int64(len(b.Items))
	c.mu.Unlock()
}

// reset zeroes the counts.
func (c *crmStandIn) reset() {
	c.badSig.Store(0)
	c.batches.Store(0)
	c.events.Store(0)
	c.mu.Lock()
	c.items = map[string]int64{}
	c.mu.Unlock()
}

func (c *crmStandIn) itemCounts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.items))
	for k, v := range c.items {
		out[k] = v
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
