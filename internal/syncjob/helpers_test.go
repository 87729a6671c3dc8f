package syncjob_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const session = "demo_session" // connected in the simulator's seed

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startSim runs the simulator over real HTTP with its rate limits off.
func startSim(t testing.TB, o sim.Options) (*sim.Server, string, string) {
	t.Helper()
	o.Identifier, o.Password, o.APIKey = "sync-"+randHex(4)+"@example.invalid", "pw-"+randHex(8), "key_"+randHex(8)
	for _, r := range []*sim.Rate{&o.RateAuth, &o.RateRead, &o.RateSend, &o.RateGlobal} {
		if *r == (sim.Rate{}) {
			*r = sim.NoLimit()
		}
	}
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); s.Close() })
	return s, srv.URL, o.APIKey
}

// newUpstream is the gateway's upstream client over rdb's shared quota (generous: the tests are
// about the sync, not the quota; the background share is still what the sync gets).
func newUpstream(t testing.TB, baseURL, apiKey string, rdb redis.UniversalClient) *upstream.Client {
	t.Helper()
	q := quota.New(rdb, map[upstream.Category]quota.Rate{
		upstream.CategoryRead: {N: 1_000_000, Per: time.Minute},
	}, quota.WithKeyPrefix("{test-quota-"+randHex(4)+"}:"))
	c, err := upstream.New(baseURL, upstream.Credentials{APIKey: apiKey},
		upstream.WithLimiter(q), upstream.WithTimeout(10*time.Second),
		upstream.WithRetry(2, 20*time.Millisecond, 100*time.Millisecond),
		upstream.WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newEngine builds an engine with test timings; start runs its workers, stopped at cleanup.
func newEngine(t testing.TB, rdb redis.UniversalClient, up syncjob.Upstream, start bool, adjust func(*syncjob.Config)) *syncjob.Engine {
	t.Helper()
	cfg := syncjob.Config{
		Redis:         rdb,
		Upstream:      up,
		Workers:       2,
		PollInterval:  100 * time.Millisecond,
		PageRetries:   1,
		PageBackoff:   20 * time.Millisecond,
		SinkBackoff:   20 * time.Millisecond,
		SinkMaxWait:   200 * time.Millisecond,
		OwnerLease:    3 * time.Second,
		ClaimIdle:     3 * time.Second,
		StaleAfter:    2 * time.Second,
		ShutdownGrace: 3 * time.Second,
		Logger:        testLogger(t),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	e, err := syncjob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if start {
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.Shutdown)
	return e
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SYNC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitJob waits until the job ends and returns it; when it does not end in time, the failure
// shows the job as last read.
func waitJob(t testing.TB, e *syncjob.Engine, id string, within time.Duration) syncjob.Job {
	t.Helper()
	var j syncjob.Job
	wait.UntilShowing(t, within, "job "+id+" ends", func() bool {
		var err error
		if j, err = e.Job(context.Background(), id); err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		return syncjob.Final(j.State)
	}, func() string { raw, _ := json.Marshal(j); return string(raw) })
	return j
}

// sink is a CRM sink under test: it verifies every delivery's signature, can refuse deliveries,
// and counts the distinct items it received per resource.
type sink struct {
	t      testing.TB
	secret string
	srv    *httptest.Server

	mu         sync.Mutex
	refuse     int // answer 503 to this many more deliveries
	refusals   int
	accepted   int
	badSig     int
	items      map[string]map[string]int // resource -> item key -> times received
	onDelivery func(b crm.Batch)
}

func newSink(t testing.TB) *sink {
	s := &sink{t: t, secret: "sink-secret-" + randHex(8), items: map[string]map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts := r.Header.Get(crm.HeaderTimestamp)
	s.mu.Lock()
	if !crm.Verify(s.secret, ts, body, r.Header.Get(crm.HeaderSignature)) {
		s.badSig++
		s.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.refuse > 0 {
		s.refuse--
		s.refusals++
		s.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var b crm.Batch
	if err := json.Unmarshal(body, &b); err != nil {
		s.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.accepted++
	m := s.items[b.Resource]
	if m == nil {
		m = map[string]int{}
		s.items[b.Resource] = m
	}
	for _, raw := range b.Items {
		m[itemKey(b.Resource, raw)]++
	}
	on := s.onDelivery
	s.mu.Unlock()
	if on != nil {
		on(b)
	}
	w.WriteHeader(http.StatusOK)
}

// itemKey is an item's identity: id, plus the chat for messages.
func itemKey(resource string, raw json.RawMessage) string {
	var v struct {
		ID     string `json:"id"`
		ChatID string `json:"chatId"`
	}
	_ = json.Unmarshal(raw, &v)
	if resource == syncjob.ResourceMessages {
		return v.ChatID + " " + v.ID
	}
	return v.ID
}

func (s *sink) distinct(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items[resource])
}

func (s *sink) received(resource string) (total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.items[resource] {
		total += n
	}
	return total
}
