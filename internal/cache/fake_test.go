package cache

import (
	"context"
	"iter"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// The upstream client is what CachedUpstream wraps.
var _ Upstream = (*upstream.Client)(nil)

// fakeUpstream is an Upstream that counts its calls, answers values carrying a version number
// (in PhoneNumber, Name or Body) and can be made slow or failing.
type fakeUpstream struct {
	calls atomic.Int64

	mu        sync.Mutex
	delay     time.Duration
	err       error
	version   int
	qrExpires time.Time
	byMethod  map[string]int
}

func newFake() *fakeUpstream { return &fakeUpstream{version: 1, byMethod: map[string]int{}} }

func (f *fakeUpstream) set(fn func(f *fakeUpstream)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeUpstream) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byMethod[method]
}

// begin counts a call and applies the delay and the error.
func (f *fakeUpstream) begin(ctx context.Context, method string) (string, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.byMethod[method]++
	d, err, v := f.delay, f.err, f.version
	f.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return strconv.Itoa(v), err
}

func (f *fakeUpstream) AllSessions(ctx context.Context, _ int) iter.Seq2[upstream.Session, error] {
	return func(yield func(upstream.Session, error) bool) {
		v, err := f.begin(ctx, "AllSessions")
		if err != nil {
			yield(upstream.Session{}, err)
			return
		}
		for _, id := range []string{"s_one", "s_two", "s_three"} {
			if !yield(upstream.Session{ID: 90, SessionID: id, PhoneNumber: v, Status: "connected"}, nil) {
				return
			}
		}
	}
}

func (f *fakeUpstream) ListSessions(ctx context.Context, p upstream.ListSessionsParams) (upstream.Page[upstream.Session], error) {
	v, err := f.begin(ctx, "ListSessions")
	if err != nil {
		return upstream.Page[upstream.Session]{}, err
	}
	return upstream.Page[upstream.Session]{Items: []upstream.Session{{SessionID: "s_one", PhoneNumber: v}}, Page: p.Page, Limit: p.Limit, Total: 1}, nil
}

func (f *fakeUpstream) GetSession(ctx context.Context, id string) (upstream.Session, error) {
	v, err := f.begin(ctx, "GetSession")
	if err != nil {
		return upstream.Session{}, err
	}
	return upstream.Session{ID: 91, SessionID: id, PhoneNumber: v, LastActivity: time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC)}, nil
}

func (f *fakeUpstream) SessionStatus(ctx context.Context, id string) (upstream.SessionStatus, error) {
	v, err := f.begin(ctx, "SessionStatus")
	if err != nil {
		return upstream.SessionStatus{}, err
	}
	return upstream.SessionStatus{ID: 91, SessionID: id, Status: "connected", PhoneNumber: v, IsConnected: true}, nil
}

func (f *fakeUpstream) QR(ctx context.Context, id string) (upstream.QR, error) {
	v, err := f.begin(ctx, "QR")
	if err != nil {
		return upstream.QR{}, err
	}
	f.mu.Lock()
	exp := f.qrExpires
	f.mu.Unlock()
	return upstream.QR{SessionID: id, Code: "data:image/png;base64,v" + v, ExpiresAt: exp, Status: "qr_code"}, nil
}

func (f *fakeUpstream) Contacts(ctx context.Context, _ string, p upstream.ListParams) (upstream.Page[upstream.Contact], error) {
	v, err := f.begin(ctx, "Contacts")
	if err != nil {
		return upstream.Page[upstream.Contact]{}, err
	}
	return upstream.Page[upstream.Contact]{Items: []upstream.Contact{{ID: "346000@s.whatsapp.net", Name: p.Search + v}}, Page: p.Page, Limit: p.Limit}, nil
}

func (f *fakeUpstream) Chats(ctx context.Context, _ string, p upstream.ListParams) (upstream.Page[upstream.Chat], error) {
	v, err := f.begin(ctx, "Chats")
	if err != nil {
		return upstream.Page[upstream.Chat]{}, err
	}
	return upstream.Page[upstream.Chat]{Items: []upstream.Chat{{ChatID: "346000@s.whatsapp.net", Name: v}}, Page: p.Page, Limit: p.Limit}, nil
}

func (f *fakeUpstream) ChatMessages(ctx context.Context, _, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error) {
	v, err := f.begin(ctx, "ChatMessages")
	if err != nil {
		return upstream.Page[upstream.Message]{}, err
	}
	return upstream.Page[upstream.Message]{Items: []upstream.Message{{ChatID: chatID, Body: v}}, Page: p.Page, Limit: p.Limit}, nil
}

func (f *fakeUpstream) Connect(ctx context.Context, id string) (upstream.SessionStatus, error) {
	_, err := f.begin(ctx, "Connect")
	return upstream.SessionStatus{SessionID: id, Status: "connecting"}, err
}

func (f *fakeUpstream) Disconnect(ctx context.Context, id string) (upstream.SessionStatus, error) {
	_, err := f.begin(ctx, "Disconnect")
	return upstream.SessionStatus{SessionID: id, Status: "disconnected"}, err
}

func (f *fakeUpstream) SendText(ctx context.Context, _, to, text string) (upstream.Message, error) {
	_, err := f.begin(ctx, "SendText")
	return upstream.Message{To: to, Body: text}, err
}

// fakeClock is a settable time source shared by the replicas of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newRT starts a ReadThrough on rdb, closed when the test ends, and waits for its subscription
// (so that its in-process layer is in use and it hears other replicas).
func newRT(t testing.TB, rdb redis.UniversalClient, opts ...Option) *ReadThrough {
	t.Helper()
	rt, err := NewReadThrough(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	wait.Until(t, 5*time.Second, "the cache subscribed to its notices", rt.subscribed.Load)
	return rt
}

// waitStored waits until no fill lock is held in rdb's database: every value loaded so far is
// stored (a value is stored after its reader has the answer).
func waitStored(t testing.TB, rdb redis.UniversalClient) {
	t.Helper()
	wait.Until(t, 5*time.Second, "the loaded values are stored", func() bool {
		locks, err := rdb.Keys(context.Background(), KeyPrefix+"*:lock:*").Result()
		return err == nil && len(locks) == 0
	})
}

// secondClient is another connection pool on the same database: another replica.
func secondClient(t testing.TB, rdb *redis.Client) *redis.Client {
	t.Helper()
	c := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}
