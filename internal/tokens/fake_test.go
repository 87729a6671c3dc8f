package tokens

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// fakeAuth is the upstream's auth routes: it mints real HS256 JWTs, rotates refresh tokens (a
// refresh token works once, like the upstream's), counts calls and can be slowed, blocked or made
// to fail.
type fakeAuth struct {
	secret []byte
	clock  Clock

	logins, refreshes     atomic.Int64
	inFlight, maxInFlight atomic.Int64

	mu          sync.Mutex
	lifetime    time.Duration
	delay       time.Duration
	loginErr    error
	refreshErr  error
	refreshErrN int           // refreshes left to fail with refreshErr; -1 = all
	block       chan struct{} // when set, every call waits for it to close
	started     chan struct{} // when set, gets a value as a call starts
	seq         int
	issued      map[string]time.Time // access token -> exp
	refreshOK   map[string]bool
	secrets     []string // every access and refresh token handed out
}

func newFakeAuth(lifetime time.Duration) *fakeAuth {
	return &fakeAuth{
		secret:    []byte(rand.Text()),
		clock:     systemClock{},
		lifetime:  lifetime,
		issued:    map[string]time.Time{},
		refreshOK: map[string]bool{},
	}
}

func (f *fakeAuth) set(fn func(f *fakeAuth)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAuth) calls() int64 { return f.logins.Load() + f.refreshes.Load() }

func (f *fakeAuth) enter(ctx context.Context) error {
	n := f.inFlight.Add(1)
	for {
		m := f.maxInFlight.Load()
		if n <= m || f.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	f.mu.Lock()
	delay, block, started := f.delay, f.block, f.started
	f.mu.Unlock()
	if started != nil {
		select {
		case started <- struct{}{}:
		default:
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeAuth) Login(ctx context.Context) (upstream.TokenSet, error) {
	f.logins.Add(1)
	defer f.inFlight.Add(-1)
	if err := f.enter(ctx); err != nil {
		return upstream.TokenSet{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loginErr != nil {
		return upstream.TokenSet{}, f.loginErr
	}
	return f.mint()
}

func (f *fakeAuth) RefreshToken(ctx context.Context, refresh string) (upstream.TokenSet, error) {
	f.refreshes.Add(1)
	defer f.inFlight.Add(-1)
	if err := f.enter(ctx); err != nil {
		return upstream.TokenSet{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refreshErr != nil && f.refreshErrN != 0 {
		if f.refreshErrN > 0 {
			f.refreshErrN--
		}
		return upstream.TokenSet{}, f.refreshErr
	}
	if !f.refreshOK[refresh] {
		return upstream.TokenSet{}, fmt.Errorf("refresh token unknown or used: %w", upstream.ErrUnauthorized)
	}
	delete(f.refreshOK, refresh) // rotation: a refresh token works once
	return f.mint()
}

// mint issues a token pair; f.mu is held.
func (f *fakeAuth) mint() (upstream.TokenSet, error) {
	f.seq++
	now := f.clock.Now()
	exp := now.Add(f.lifetime)
	access, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "gateway",
		"jti": strconv.Itoa(f.seq),
		"iat": now.Unix(),
		"exp": float64(exp.UnixMilli()) / 1000,
	}).SignedString(f.secret)
	if err != nil {
		return upstream.TokenSet{}, err
	}
	refresh := "rt-" + strconv.Itoa(f.seq) + "-" + rand.Text()
	f.issued[access] = exp
	f.refreshOK[refresh] = true
	f.secrets = append(f.secrets, access, refresh)
	return upstream.TokenSet{AccessToken: access, RefreshToken: refresh, ExpiresIn: "24h"}, nil
}

// expOf is the expiry the fake gave a token.
func (f *fakeAuth) expOf(access string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.issued[access]
	return exp, ok
}

func (f *fakeAuth) allSecrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.secrets...)
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newSource builds a Source with test-friendly timings and closes it when the test ends.
func newSource(t testing.TB, rdb redis.UniversalClient, auth Authenticator, opts ...Option) *Source {
	t.Helper()
	base := []Option{WithPollInterval(100 * time.Millisecond), WithLockTTL(time.Second), WithMaxWait(10 * time.Second)}
	s, err := New(rdb, auth, append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// start runs the background refresher until the test ends.
func start(t testing.TB, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// replica opens another client to the same Redis database: another gateway process.
func replica(t testing.TB, c *redis.Client) *redis.Client {
	t.Helper()
	o := *c.Options()
	r := redis.NewClient(&o)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// metricValue reads one series from a registry: a counter or gauge value, or a histogram's count.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && have[labels[i]] == labels[i+1]
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// syncBuffer is a log sink safe for the concurrent writes of several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// commandCounter counts the commands a client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
