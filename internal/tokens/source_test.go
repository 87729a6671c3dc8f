package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

func TestColdStartLogsInOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	fa.set(func(f *fakeAuth) { f.delay = 50 * time.Millisecond })
	s := newSource(t, rdb, fa)

	const callers = 500
	got := make([]upstream.AccessToken, callers)
	errs := make([]error, callers)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-begin
			got[i], errs[i] = s.Token(t.Context())
		})
	}
	close(begin)
	wg.Wait()

	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if got[0].Generation != 1 {
		t.Errorf("generation = %d, want 1", got[0].Generation)
	}
}

func TestReplicasShareOneLogin(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	fa.set(func(f *fakeAuth) { f.delay = 100 * time.Millisecond })
	regs := make([]*prometheus.Registry, 3)
	srcs := make([]*Source, 3)
	for i := range srcs {
		regs[i] = prometheus.NewRegistry()
		srcs[i] = newSource(t, replica(t, rdb), fa, WithMetrics(regs[i]))
	}

	const callers = 300
	got := make([]upstream.AccessToken, callers)
	errs := make([]error, callers)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-begin
			got[i], errs[i] = srcs[i%3].Token(t.Context())
		})
	}
	close(begin)
	wg.Wait()

	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d (replica %d) got another token than caller 0", i, i%3)
		}
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins across 3 replicas = %d, want 1", n)
	}
	if n := fa.maxInFlight.Load(); n != 1 {
		t.Errorf("upstream auth calls in flight at once = %d, want 1", n)
	}
	var logins, waits float64
	for _, reg := range regs {
		logins += metricValue(t, reg, "token_logins_total", "result", "ok")
		waits += metricValue(t, reg, "token_lock_waits_total")
	}
	if logins != 1 || waits < 1 {
		t.Errorf("metrics: token_logins_total{ok} = %v (want 1), token_lock_waits_total = %v (want >= 1)", logins, waits)
	}
}

// Two replicas serve steady traffic through several lifetimes of a 2 s token: every call gets an
// unexpired token without waiting, the background refresher renews it with the refresh token, and
// the one login is the first.
func TestBackgroundRefreshKeepsTokensValid(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(2 * time.Second)
	srcs := []*Source{newSource(t, rdb, fa), newSource(t, replica(t, rdb), fa)}
	for _, s := range srcs {
		start(t, s)
	}

	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	until := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for g := range 6 {
		s := srcs[g%2]
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for time.Now().Before(until) {
				<-tick.C
				calls.Add(1)
				tok, err := s.Token(t.Context())
				if err == nil {
					if exp, ok := fa.expOf(tok.Value); !ok || !time.Now().Before(exp) {
						err = fmt.Errorf("token of generation %d expired at %s", tok.Generation, exp.Format(time.StampMilli))
					}
				}
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, calls.Load(), firstFailure.Load())
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if n := fa.refreshes.Load(); n < 2 {
		t.Errorf("refreshes = %d, want >= 2", n)
	}
	if n := fa.maxInFlight.Load(); n != 1 {
		t.Errorf("upstream auth calls in flight at once = %d, want 1", n)
	}
	t.Logf("%d calls, %d logins, %d refreshes", calls.Load(), fa.logins.Load(), fa.refreshes.Load())
}

func TestRejectedRenewsOnceFleetWide(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	srcs := []*Source{newSource(t, rdb, fa), newSource(t, replica(t, rdb), fa)}
	old, err := srcs[0].Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := srcs[1].Token(t.Context()); err != nil || tok != old {
		t.Fatalf("second replica: %v, same token: %v", err, tok == old)
	}
	fa.set(func(f *fakeAuth) { f.delay = 50 * time.Millisecond })
	before := fa.calls()

	const callers = 100
	got := make([]upstream.AccessToken, callers)
	errs := make([]error, callers)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-begin
			s := srcs[i%2]
			s.Rejected(t.Context(), old)
			got[i], errs[i] = s.Token(t.Context())
		})
	}
	close(begin)
	wg.Wait()

	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i].Value == old.Value || got[i] != got[0] {
			t.Fatalf("caller %d: got the rejected token or another new one", i)
		}
	}
	if n := fa.calls() - before; n != 1 {
		t.Errorf("logins+refreshes after the rejection = %d, want 1", n)
	}
	if got[0].Generation != old.Generation+1 {
		t.Errorf("new generation = %d, want %d", got[0].Generation, old.Generation+1)
	}

	// A late 401 for the old token must not throw away the new one.
	for _, s := range srcs {
		s.Rejected(t.Context(), old)
		if tok, err := s.Token(t.Context()); err != nil || tok != got[0] {
			t.Fatalf("after a stale rejection: token changed or failed (%v)", err)
		}
	}
	if n := fa.calls() - before; n != 1 {
		t.Errorf("a stale rejection caused an upstream call (%d calls)", n)
	}
	// Nor may a rejection of another token that happens to carry the current generation.
	srcs[1].Rejected(t.Context(), upstream.AccessToken{Value: "some-other-token", Generation: got[0].Generation})
	if n, _ := rdb.HExists(t.Context(), "gw:token", fieldRevoked).Result(); n {
		t.Error("a stale rejection marked the stored token revoked")
	}
}

// Bad credentials: the first login is refused, after which no replica calls the upstream or waits
// for the lock until the backoff has passed; the backoff doubles; success clears it.
func TestBadCredentialsBackOffAndFailFast(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	clk := newFakeClock()
	fa := newFakeAuth(time.Hour)
	fa.clock = clk
	fa.set(func(f *fakeAuth) { f.loginErr = fmt.Errorf("login: 401: %w", upstream.ErrAuthFailed) })
	reg := prometheus.NewRegistry()
	a := newSource(t, rdb, fa, WithClock(clk), WithAuthBackoff(time.Minute, 4*time.Minute), WithMetrics(reg))
	b := newSource(t, replica(t, rdb), fa, WithClock(clk), WithAuthBackoff(time.Minute, 4*time.Minute))

	_, err := a.Token(t.Context())
	if !errors.Is(err, upstream.ErrAuthFailed) {
		t.Fatalf("first Token: %v, want ErrAuthFailed", err)
	}
	if errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("bad credentials reported as a store failure: %v", err)
	}
	st := a.Status()
	if st.State != StateAuthFailed || !st.NextLoginAllowedAt.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("status = %+v, want auth_failed until now+1m", st)
	}
	if st.LastRefreshError == "" {
		t.Error("status has no last error")
	}
	if v := metricValue(t, reg, "token_auth_failed"); v != 1 {
		t.Errorf("token_auth_failed = %v, want 1", v)
	}

	// From now on a login would block forever and another replica holds the renewal lock: a Token
	// call that reached either would not come back before its 20 s context ended.
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	fa.set(func(f *fakeAuth) { f.block = block })
	if err := rdb.Set(t.Context(), "gw:token:lock", "another-replica", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, s := range []*Source{a, b} {
		for range 20 {
			if _, err := s.Token(ctx); !errors.Is(err, upstream.ErrAuthFailed) || ctx.Err() != nil {
				t.Fatalf("Token during backoff: %v (ctx: %v), want ErrAuthFailed at once", err, ctx.Err())
			}
		}
	}
	if st := b.Status(); st.State != StateAuthFailed {
		t.Errorf("second replica state = %q, want auth_failed (learned from Redis)", st.State)
	}
	if n := fa.logins.Load(); n != 1 {
		t.Fatalf("logins during the first backoff minute = %d, want 1", n)
	}

	// Minute 1: one more attempt, refused again; the backoff doubles to 2 minutes.
	fa.set(func(f *fakeAuth) { f.block = nil })
	rdb.Del(t.Context(), "gw:token:lock")
	clk.Advance(61 * time.Second)
	if _, err := b.Token(ctx); !errors.Is(err, upstream.ErrAuthFailed) {
		t.Fatalf("Token after the backoff: %v", err)
	}
	if _, err := a.Token(ctx); !errors.Is(err, upstream.ErrAuthFailed) {
		t.Fatalf("Token after the backoff: %v", err)
	}
	if n := fa.logins.Load(); n != 2 {
		t.Fatalf("logins by minute 1 = %d, want 2", n)
	}
	// Minute 2: still inside the doubled backoff.
	clk.Advance(61 * time.Second)
	for _, s := range []*Source{a, b} {
		if _, err := s.Token(ctx); !errors.Is(err, upstream.ErrAuthFailed) {
			t.Fatalf("Token inside the doubled backoff: %v", err)
		}
	}
	if n := fa.logins.Load(); n != 2 {
		t.Fatalf("logins by minute 2 = %d, want 2", n)
	}
	// Minute 3: the credentials were fixed; one login serves both replicas and clears the backoff.
	fa.set(func(f *fakeAuth) { f.loginErr = nil })
	clk.Advance(60 * time.Second)
	tok, err := a.Token(ctx)
	if err != nil {
		t.Fatalf("Token after the credentials were fixed: %v", err)
	}
	if got, err := b.Token(ctx); err != nil || got != tok {
		t.Fatalf("second replica after recovery: %v (same token: %v)", err, got == tok)
	}
	if n := fa.logins.Load(); n != 3 {
		t.Errorf("logins = %d, want 3", n)
	}
	if st := a.Status(); st.State != StateValid || !st.NextLoginAllowedAt.IsZero() || st.LastRefreshError != "" {
		t.Errorf("status after recovery = %+v", st)
	}
	if v := metricValue(t, reg, "token_auth_failed"); v != 0 {
		t.Errorf("token_auth_failed after recovery = %v, want 0", v)
	}
	if v := metricValue(t, reg, "token_logins_total", "result", "rejected"); v != 1 {
		t.Errorf("token_logins_total{rejected} = %v, want 1 (the second attempt was the other replica's)", v)
	}
	if n, _ := rdb.HExists(t.Context(), "gw:token", fieldFailUntil).Result(); n {
		t.Error("the backoff mark is still in Redis after a successful login")
	}
}

// Redis goes away: the memory token keeps being served, a needed token is renewed without the lock
// at most once per interval, nothing is reported as bad credentials, and the token is stored again
// once Redis is back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := dialFast(t, srv)
	fa := newFakeAuth(time.Hour)
	s := newSource(t, rdb, fa, WithOutageRenewInterval(time.Minute))
	start(t, s)

	t1, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for range 100 {
		if tok, err := s.Token(t.Context()); err != nil || tok != t1 {
			t.Fatalf("Token with Redis down and a valid memory token: %v", err)
		}
	}
	wait.Until(t, 5*time.Second, "state redis_unavailable", func() bool { return s.Status().State == StateRedisUnavailable })

	// The token is rejected while Redis is down: one renewal without the lock serves everyone.
	s.Rejected(t.Context(), t1)
	t2 := concurrentTokens(t, s, 50, func(tok upstream.AccessToken, err error) error {
		if err != nil {
			return err
		}
		if tok.Value == t1.Value {
			return errors.New("got the rejected token")
		}
		return nil
	})
	if n := fa.calls(); n != 2 {
		t.Fatalf("upstream calls = %d, want 2 (the login and one renewal)", n)
	}

	// Rejected again within the interval: no login storm, and the error is not "bad credentials".
	s.Rejected(t.Context(), t2)
	concurrentTokens(t, s, 50, func(_ upstream.AccessToken, err error) error {
		if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, upstream.ErrAuthFailed) {
			return fmt.Errorf("err = %v, want ErrStoreUnavailable and not ErrAuthFailed", err)
		}
		return nil
	})
	if n := fa.calls(); n != 2 {
		t.Fatalf("upstream calls = %d, want still 2", n)
	}
	if st := s.Status(); st.State != StateRedisUnavailable || !st.NextLoginAllowedAt.IsZero() {
		t.Fatalf("status = %+v, want redis_unavailable and no login backoff", st)
	}

	// Redis is back (empty): a token is obtained under the lock and stored for the fleet again.
	srv.Restart(t)
	var t3 upstream.AccessToken
	wait.Until(t, 10*time.Second, "a token after Redis came back", func() bool {
		t3, err = s.Token(t.Context())
		return err == nil
	})
	wait.Until(t, 5*time.Second, "the token in Redis", func() bool {
		n, _ := rdb.HExists(t.Context(), "gw:token", fieldData).Result()
		return n
	})
	other := newSource(t, dialFast(t, srv), fa)
	if tok, err := other.Token(t.Context()); err != nil || tok.Value != t3.Value {
		t.Fatalf("another replica after the outage: %v (same token: %v)", err, tok.Value == t3.Value)
	}
	if n := fa.calls(); n != 3 {
		t.Errorf("upstream calls = %d, want 3", n)
	}
	if t3.Generation <= t2.Generation {
		t.Errorf("generation went from %d to %d; it must only grow", t2.Generation, t3.Generation)
	}
	wait.Until(t, 5*time.Second, "state valid", func() bool { return s.Status().State == StateValid })
}

// Redis restarts empty while the memory token is still valid: the refresher writes it back, keeping
// its generation, so other replicas do not log in again.
func TestTokenWrittenBackAfterRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := dialFast(t, srv)
	fa := newFakeAuth(time.Hour)
	s := newSource(t, rdb, fa)
	start(t, s)
	t1, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Restart(t)
	wait.Until(t, 10*time.Second, "the memory token written back", func() bool {
		v, _ := rdb.HGet(t.Context(), "gw:token", fieldData).Result()
		return strings.Contains(v, t1.Value)
	})
	other := newSource(t, dialFast(t, srv), fa)
	if tok, err := other.Token(t.Context()); err != nil || tok != t1 {
		t.Fatalf("another replica: %v (same token and generation: %v)", err, tok == t1)
	}
	if n := fa.calls(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

func TestEncryptionAtRestAndKeyRotation(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	keyA, keyB := []byte(strings.Repeat("a", 32)), []byte(strings.Repeat("b", 32))
	a := newSource(t, rdb, fa, WithEncryptionKeys("A", map[string][]byte{"A": keyA}))
	if !a.Encrypted() {
		t.Fatal("Encrypted() = false with a key")
	}
	t1, err := a.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw := rawRecord(t, rdb)
	if raw[fieldKeyID] != "A" {
		t.Errorf("kid = %q, want A", raw[fieldKeyID])
	}
	for _, secret := range fa.allSecrets() {
		for field, v := range raw {
			if strings.Contains(v, secret) || strings.Contains(v, secret[len(secret)/2:]) {
				t.Fatalf("field %s of the stored record contains a token in plain text", field)
			}
		}
	}

	// Rotation: B becomes current, A stays known. The A-sealed token is read without a login; the
	// next write uses B.
	b := newSource(t, replica(t, rdb), fa, WithEncryptionKeys("B", map[string][]byte{"A": keyA, "B": keyB}))
	if tok, err := b.Token(t.Context()); err != nil || tok != t1 {
		t.Fatalf("reading the A-sealed token with B current: %v", err)
	}
	if n := fa.calls(); n != 1 {
		t.Fatalf("upstream calls = %d, want 1", n)
	}
	b.Rejected(t.Context(), t1)
	t2, err := b.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if raw := rawRecord(t, rdb); raw[fieldKeyID] != "B" || strings.Contains(raw[fieldData], t2.Value) {
		t.Fatalf("after rotation kid = %q (want B), or the token is in plain text", raw[fieldKeyID])
	}
	c := newSource(t, replica(t, rdb), fa, WithEncryptionKeys("C", map[string][]byte{"B": keyB, "C": []byte(strings.Repeat("c", 32))}))
	if tok, err := c.Token(t.Context()); err != nil || tok != t2 {
		t.Fatalf("reading the B-sealed token after dropping A: %v", err)
	}

	// Without a key, tokens are stored in plain text and the Source says so.
	plain := newSource(t, redistest.New(t), fa)
	if plain.Encrypted() {
		t.Error("Encrypted() = true without a key")
	}
}

func TestSealer(t *testing.T) {
	t.Parallel()
	keyA := []byte(strings.Repeat("k", 32))
	sa, err := newSealer("A", map[string][]byte{"A": keyA})
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"a":"secret-token"}`)
	kid, c1 := sa.seal(plain, []byte("gw:token"))
	_, c2 := sa.seal(plain, []byte("gw:token"))
	if kid != "A" || string(c1) == string(c2) {
		t.Fatal("two seals of the same text are equal: the nonce is not random")
	}
	if got, err := sa.open("A", c1, []byte("gw:token")); err != nil || string(got) != string(plain) {
		t.Fatalf("open: %v", err)
	}
	if _, err := sa.open("A", c1, []byte("other:key")); err == nil {
		t.Error("a value moved to another key name decrypts: the key name is not authenticated")
	}
	if _, err := sa.open("Z", c1, []byte("gw:token")); err == nil {
		t.Error("an unknown key id decrypts")
	}
	for name, keys := range map[string]map[string][]byte{
		"short key":           {"A": []byte("short")},
		"current key missing": {"B": keyA},
	} {
		if _, err := newSealer("A", keys); err == nil {
			t.Errorf("%s: newSealer accepted it", name)
		}
	}
}

// A login slower than the lease TTL keeps the lease, so another replica waits instead of logging in.
func TestLockLeaseExtendedDuringSlowLogin(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	started := make(chan struct{}, 1)
	const ttl = 300 * time.Millisecond
	fa.set(func(f *fakeAuth) { f.delay, f.started = 5*ttl, started })
	a := newSource(t, rdb, fa, WithLockTTL(ttl))
	b := newSource(t, replica(t, rdb), fa, WithLockTTL(ttl))

	results := make(chan error, 2)
	tokens := make(chan upstream.AccessToken, 2)
	go func() {
		tok, err := a.Token(t.Context())
		tokens <- tok
		results <- err
	}()
	<-started
	go func() {
		tok, err := b.Token(t.Context())
		tokens <- tok
		results <- err
	}()
	// Throughout three lease TTLs of the login the lease must still exist.
	loginStart := time.Now()
	wait.Until(t, 5*time.Second, "three TTLs into the login", func() bool {
		if n, err := rdb.Exists(t.Context(), "gw:token:lock").Result(); err != nil || n != 1 {
			t.Fatalf("the lease vanished %s into the login", time.Since(loginStart))
		}
		return time.Since(loginStart) > 3*ttl
	})
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if t1, t2 := <-tokens, <-tokens; t1 != t2 {
		t.Error("the replicas got different tokens")
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if n := fa.maxInFlight.Load(); n != 1 {
		t.Errorf("logins in flight at once = %d, want 1", n)
	}
	if n, _ := rdb.Exists(t.Context(), "gw:token:lock").Result(); n != 0 {
		t.Error("the lease was not released")
	}
}

// A transient refresh failure is retried with backoff while callers keep the valid token; it is not
// a reason to log in.
func TestTransientRefreshFailureRetried(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(3 * time.Second)
	reg := prometheus.NewRegistry()
	s := newSource(t, rdb, fa, WithRefreshAt(0.4, 0.05), WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond), WithMetrics(reg))
	t1, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fa.set(func(f *fakeAuth) {
		f.refreshErr, f.refreshErrN = fmt.Errorf("refresh: 503: %w", upstream.ErrUnavailable), 3
	})
	start(t, s)
	sawError := false
	wait.Until(t, 5*time.Second, "a refreshed token", func() bool {
		tok, err := s.Token(t.Context())
		if err != nil {
			t.Fatalf("Token while the refresh fails: %v", err)
		}
		sawError = sawError || s.Status().LastRefreshError != ""
		return tok.Generation > t1.Generation
	})
	if n := fa.refreshes.Load(); n != 4 {
		t.Errorf("refresh attempts = %d, want 4 (3 failures, 1 success)", n)
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if v := metricValue(t, reg, "token_refreshes_total", "result", "error"); v != 3 {
		t.Errorf("token_refreshes_total{error} = %v, want 3", v)
	}
	if !sawError {
		t.Error("Status never showed the refresh error")
	}
	if st := s.Status(); st.LastRefreshError != "" || st.State != StateValid {
		t.Errorf("status after the successful retry = %+v", st)
	}
}

func TestRejectedRefreshTokenFallsBackToLogin(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	reg := prometheus.NewRegistry()
	s := newSource(t, rdb, fa, WithMetrics(reg))
	t1, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fa.set(func(f *fakeAuth) {
		f.refreshErr, f.refreshErrN = fmt.Errorf("refresh: 401: %w", upstream.ErrUnauthorized), 1
	})
	s.Rejected(t.Context(), t1)
	t2, err := s.Token(t.Context())
	if err != nil || t2.Value == t1.Value {
		t.Fatalf("Token after the rejection: %v", err)
	}
	if l, r := fa.logins.Load(), fa.refreshes.Load(); l != 2 || r != 1 {
		t.Errorf("logins, refreshes = %d, %d; want 2, 1", l, r)
	}
	if v := metricValue(t, reg, "token_refreshes_total", "result", "rejected"); v != 1 {
		t.Errorf("token_refreshes_total{rejected} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "token_remaining_seconds"); v < 3500 {
		t.Errorf("token_remaining_seconds = %v, want about 3600", v)
	}
}

// The request path reads memory only: no Redis command, no allocation.
func TestHotPathNeedsNoRedisAndNoAllocation(t *testing.T) { // not parallel: AllocsPerRun forbids it
	rdb := redistest.New(t)
	counter := &commandCounter{}
	rdb.AddHook(counter)
	s := newSource(t, rdb, newFakeAuth(time.Hour))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := counter.n.Load()
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Token allocates %v times per call", allocs)
	}
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("Token sent %d Redis commands on the hot path", n)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	tok := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.c2lnbmF0dXJl"
	fp := Fingerprint(tok)
	if len(fp) != 16 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not 16 hex digits", fp)
	}
	if fp == tok || strings.Contains(tok, fp) || strings.Contains(fp, tok) {
		t.Fatal("the fingerprint reveals the token")
	}
	if Fingerprint(tok) != fp || Fingerprint(tok+"x") == fp {
		t.Fatal("the fingerprint is not a stable function of the token")
	}
}

// The logs of a whole life cycle (login, refresh, rejected refresh token, bad credentials, stale
// rejection) name tokens by fingerprint only.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	var logs syncBuffer
	s := newSource(t, rdb, fa, WithLogger(testLogger(&logs)), WithAuthBackoff(time.Minute, time.Minute))
	t1, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.Rejected(t.Context(), t1)
	t2, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.Rejected(t.Context(), t1) // stale
	fa.set(func(f *fakeAuth) {
		f.refreshErr, f.refreshErrN = fmt.Errorf("refresh: 401: %w", upstream.ErrUnauthorized), -1
		f.loginErr = fmt.Errorf("login: 401: %w", upstream.ErrAuthFailed)
	})
	s.Rejected(t.Context(), t2)
	if _, err := s.Token(t.Context()); !errors.Is(err, upstream.ErrAuthFailed) {
		t.Fatalf("Token with bad credentials: %v", err)
	}

	out := logs.String()
	for _, secret := range fa.allSecrets() {
		if strings.Contains(out, secret) {
			t.Fatalf("the logs contain a token or refresh token:\n%s", out)
		}
	}
	raw := rawRecord(t, rdb)
	for _, secret := range fa.allSecrets() {
		if strings.Contains(raw[fieldErr], secret) {
			t.Fatal("the stored error contains a token")
		}
	}
	for _, want := range []string{`"fp":"` + Fingerprint(t1.Value) + `"`, `"fp":"` + Fingerprint(t2.Value) + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the logs lack %s", want)
		}
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	fa := newFakeAuth(time.Hour)
	for name, opts := range map[string][]Option{
		"fraction 1":          {WithRefreshAt(1, 0)},
		"jitter too wide":     {WithRefreshAt(0.8, 0.3)},
		"zero lock TTL":       {WithLockTTL(0)},
		"short key":           {WithEncryptionKeys("A", map[string][]byte{"A": []byte("short")})},
		"unknown current":     {WithEncryptionKeys("B", map[string][]byte{"A": make([]byte, 32)})},
		"backoff max < first": {WithAuthBackoff(time.Hour, time.Minute)},
	} {
		if _, err := New(rdb, fa, opts...); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("New accepted nil dependencies")
	}
	s, err := New(rdb, fa)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if st := s.Status(); st.State != StateNone {
		t.Errorf("fresh source state = %q, want none", st.State)
	}
}

func dialFast(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rawRecord(t testing.TB, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	raw, err := rdb.HGetAll(context.Background(), "gw:token").Result()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// concurrentTokens runs n concurrent Token calls, fails the test on the first result check refuses,
// and returns the token of the first call.
func concurrentTokens(t *testing.T, s *Source, n int, check func(upstream.AccessToken, error) error) upstream.AccessToken {
	t.Helper()
	got := make([]upstream.AccessToken, n)
	errs := make([]error, n)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-begin
			got[i], errs[i] = s.Token(t.Context())
		})
	}
	close(begin)
	wg.Wait()
	for i := range n {
		if err := check(got[i], errs[i]); err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	return got[0]
}

// The lock holder re-reads Redis after taking the lock: when another replica stored a token between
// this one's read and its lock, it uses that token instead of calling the upstream.
func TestLockHolderRereadsBeforeCallingUpstream(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	a := newSource(t, rdb, fa)
	b := newSource(t, replica(t, rdb), fa)
	owner, ok, err := a.tryLock(t.Context())
	if err != nil || !ok {
		t.Fatalf("tryLock: %v, %v", ok, err)
	}
	set, err := fa.Login(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.obtained(t.Context(), set, "login", 0, true)

	got, err := a.renewHolding(t.Context(), owner, a.usable)
	if err != nil {
		t.Fatal(err)
	}
	if got.tok.Value != set.AccessToken {
		t.Error("the lock holder did not take the token stored meanwhile")
	}
	if n := fa.calls(); n != 1 {
		t.Errorf("upstream calls = %d, want 1 (the other replica's)", n)
	}
}

// A waiter is woken by the pub/sub notification, not by its poll: with a 30 s poll interval it
// still gets the token the other replica stores well before its 10 s context ends.
func TestWaiterWakesOnNotification(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	fa := newFakeAuth(time.Hour)
	started := make(chan struct{}, 1)
	fa.set(func(f *fakeAuth) { f.delay, f.started = 300*time.Millisecond, started })
	reg := prometheus.NewRegistry()
	a := newSource(t, rdb, fa, WithPollInterval(30*time.Second))
	b := newSource(t, replica(t, rdb), fa, WithPollInterval(30*time.Second), WithMetrics(reg))
	done := make(chan error, 1)
	go func() {
		_, err := a.Token(t.Context())
		done <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := b.Token(ctx); err != nil {
		t.Fatalf("waiting replica: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := fa.logins.Load(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if v := metricValue(t, reg, "token_lock_wait_seconds"); v != 1 {
		t.Errorf("token_lock_wait_seconds count = %v, want 1", v)
	}
}
