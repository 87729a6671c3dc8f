package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/redisconn"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const sid = "demo_session"

// statusOf reads a session status through c and returns its version and cache facts.
func statusOf(t testing.TB, c *CachedUpstream) (string, Info, error) {
	t.Helper()
	return statusOfSession(t, c, sid)
}

// statusOfSession is statusOf for the session id: a test whose in-process copies must not be
// dropped by the other tests' notices (pub/sub is server-wide, and they all read sid) reads a
// session of its own.
func statusOfSession(t testing.TB, c *CachedUpstream, id string) (string, Info, error) {
	t.Helper()
	ctx, rec := Track(context.Background())
	st, err := c.SessionStatus(ctx, id)
	info, _ := rec.Info()
	return st.PhoneNumber, info, err
}

func TestConcurrentMissesMakeOneUpstreamCall(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			rdb := redistest.New(t)
			fake := newFake()
			fake.delay = 300 * time.Millisecond
			var caches []*CachedUpstream
			var rts []*ReadThrough
			for i := range replicas {
				client := rdb
				if i > 0 {
					client = secondClient(t, rdb)
				}
				rt := newRT(t, client)
				rts = append(rts, rt)
				caches = append(caches, NewCachedUpstream(fake, rt, DefaultPolicies(), nil))
			}

			const n = 200
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					<-start
					v, _, err := statusOf(t, caches[i%replicas])
					if err == nil && v != "1" {
						err = fmt.Errorf("version %q", v)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("a reader failed: %v", err)
			}
			if got := fake.calls.Load(); got != 1 {
				t.Fatalf("%d concurrent identical misses made %d upstream calls, want 1", n, got)
			}
			var coalesced float64
			for _, rt := range rts {
				coalesced += counterValue(rt.metrics.coalescedBy.WithLabelValues(KindStatus))
			}
			if coalesced < 1 {
				t.Errorf("cache_coalesced_total = %v, want > 0", coalesced)
			}
		})
	}
}

func TestFreshValueIsAHit(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]Option{"in-process layer": nil, "redis layer": WithLocal(0, 0)} {
		t.Run(name, func(t *testing.T) {
			rt := newRT(t, redistest.New(t), opt)
			fake := newFake()
			c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
			if _, info, err := statusOf(t, c); err != nil || info.Status != StatusMiss {
				t.Fatalf("first read: %v, %+v; want a miss", err, info)
			}
			fake.set(func(f *fakeUpstream) { f.version = 2 })
			v, info, err := statusOf(t, c)
			if err != nil || info.Status != StatusHit || v != "1" {
				t.Fatalf("second read = %q, %+v, %v; want the cached version 1 as a hit", v, info, err)
			}
			if got := fake.calls.Load(); got != 1 {
				t.Errorf("upstream calls = %d, want 1", got)
			}
			if got := counterValue(rt.metrics.requests.WithLabelValues(KindStatus, "hit")); got != 1 {
				t.Errorf("cache_requests_total{result=hit} = %v, want 1", got)
			}
		})
	}
}

// stalePolicies make the status fresh for 5 s and servable on upstream errors for a minute.
func stalePolicies(revalidate time.Duration) Policies {
	p := DefaultPolicies()
	p.Status = Policy{Fresh: 5 * time.Second, Revalidate: revalidate, StaleIfError: time.Minute}
	return p
}

func TestStaleServedWhenUpstreamFails(t *testing.T) {
	t.Parallel()
	failures := map[string]error{
		"unavailable":  fmt.Errorf("dial: %w", upstream.ErrUnavailable),
		"timeout":      fmt.Errorf("wrapped: %w", upstream.ErrTimeout),
		"rate limited": &upstream.RateLimitError{RetryAfter: time.Second, Source: "gateway"},
		"upstream 503": &upstream.Error{Status: 503, Method: "GET", Route: "/api/sessions/:id/status"},
	}
	for name, failure := range failures {
		t.Run(name, func(t *testing.T) {
			clock := newClock()
			rdb := redistest.New(t)
			rt := newRT(t, rdb, WithClock(clock.now))
			fake := newFake()
			c := NewCachedUpstream(fake, rt, stalePolicies(0), nil)
			if _, _, err := statusOf(t, c); err != nil {
				t.Fatal(err)
			}
			waitStored(t, rdb) // the fake clock moves faster than the store that follows the answer
			clock.advance(10 * time.Second)
			fake.set(func(f *fakeUpstream) { f.err, f.version = failure, 2 })
			v, info, err := statusOf(t, c)
			if err != nil || v != "1" || info.Status != StatusStale {
				t.Fatalf("read while the upstream fails = %q, %+v, %v; want version 1 marked stale", v, info, err)
			}
			if info.Age < 10*time.Second {
				t.Errorf("stale age = %v, want >= 10s", info.Age)
			}
			if fake.calls.Load() != 2 {
				t.Errorf("upstream calls = %d, want 2 (the stale value is served after the upstream was asked)", fake.calls.Load())
			}

			clock.advance(2 * time.Minute) // past the stale window
			if _, _, err := statusOf(t, c); !errors.Is(err, failure) {
				t.Errorf("read past the stale window: %v, want the upstream's error", err)
			}
		})
	}
}

func TestClientErrorsAreNotMasked(t *testing.T) {
	t.Parallel()
	clock := newClock()
	rt := newRT(t, redistest.New(t), WithClock(clock.now))
	fake := newFake()
	c := NewCachedUpstream(fake, rt, stalePolicies(0), nil)
	if _, _, err := statusOf(t, c); err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * time.Second)
	notFound := &upstream.Error{Status: 404, Code: upstream.CodeSessionNotFound, Message: "no session", Method: "GET", Route: "/api/sessions/:id/status"}
	fake.set(func(f *fakeUpstream) { f.err = notFound })
	v, info, err := statusOf(t, c)
	if !errors.Is(err, upstream.ErrSessionNotFound) {
		t.Fatalf("read = %q, %+v, %v; want SESSION_NOT_FOUND, not the stale value", v, info, err)
	}
	notConnected := &upstream.Error{Status: 400, Code: upstream.CodeSessionNotConnected, Method: "GET", Route: "/api/sessions/:id/status"}
	fake.set(func(f *fakeUpstream) { f.err = notConnected })
	if _, _, err := statusOf(t, c); !errors.Is(err, upstream.ErrSessionNotConnected) {
		t.Fatalf("read = %v; want SESSION_NOT_CONNECTED, not the stale value", err)
	}
}

func TestStaleWhileRevalidateRefreshesOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	clock := newClock()
	fake := newFake()
	var caches []*CachedUpstream
	for i := range 2 { // two replicas
		client := rdb
		if i > 0 {
			client = secondClient(t, rdb)
		}
		caches = append(caches, NewCachedUpstream(fake, newRT(t, client, WithClock(clock.now)), stalePolicies(time.Minute), nil))
	}
	if _, _, err := statusOf(t, caches[0]); err != nil {
		t.Fatal(err)
	}
	// The store follows the answer: a reader that came before it would wait for the lock, and
	// the fake clock jumps further than real time moves while it waits.
	waitStored(t, rdb)
	clock.advance(10 * time.Second) // stale, within the revalidation window
	fake.set(func(f *fakeUpstream) { f.version, f.delay = 2, time.Second })

	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for i := range 100 {
		wg.Go(func() {
			start := time.Now()
			v, info, err := statusOf(t, caches[i%2])
			if err != nil || v != "1" || info.Status != StatusStale || time.Since(start) > 700*time.Millisecond {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%q %+v %v after %v", v, info, err, time.Since(start)))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("readers did not get the stale value at once: %v", bad[:min(len(bad), 3)])
	}
	wait.Until(t, 5*time.Second, "the refreshed value is served", func() bool {
		v, info, err := statusOf(t, caches[1])
		return err == nil && v == "2" && info.Status == StatusHit
	})
	if got := fake.calls.Load(); got != 2 {
		t.Errorf("upstream calls = %d, want 2 (the first load and exactly one refresh)", got)
	}
}

func TestInProcessLayerDroppedByOtherReplicasInvalidate(t *testing.T) {
	t.Parallel()
	const own = "invalidated_session" // see statusOfSession
	rdb := redistest.New(t)
	fake := newFake()
	rtA := newRT(t, rdb, WithLocal(100, time.Hour))
	a := NewCachedUpstream(fake, rtA, DefaultPolicies(), nil)
	b := NewCachedUpstream(fake, newRT(t, secondClient(t, rdb)), DefaultPolicies(), nil)

	// Read until the value is in A's in-process layer (a read that raced with a change of the
	// layer's generation leaves it to the next read, which finds it in Redis).
	wait.Until(t, 2*time.Second, "the value reaches A's in-process layer", func() bool {
		v, _, err := statusOfSession(t, a, own)
		if err != nil || v != "1" {
			t.Fatalf("first read: %q, %v", v, err)
		}
		return rtA.local.len() == 1
	})
	waitStored(t, rdb)
	// Remove the value from Redis behind the cache's back: only the in-process layer has it now.
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	fake.set(func(f *fakeUpstream) { f.version = 2 })
	if v, info, _ := statusOfSession(t, a, own); v != "1" || info.Status != StatusHit {
		t.Fatalf("read = %q, %+v; want version 1 from the in-process layer", v, info)
	}

	if err := b.Invalidate(context.Background(), own); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 2*time.Second, "replica A drops its in-process copy after B's Invalidate", func() bool {
		v, _, err := statusOfSession(t, a, own)
		return err == nil && v == "2"
	})
}

func TestInProcessLayerDroppedByOtherReplicasWrite(t *testing.T) {
	t.Parallel()
	const own = "rewritten_session" // see statusOfSession
	rdb := redistest.New(t)
	clock := newClock()
	fake := newFake()
	pol := DefaultPolicies()
	a := NewCachedUpstream(fake, newRT(t, rdb, WithLocal(100, time.Hour), WithClock(clock.now)), pol, nil)
	b := NewCachedUpstream(fake, newRT(t, secondClient(t, rdb), WithClock(clock.now)), pol, nil)
	if v, _, _ := statusOfSession(t, a, own); v != "1" {
		t.Fatalf("first read: %q", v)
	}
	waitStored(t, rdb) // A stores what it loaded after answering
	// B stores a newer value (its own load after the value expired for it); A must drop its copy.
	fake.set(func(f *fakeUpstream) { f.version = 2 })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := statusOfSession(t, b, own); v != "2" {
		t.Fatalf("B read %q, want 2", v)
	}
	wait.Until(t, 2*time.Second, "replica A drops its in-process copy after B's write", func() bool {
		v, _, _ := statusOfSession(t, a, own)
		return v == "2"
	})
	if got := fake.calls.Load(); got != 2 {
		t.Errorf("upstream calls = %d, want 2", got)
	}
}

func TestInvalidateDropsOneSessionAndTheList(t *testing.T) {
	t.Parallel()
	rt := newRT(t, redistest.New(t), WithLocal(0, 0))
	fake := newFake()
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
	ctx := context.Background()
	read := func() {
		t.Helper()
		if _, err := c.SessionStatus(ctx, "one_session"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SessionStatus(ctx, "two_session"); err != nil {
			t.Fatal(err)
		}
		for _, err := range c.AllSessions(ctx, 100) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	read()
	if got := fake.count("SessionStatus"); got != 2 {
		t.Fatalf("status calls after two rounds = %d, want 2", got)
	}
	if err := c.Invalidate(ctx, "one_session"); err != nil {
		t.Fatal(err)
	}
	read()
	if got := fake.count("SessionStatus"); got != 3 {
		t.Errorf("status calls = %d, want 3 (only the invalidated session reloaded)", got)
	}
	if got := fake.count("AllSessions"); got != 2 {
		t.Errorf("list calls = %d, want 2 (the list is dropped with any session)", got)
	}
	// A write through the wrapper invalidates too.
	if _, err := c.Connect(ctx, "two_session"); err != nil {
		t.Fatal(err)
	}
	read()
	if got := fake.count("SessionStatus"); got != 4 {
		t.Errorf("status calls after Connect = %d, want 4", got)
	}
}

func TestInvalidationDuringALoadStoresNothing(t *testing.T) {
	t.Parallel()
	rt := newRT(t, redistest.New(t))
	fake := newFake()
	fake.delay = 300 * time.Millisecond
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
	done := make(chan string)
	go func() {
		v, _, _ := statusOf(t, c)
		done <- v
	}()
	wait.Until(t, 2*time.Second, "the load started", func() bool { return fake.calls.Load() == 1 })
	if err := c.Invalidate(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
	if v := <-done; v != "1" {
		t.Fatalf("the reader got %q", v)
	}
	fake.set(func(f *fakeUpstream) { f.version, f.delay = 2, 0 })
	if v, info, _ := statusOf(t, c); v != "2" || info.Status != StatusMiss {
		t.Errorf("read after the invalidation = %q, %+v; want a new load (the old one must not be stored)", v, info)
	}
}

func TestRedisDownFallsThroughToUpstream(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	rt := newRT(t, rdb, WithMetrics(reg), WithLogger(slog.New(slog.DiscardHandler)))
	fake := newFake()
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)

	srv.Stop()
	for i := 1; i <= 2; i++ {
		v, info, err := statusOf(t, c)
		if err != nil || v != "1" || info.Status != StatusMiss {
			t.Fatalf("read %d with Redis down = %q, %+v, %v; want the upstream's value", i, v, info, err)
		}
		if got := fake.calls.Load(); got != int64(i) {
			t.Fatalf("upstream calls = %d, want %d", got, i)
		}
	}
	if got := counterValue(rt.metrics.requests.WithLabelValues(KindStatus, "error")); got != 2 {
		t.Errorf("cache_requests_total{result=error} = %v, want 2", got)
	}
	// The upstream's own errors still come through unchanged.
	fake.set(func(f *fakeUpstream) { f.err = &upstream.Error{Status: 404, Code: upstream.CodeSessionNotFound} })
	if _, _, err := statusOf(t, c); !errors.Is(err, upstream.ErrSessionNotFound) {
		t.Errorf("error with Redis down = %v, want SESSION_NOT_FOUND", err)
	}
	fake.set(func(f *fakeUpstream) { f.err = nil })

	srv.Restart(t)
	wait.Until(t, 5*time.Second, "the cache works again once Redis is back", func() bool {
		_, info, err := statusOf(t, c)
		return err == nil && info.Status == StatusHit
	})
}

func TestQRCachedUntilItExpires(t *testing.T) {
	t.Parallel()
	clock := newClock()
	rt := newRT(t, redistest.New(t), WithClock(clock.now), WithLocal(0, 0))
	fake := newFake()
	fake.qrExpires = clock.now().Add(30 * time.Second)
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil) // QRMargin 5 s: fresh for 25 s
	ctx := context.Background()
	read := func() (upstream.QR, Info, error) {
		ctx, rec := Track(ctx)
		q, err := c.QR(ctx, sid)
		info, _ := rec.Info()
		return q, info, err
	}
	if _, info, err := read(); err != nil || info.Status != StatusMiss {
		t.Fatalf("first read: %+v %v", info, err)
	}
	clock.advance(20 * time.Second)
	if q, info, _ := read(); info.Status != StatusHit || !q.ExpiresAt.Equal(fake.qrExpires) {
		t.Fatalf("read at 20 s = %+v, %+v; want the cached QR", q, info)
	}
	clock.advance(6 * time.Second)
	fake.set(func(f *fakeUpstream) { f.err = fmt.Errorf("down: %w", upstream.ErrUnavailable) })
	if _, _, err := read(); !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("read of an expiring QR while the upstream is down = %v; an old QR must not be served", err)
	}
	if got := fake.count("QR"); got != 2 {
		t.Errorf("QR calls = %d, want 2", got)
	}
}

func TestSearchTermsAreHashedInKeys(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	rt := newRT(t, rdb)
	fake := newFake()
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
	ctx := context.Background()
	const search = "María {López} secret"
	for range 2 {
		p, err := c.Contacts(ctx, sid, upstream.ListParams{Page: 1, Limit: 50, Search: search})
		if err != nil || len(p.Items) != 1 || p.Items[0].Name != search+"1" {
			t.Fatalf("contacts = %+v, %v", p, err)
		}
	}
	if _, err := c.Contacts(ctx, sid, upstream.ListParams{Page: 2, Limit: 50, Search: search}); err != nil {
		t.Fatal(err)
	}
	if got := fake.count("Contacts"); got != 2 {
		t.Errorf("contacts calls = %d, want 2 (page 1 cached, page 2 its own key)", got)
	}
	if _, err := c.ChatMessages(ctx, sid, "346000@s.whatsapp.net", upstream.ListParams{Page: 1}); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, KeyPrefix) {
			t.Errorf("key %q is outside the %s namespace", k, KeyPrefix)
		}
		if strings.Contains(k, "María") || strings.Contains(k, "secret") || strings.Contains(k, "346000") {
			t.Errorf("key %q carries free text", k)
		}
	}
	if len(keys) == 0 {
		t.Fatal("nothing stored")
	}
}

func TestHostileSessionIDStaysInItsScope(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a}b", "{x}", strings.Repeat("z", 300), "sp ace"} {
		scope := SessionScope(id)
		k := Key{Scope: scope, Kind: KindStatus}
		if strings.Count(k.redisKey(), "{") != 1 || strings.Count(k.redisKey(), "}") != 1 || len(k.redisKey()) > 100 {
			t.Errorf("session id %q gives key %q", id, k.redisKey())
		}
	}
}

func TestAllSessionsIteratesTheCachedList(t *testing.T) {
	t.Parallel()
	rt := newRT(t, redistest.New(t))
	fake := newFake()
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
	ctx := context.Background()
	for range 3 {
		var ids []string
		for s, err := range c.AllSessions(ctx, 100) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, s.SessionID)
		}
		if strings.Join(ids, ",") != "s_one,s_two,s_three" {
			t.Fatalf("sessions = %v", ids)
		}
	}
	for range c.AllSessions(ctx, 100) {
		break // stopping early must not panic
	}
	if got := fake.count("AllSessions"); got != 1 {
		t.Errorf("list walks = %d, want 1", got)
	}
	// Errors come out of the iterator.
	if err := c.Invalidate(ctx, "s_one"); err != nil {
		t.Fatal(err)
	}
	fake.set(func(f *fakeUpstream) { f.err = &upstream.Error{Status: 401} })
	for _, err := range c.AllSessions(ctx, 100) {
		if !errors.Is(err, upstream.ErrUnauthorized) {
			t.Errorf("error = %v, want ErrUnauthorized", err)
		}
	}
}

func TestRecorderReportsTheWorstRead(t *testing.T) {
	t.Parallel()
	ctx, rec := Track(context.Background())
	if _, ok := rec.Info(); ok {
		t.Fatal("a fresh recorder reports facts")
	}
	record(ctx, Info{Status: StatusHit, Age: 2 * time.Second})
	record(ctx, Info{Status: StatusStale, Age: 7 * time.Second})
	record(ctx, Info{Status: StatusMiss})
	info, ok := InfoFrom(ctx)
	if !ok || info.Status != StatusStale || info.Age != 7*time.Second {
		t.Errorf("info = %+v, %v; want stale, 7s", info, ok)
	}
	if _, ok := InfoFrom(context.Background()); ok {
		t.Error("InfoFrom without Track reports facts")
	}
	b, _ := info.MarshalJSON()
	if string(b) != `{"status":"stale","ageSeconds":7}` {
		t.Errorf("JSON = %s", b)
	}
}

// TestEmbeddedStore runs the cache on the embedded store of demo mode: its scripts must work there too.
func TestEmbeddedStore(t *testing.T) {
	t.Parallel()
	s, err := redisconn.Open(context.Background(), "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	rt := newRT(t, s.Client, WithLocal(0, 0))
	fake := newFake()
	c := NewCachedUpstream(fake, rt, DefaultPolicies(), nil)
	statusOf(t, c)
	if _, info, err := statusOf(t, c); err != nil || info.Status != StatusHit {
		t.Fatalf("second read = %+v, %v; want a hit", info, err)
	}
	if err := c.Invalidate(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
	if _, info, _ := statusOf(t, c); info.Status != StatusMiss {
		t.Fatalf("read after Invalidate = %+v; want a miss", info)
	}
}

// BenchmarkCachedHit compares a hit answered by the in-process layer with one that pays the Redis
// round trip.
func BenchmarkCachedHit(b *testing.B) {
	for name, opt := range map[string]Option{"in-process": nil, "redis": WithLocal(0, 0)} {
		b.Run(name, func(b *testing.B) {
			rt := newRT(b, redistest.New(b), opt)
			c := NewCachedUpstream(newFake(), rt, DefaultPolicies(), nil)
			ctx := context.Background()
			if _, err := c.SessionStatus(ctx, sid); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.SessionStatus(ctx, sid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestFailedLoadWakesTheOtherReplica: when the winner's load fails (an answer that is not
// cached), the waiting replica hears it at once and makes its own call, rather than waiting for
// the lock to expire; every reader gets the upstream's error.
func TestFailedLoadWakesTheOtherReplica(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fake := newFake()
	fake.delay = 200 * time.Millisecond
	fake.err = &upstream.Error{Status: 404, Code: upstream.CodeSessionNotFound}
	caches := []*CachedUpstream{
		NewCachedUpstream(fake, newRT(t, rdb, WithPollInterval(time.Minute)), DefaultPolicies(), nil),
		NewCachedUpstream(fake, newRT(t, secondClient(t, rdb), WithPollInterval(time.Minute)), DefaultPolicies(), nil),
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, _, err := statusOf(t, caches[i%2]); !errors.Is(err, upstream.ErrSessionNotFound) {
				t.Errorf("reader %d: %v, want SESSION_NOT_FOUND", i, err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("readers took %v: the waiting replica was not woken", took)
	}
	if got := fake.calls.Load(); got < 1 || got > 2 {
		t.Errorf("upstream calls = %d, want 1 or 2 (at most one per replica)", got)
	}
}

// TestVersionNamesTheKeptValue: a value the cache keeps has a Version (a hash of its encoding)
// and a FreshUntil, the same from the in-process layer, from Redis on another replica, and for a
// stale answer; a new value gets a new version; a value read while Redis fails (not kept) has
// none.
func TestVersionNamesTheKeptValue(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fake := newFake()
	c := NewCachedUpstream(fake, newRT(t, rdb), DefaultPolicies(), nil)
	other := NewCachedUpstream(fake, newRT(t, secondClient(t, rdb)), DefaultPolicies(), nil)

	_, miss, err := statusOf(t, c)
	if err != nil || miss.Status != StatusMiss || len(miss.Version) < 16 || !miss.FreshUntil.After(time.Now()) {
		t.Fatalf("miss: %+v, %v", miss, err)
	}
	for name, cu := range map[string]*CachedUpstream{"this replica": c, "another replica": other} {
		if _, hit, _ := statusOf(t, cu); hit.Status != StatusHit || hit.Version != miss.Version || !hit.FreshUntil.Equal(miss.FreshUntil) {
			t.Errorf("hit on %s: %+v, want version %s fresh until %v", name, hit, miss.Version, miss.FreshUntil)
		}
	}

	fake.set(func(f *fakeUpstream) { f.version = 2 })
	if err := c.Invalidate(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
	_, changed, _ := statusOf(t, c)
	if changed.Version == "" || changed.Version == miss.Version {
		t.Errorf("new value: version %q, the old one was %q", changed.Version, miss.Version)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}) // nothing listens there
	t.Cleanup(func() { _ = down.Close() })
	downRT, err := NewReadThrough(down)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(downRT.Close)
	broken := NewCachedUpstream(fake, downRT, DefaultPolicies(), nil)
	if _, degraded, err := statusOf(t, broken); err != nil || degraded.Version != "" || !degraded.FreshUntil.IsZero() {
		t.Errorf("read with Redis failing: %+v, %v; want no version", degraded, err)
	}
}

// TestDeadFillerCostsOneLease: the fill lock is a short lease (DefaultLockTTL) that the loading
// replica renews while its load runs, so a slow load keeps it; when that replica dies mid-load
// (its Redis connection gone, so it renews no more), a waiting replica takes the lock within the
// lease and loads itself, instead of waiting for a long lock to expire and timing out (which
// answered 504 for 20 s after a replica kill in the soak).
func TestDeadFillerCostsOneLease(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fake := newFake()
	fake.set(func(f *fakeUpstream) { f.delay = time.Hour }) // the doomed replica's load never ends
	doomedClient := secondClient(t, rdb)
	doomed := NewCachedUpstream(fake, newRT(t, doomedClient, WithLoadTimeout(time.Hour)), DefaultPolicies(), nil)
	go func() { _, _, _ = statusOf(t, doomed) }()
	wait.Until(t, 5*time.Second, "the doomed replica's load started", func() bool { return fake.calls.Load() == 1 })
	fake.set(func(f *fakeUpstream) { f.delay = 0 })

	lock := Key{Scope: SessionScope(sid), Kind: KindStatus}.lockKey()
	taken := time.Now()
	if ttl := rdb.PTTL(context.Background(), lock).Val(); ttl <= 0 || ttl > DefaultLockTTL {
		t.Fatalf("the fill lock's TTL is %v, want a lease of at most %v", ttl, DefaultLockTTL)
	}
	wait.Until(t, 10*time.Second, "the lock outlived three leases while its load ran", func() bool {
		return time.Since(taken) > 3*DefaultLockTTL && rdb.Exists(context.Background(), lock).Val() == 1
	})

	_ = doomedClient.Close() // the replica dies: no renewal, no release
	waiter := NewCachedUpstream(fake, newRT(t, rdb, WithLoadTimeout(10*time.Second)), DefaultPolicies(), nil)
	if _, info, err := statusOf(t, waiter); err != nil || info.Status != StatusMiss {
		t.Fatalf("the waiting replica: %v (%s), want its own load", err, info.Status)
	}
	if got := fake.calls.Load(); got != 2 {
		t.Fatalf("upstream calls = %d, want 2 (the dead replica's and the waiter's)", got)
	}
}

// holdStores is a Redis hook that keeps every run of the store script waiting until release is
// closed: the value a replica loaded reaches Redis only then.
type holdStores struct{ release chan struct{} }

func (h holdStores) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h holdStores) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && strings.EqualFold(cmd.Name(), "evalsha") && args[1] == storeScript.Hash() {
			<-h.release
		}
		return next(ctx, cmd)
	}
}
func (h holdStores) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestMissAnswersBeforeTheStore: a miss's reader has its answer while the value is still on its
// way to Redis, the next read on that replica is a hit from its in-process layer, and a read on
// another replica waits for the store instead of calling the upstream again.
func TestMissAnswersBeforeTheStore(t *testing.T) {
	t.Parallel()
	const own = "stored_late_session" // see statusOfSession
	rdb := redistest.New(t)
	held := holdStores{release: make(chan struct{})}
	slowRedis := secondClient(t, rdb)
	slowRedis.AddHook(held)
	fake := newFake()
	a := NewCachedUpstream(fake, newRT(t, slowRedis, WithLocal(100, time.Hour)), DefaultPolicies(), nil)
	b := NewCachedUpstream(fake, newRT(t, secondClient(t, rdb)), DefaultPolicies(), nil)

	first := make(chan Info, 1)
	go func() {
		_, info, err := statusOfSession(t, a, own)
		if err != nil {
			t.Errorf("first read: %v", err)
		}
		first <- info
	}()
	select {
	case info := <-first:
		if info.Status != StatusMiss || info.Version == "" {
			t.Errorf("first read: %+v; want a miss with the value's version", info)
		}
	case <-time.After(10 * time.Second):
		close(held.release)
		t.Fatal("the first read waited for the store of what it loaded")
	}
	if _, info, err := statusOfSession(t, a, own); err != nil || info.Status != StatusHit {
		t.Errorf("second read on the same replica: %+v, %v; want a hit from its in-process layer", info, err)
	}

	other := make(chan error, 1)
	go func() {
		v, _, err := statusOfSession(t, b, own)
		if err == nil && v != "1" {
			err = fmt.Errorf("read %q, want 1", v)
		}
		other <- err
	}()
	close(held.release)
	if err := <-other; err != nil {
		t.Errorf("read on another replica: %v", err)
	}
	if got := fake.calls.Load(); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
	waitStored(t, rdb)
	if n, err := rdb.Exists(context.Background(), Key{Scope: SessionScope(own), Kind: KindStatus}.redisKey()).Result(); err != nil || n != 1 {
		t.Errorf("the value is not in Redis after the store: %d, %v", n, err)
	}
}
