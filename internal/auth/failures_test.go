package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// throttledRouter is a router whose /v1 routes authenticate with f's keys and tokens behind the
// failure throttle th; X-Forwarded-For is believed from no one, as with GATEWAY_TRUSTED_PROXIES
// unset.
func throttledRouter(t *testing.T, f *fixture, th *FailureThrottle, logs *syncBuffer) *gin.Engine {
	t.Helper()
	o := f.hsOptions()
	o.Throttle = th
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := router(logs, nil, a.Middleware())
	if err := r.SetTrustedProxies(nil); err != nil {
		t.Fatal(err)
	}
	return r
}

// doFrom sends one request from the client address remote ("ip:port").
func doFrom(h http.Handler, remote string, headers map[string][]string) answer {
	req := httptest.NewRequest(http.MethodGet, "/v1/whoami", nil)
	req.RemoteAddr = remote
	for k, vs := range headers {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// checkLockedOut holds a to the lock-out answer: 429 problem, Retry-After of about want, and
// nothing of the credentials sent.
func checkLockedOut(t *testing.T, a answer, want time.Duration, secrets ...string) {
	t.Helper()
	d := problemOf(t, a, http.StatusTooManyRequests, problem.CodeRateLimited)
	retry, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || time.Duration(retry)*time.Second > want+time.Second || time.Duration(retry)*time.Second < want-10*time.Second {
		t.Errorf("Retry-After %q, want about %v", a.header.Get("Retry-After"), want)
	}
	if d.RetryAfter != retry || !strings.Contains(d.Detail, "failed authentications") {
		t.Errorf("problem %+v", d)
	}
	if l := leaks(a.body+strings.Join(a.header.Values("WWW-Authenticate"), " "), secrets...); l != nil {
		t.Errorf("the 429 repeats a credential")
	}
}

// TestFailureThrottleLocksOutAGuesser: with real Redis, an address that fails authentication
// more often than the rate is locked out, good key or not, fleet-wide; other addresses, and
// requests that present no credential, are not affected; X-Forwarded-For from an untrusted peer
// does not move the guesser to another address; an IPv6 guesser is counted by its /64.
func TestFailureThrottleLocksOutAGuesser(t *testing.T) {
	f := newFixture(t)
	rdb := redistest.New(t)
	rdb2 := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = rdb2.Close() })
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	rate := quota.Rate{N: 3, Per: time.Hour} // one failure back every 20 minutes
	r := throttledRouter(t, f, NewFailureThrottle(rdb, rate, FailureThrottleOptions{Registerer: reg, Logger: newLogger(logs)}), logs)
	other := throttledRouter(t, f, NewFailureThrottle(rdb2, rate, FailureThrottleOptions{}), &syncBuffer{})

	const guesser, neighbour = "198.51.100.7:4000", "198.51.100.8:4000"
	good, wrong := hdr("X-API-Key", f.readKey), func() map[string][]string { return hdr("X-API-Key", "crm_"+randomHex(t, 24)) }
	// Requests without a credential are no guesses.
	for range 5 {
		problemOf(t, doFrom(r, guesser, nil), http.StatusUnauthorized, problem.CodeUnauthenticated)
	}
	for i := range 3 {
		if a := doFrom(r, guesser, wrong()); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, a.status)
		}
	}
	// Also a bad token counts: the fourth failure-to-be is not even checked.
	badToken := "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(randomHex(t, 32)), claims())
	checkLockedOut(t, doFrom(r, guesser, hdr("Authorization", badToken)), 20*time.Minute, badToken)
	checkLockedOut(t, doFrom(r, guesser, wrong()), 20*time.Minute)
	// The good key from the locked-out address: refused as well, here and on another replica.
	checkLockedOut(t, doFrom(r, guesser, good), 20*time.Minute, f.readKey)
	checkLockedOut(t, doFrom(other, guesser, good), 20*time.Minute, f.readKey)
	// A forged X-Forwarded-For from an untrusted peer changes nothing.
	spoofed := hdr("X-API-Key", f.readKey, "X-Forwarded-For", "203.0.113.99")
	checkLockedOut(t, doFrom(r, guesser, spoofed), 20*time.Minute, f.readKey)
	// Another address is not locked out.
	if a := doFrom(other, neighbour, good); a.status != http.StatusOK {
		t.Errorf("another address with the good key: %d, want 200", a.status)
	}
	if got := metricValue(t, reg, "auth_throttled_total", nil); got != 4 {
		t.Errorf("auth_throttled_total = %v, want 4", got)
	}
	if l := leaks(logs.String(), f.readKey, badToken[len("Bearer "):]); l != nil {
		t.Error("the log holds a credential")
	}

	// IPv6: another address of the guesser's /64 is the same guesser; another /64 is not.
	for i := range 3 {
		if a := doFrom(r, "[2001:db8:1:2::1]:4000", wrong()); a.status != http.StatusUnauthorized {
			t.Fatalf("IPv6 wrong key %d: %d, want 401", i+1, a.status)
		}
	}
	checkLockedOut(t, doFrom(r, "[2001:db8:1:2:ffff::9]:4000", good), 20*time.Minute, f.readKey)
	if a := doFrom(r, "[2001:db8:1:3::1]:4000", good); a.status != http.StatusOK {
		t.Errorf("another /64 with the good key: %d, want 200", a.status)
	}
}

// TestFailureThrottleWithoutRedis: with Redis unreachable, the replica counts failures on its own
// at the same rate, and says so in the log once.
func TestFailureThrottleWithoutRedis(t *testing.T) {
	f := newFixture(t)
	rdb := deadRedis()
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	r := throttledRouter(t, f, NewFailureThrottle(rdb, quota.Rate{N: 2, Per: time.Minute}, FailureThrottleOptions{Registerer: reg, Logger: newLogger(logs)}), logs)
	const guesser = "198.51.100.7:4000"
	for i := range 2 {
		if a := doFrom(r, guesser, hdr("X-API-Key", "crm_"+randomHex(t, 24))); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d with Redis down: %d, want 401", i+1, a.status)
		}
	}
	checkLockedOut(t, doFrom(r, guesser, hdr("X-API-Key", f.readKey)), 30*time.Second, f.readKey)
	if a := doFrom(r, "198.51.100.8:4000", hdr("X-API-Key", f.readKey)); a.status != http.StatusOK {
		t.Errorf("another address with Redis down: %d, want 200", a.status)
	}
	if n := strings.Count(logs.String(), "Redis failed"); n != 1 {
		t.Errorf("%d warnings about Redis, want 1:\n%s", n, logs.String())
	}
	if got := metricValue(t, reg, "auth_throttle_errors_total", nil); got < 4 {
		t.Errorf("auth_throttle_errors_total = %v, want every decision counted", got)
	}
}

// TestFailureThrottleRedisOutageAndReturn: counts move to the replica while Redis is stopped and
// back to Redis when it answers again.
func TestFailureThrottleRedisOutageAndReturn(t *testing.T) {
	f := newFixture(t)
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	defer rdb.Close()
	logs := &syncBuffer{}
	r := throttledRouter(t, f, NewFailureThrottle(rdb, quota.Rate{N: 2, Per: time.Hour}, FailureThrottleOptions{Logger: newLogger(logs)}), logs)
	const guesser = "198.51.100.7:4000"
	wrong := func() map[string][]string { return hdr("X-API-Key", "crm_"+randomHex(t, 24)) }
	if a := doFrom(r, guesser, wrong()); a.status != http.StatusUnauthorized {
		t.Fatalf("first failure: %d", a.status)
	}
	srv.Stop()
	for i := range 2 {
		if a := doFrom(r, guesser, wrong()); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d with Redis down (a fresh local count): %d, want 401", i+1, a.status)
		}
	}
	checkLockedOut(t, doFrom(r, guesser, wrong()), 30*time.Minute)
	// Back on Redis (restarted empty) from another address: the local lock-out of the guesser
	// stays until it ends; the new address is counted in Redis again.
	srv.Restart(t)
	const second = "198.51.100.9:4000"
	wait.UntilShowing(t, 5*time.Second, "Redis used again after it came back", func() bool {
		if strings.Contains(logs.String(), "Redis is back") {
			return true
		}
		doFrom(r, second, hdr("X-API-Key", f.readKey))
		return false
	}, logs.String)
	checkLockedOut(t, doFrom(r, guesser, hdr("X-API-Key", f.readKey)), 30*time.Minute, f.readKey)
	for i := range 2 {
		if a := doFrom(r, second, wrong()); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d after Redis came back: %d, want 401", i+1, a.status)
		}
	}
	checkLockedOut(t, doFrom(r, second, hdr("X-API-Key", f.readKey)), 30*time.Minute, f.readKey)
	if n, err := rdb.Exists(t.Context(), DefaultFailureKeyPrefix+"198.51.100.9").Result(); err != nil || n != 1 {
		t.Errorf("the second address's count is not in Redis: %d, %v", n, err)
	}
}

// TestFailureThrottleOff: rate 0 throttles nothing and never asks Redis.
func TestFailureThrottleOff(t *testing.T) {
	f := newFixture(t)
	rdb := deadRedis()
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	r := throttledRouter(t, f, NewFailureThrottle(rdb, quota.Rate{}, FailureThrottleOptions{Registerer: reg}), &syncBuffer{})
	for i := range 20 {
		if a := doFrom(r, "198.51.100.7:4000", hdr("X-API-Key", "crm_"+randomHex(t, 24))); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d with the throttle off: %d, want 401", i+1, a.status)
		}
	}
	if a := doFrom(r, "198.51.100.7:4000", hdr("X-API-Key", f.readKey)); a.status != http.StatusOK {
		t.Errorf("good key with the throttle off: %d", a.status)
	}
	if got := metricValue(t, reg, "auth_throttle_errors_total", nil); got != 0 {
		t.Errorf("rate 0 asked Redis (%v errors)", got)
	}
}

// scriptCalls counts the Lua script calls (EVALSHA and EVAL) a Redis client sends.
type scriptCalls struct{ n atomic.Int64 }

func (s *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := strings.ToLower(cmd.Name()); n == "evalsha" || n == "eval" {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestFailureThrottleRemembersNotLocked: once Redis has said an address is not locked out, the
// replica admits it for ClearMemory without asking again (the hot path of a good caller costs no
// round trip); but a failure this replica counts makes the next request ask, so that an address
// that has just used its budget here is refused at once, good key or not.
func TestFailureThrottleRemembersNotLocked(t *testing.T) {
	f := newFixture(t)
	rdb := redistest.New(t)
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	r := throttledRouter(t, f, NewFailureThrottle(rdb, quota.Rate{N: 3, Per: time.Hour}, FailureThrottleOptions{}), &syncBuffer{})
	const caller = "198.51.100.7:4000"
	good := hdr("X-API-Key", f.readKey)
	if a := doFrom(r, caller, good); a.status != http.StatusOK {
		t.Fatalf("good key: %d", a.status)
	}
	asked := calls.n.Load()
	for range 20 {
		if a := doFrom(r, caller, good); a.status != http.StatusOK {
			t.Fatalf("good key again: %d", a.status)
		}
	}
	// Asking once per request (20) is what remembering saves; a loaded machine that spends more
	// than ClearMemory on some of the requests may ask again now and then.
	if n := calls.n.Load() - asked; n >= 10 {
		t.Errorf("%d Redis round trips for 20 requests of a known not-locked address, want far fewer", n)
	}
	for i := range 3 {
		if a := doFrom(r, caller, hdr("X-API-Key", "crm_"+randomHex(t, 24))); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, a.status)
		}
	}
	// The budget is used: refused at once, although "not locked" was remembered moments ago.
	checkLockedOut(t, doFrom(r, caller, good), 20*time.Minute, f.readKey)
	checkLockedOut(t, doFrom(r, caller, hdr("X-API-Key", "crm_"+randomHex(t, 24))), 20*time.Minute)
}
