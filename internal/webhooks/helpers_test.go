package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const (
	testSecret  = "webhook-secret-for-tests"
	testSigning = "crm-signing-secret-for-tests"
)

func signBody(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// signed is a delivery of body signed with the test secret, sent now.
func signed(body string) Delivery {
	return Delivery{Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10),
		Signature: signBody(testSecret, []byte(body)), Body: strings.NewReader(body)}
}

func messageBody(sid, waID string) string {
	return `{"event": "message.received", "data": {"sessionId": "` + sid + `", "message": {"whatsappMessageId": "` +
		waID + `", "content": "hola ` + waID + `", "chatId": "34600111222@s.whatsapp.net", "from": "34600111222@s.whatsapp.net", "timestamp": 1699332304}}}`
}

func sessionBody(event, sid string) string {
	return `{"event": "` + event + `", "data": {"sessionId": "` + sid + `", "phoneNumber": "34657032985"}}`
}

// testService is a service over a fresh Redis database with short timings, and what it calls.
type testService struct {
	*Service
	rdb      redis.UniversalClient
	reg      *prometheus.Registry
	cache    *fakeCache
	sync     *fakeSync
	statuses *fakeStatuses
}

// newTestService builds (and, when start, starts) a service; mod adjusts its configuration.
func newTestService(t *testing.T, rdb redis.UniversalClient, start bool, mod func(*Config)) *testService {
	t.Helper()
	if rdb == nil {
		rdb = redistest.New(t)
	}
	ts := &testService{rdb: rdb, reg: prometheus.NewRegistry(), cache: &fakeCache{}, sync: &fakeSync{}, statuses: &fakeStatuses{}}
	cfg := Config{Redis: rdb, Secret: testSecret, Cache: ts.cache, Sync: ts.sync, SyncOnConnect: true, Statuses: ts.statuses,
		Workers: 4, TaskCheck: 20 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		SweepInterval: 100 * time.Millisecond, DrainLease: 3 * time.Second, SpoolHold: 300 * time.Millisecond, Registerer: ts.reg,
		Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Service = s
	if start {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.Shutdown)
	return ts
}

// counter reads a counter of the service's registry ("" labels: the sum over all).
func (ts *testService) counter(name string, labels map[string]string) float64 {
	mfs, _ := ts.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// fakeCache records invalidations: of a session and the session list (Invalidate), or of the
// session's contents only (InvalidateContent).
type fakeCache struct {
	mu       sync.Mutex
	withList map[string]int
	content  map[string]int
}

func (c *fakeCache) Invalidate(_ context.Context, sid string) error {
	c.record(&c.withList, sid)
	return nil
}

func (c *fakeCache) InvalidateContent(_ context.Context, sid string) error {
	c.record(&c.content, sid)
	return nil
}

func (c *fakeCache) record(m *map[string]int, sid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[sid]++
}

// count is how many times the session's cached reads were dropped, either way.
func (c *fakeCache) count(sid string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.withList[sid] + c.content[sid]
}

// listDrops is how many of those dropped the session list too.
func (c *fakeCache) listDrops(sid string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.withList[sid]
}

// fakeSync records queued syncs.
type fakeSync struct {
	mu   sync.Mutex
	reqs []string
}

func (s *fakeSync) EnqueueAuto(_ context.Context, sid string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, sid+"/auto")
	return "job-" + sid, true, nil
}

func (s *fakeSync) queued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// crmSink is a CRM events receiver: it verifies each delivery's signature, records the events it
// accepts, and fails the first failFirst requests (with failStatus) or every request while down.
type crmSink struct {
	srv        *httptest.Server
	mu         sync.Mutex
	events     []Event
	bad        int
	requests   atomic.Int64
	failFirst  atomic.Int64
	failStatus int
	down       atomic.Bool
}

func newCRMSink(t *testing.T) *crmSink {
	t.Helper()
	k := &crmSink{failStatus: http.StatusServiceUnavailable}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := k.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		if k.down.Load() || n <= k.failFirst.Load() {
			w.WriteHeader(k.failStatus)
			return
		}
		ts := r.Header.Get(crm.HeaderTimestamp)
		ok := crm.Verify(testSigning, ts, body, r.Header.Get(crm.HeaderSignature))
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil || !ok || r.Header.Get(crm.HeaderDelivery) != ev.ID ||
			r.Header.Get(HeaderEventType) != ev.Type {
			k.mu.Lock()
			k.bad++
			k.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		k.mu.Lock()
		k.events = append(k.events, ev)
		k.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *crmSink) received() []Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Event(nil), k.events...)
}

func (k *crmSink) badDeliveries() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bad
}

// forwardTo configures a service to forward to the sink.
func (k *crmSink) forwardTo(c *Config) {
	c.EventsURL = k.srv.URL + "/events?token=query-secret"
	c.SigningSecret = testSigning
}

// fakeSessions is a session list whose statuses tests change.
type fakeSessions struct {
	mu     sync.Mutex
	status map[string]string
	calls  atomic.Int64
}

func (f *fakeSessions) set(sid, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = map[string]string{}
	}
	f.status[sid] = status
}

func (f *fakeSessions) AllSessions(context.Context, int) iter.Seq2[upstream.Session, error] {
	f.calls.Add(1)
	f.mu.Lock()
	list := make([]upstream.Session, 0, len(f.status))
	for sid, st := range f.status {
		list = append(list, upstream.Session{SessionID: sid, Status: st, PhoneNumberID: "34657032985:7@s.whatsapp.net"})
	}
	f.mu.Unlock()
	return func(yield func(upstream.Session, error) bool) {
		for _, s := range list {
			if !yield(s, nil) {
				return
			}
		}
	}
}

// fakeStatuses is the upstream's status of each session, as tests set it; an unset session is not
// found. It counts the reads.
type fakeStatuses struct {
	mu     sync.Mutex
	status map[string]string
	calls  atomic.Int64
}

func (f *fakeStatuses) set(sid, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = map[string]string{}
	}
	f.status[sid] = status
}

func (f *fakeStatuses) SessionStatus(_ context.Context, sid string) (upstream.SessionStatus, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[sid]
	if !ok {
		return upstream.SessionStatus{}, upstream.ErrSessionNotFound
	}
	return upstream.SessionStatus{SessionID: sid, Status: st, PhoneNumber: "34657032985", IsConnected: st == "connected"}, nil
}
