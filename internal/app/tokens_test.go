package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/tokens"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const sessionPath = "/v1/sessions/demo_session"

// requestSeq numbers requests so that each one asks for a page no other asked for.
var requestSeq atomic.Int64

func nextUncached() string { return uncachedPath(int(requestSeq.Add(1))) }

// TestColdStartOneLogin: 500 concurrent requests on a cold start cause exactly one login.
func TestColdStartOneLogin(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)

	answers := burstPaths(t, []*gateway{g}, 500, uncachedPath)
	if got := statuses(answers); got[http.StatusOK] != 500 {
		t.Fatalf("answers by status = %v, want 500 x 200; first: %+v", got, firstNot(answers, 200))
	}
	c := s.Counters()
	if c.Logins != 1 || c.LoginFailures != 0 || c.Refreshes != 0 {
		t.Errorf("logins = %d (failures %d, refreshes %d), want exactly 1", c.Logins, c.LoginFailures, c.Refreshes)
	}
}

// TestFleetOneLogin: three replicas (separate HTTP servers and Redis clients) on one Redis, 300
// concurrent requests spread over them: exactly one login in total.
func TestFleetOneLogin(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	redisURL := redistest.URL(t)
	var fleet []*gateway
	for range 3 {
		fleet = append(fleet, startGateway(t, simURL, creds, redisURL, nil))
	}
	answers := burstPaths(t, fleet, 300, uncachedPath)
	if got := statuses(answers); got[http.StatusOK] != 300 {
		t.Fatalf("answers by status = %v; first: %+v", got, firstNot(answers, 200))
	}
	if c := s.Counters(); c.Logins != 1 || c.Refreshes != 0 {
		t.Errorf("logins = %d, refreshes = %d across three replicas, want 1 and 0", c.Logins, c.Refreshes)
	}
	// All three replicas hold the same token generation.
	gens := map[int64]bool{}
	for _, g := range fleet {
		gens[g.app.Tokens.Status().Generation] = true
	}
	if len(gens) != 1 {
		t.Errorf("replicas hold different token generations: %v", gens)
	}
}

// TestShortLivedTokens: tokens living 2 s and 10 s of steady traffic on two replicas: no caller
// sees an error, and the token is renewed by refresh, not by logging in again.
func TestShortLivedTokens(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("10 s of traffic")
	}
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{TokenLifetime: 2 * time.Second, RotateRefreshTokens: true})
	redisURL := redistest.URL(t)
	fleet := []*gateway{
		startGateway(t, simURL, creds, redisURL, nil),
		startGateway(t, simURL, creds, redisURL, nil),
	}
	var failures, total atomic.Int64
	var firstFailure atomic.Value
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				a := fleet[w%2].get(t, nextUncached())
				total.Add(1)
				if a.status != http.StatusOK {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, a.body)
				}
				time.Sleep(20 * time.Millisecond) // paces the callers over the 10 s
			}
		})
	}
	wg.Wait()
	c := s.Counters()
	t.Logf("%d requests over 10 s; upstream logins %d, refreshes %d (failed %d)", total.Load(), c.Logins, c.Refreshes, c.RefreshFailures)
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %v", failures.Load(), total.Load(), firstFailure.Load())
	}
	if c.Logins != 1 {
		t.Errorf("logins = %d, want 1 (renewals must use the refresh token)", c.Logins)
	}
	if c.Refreshes < 3 || c.RefreshFailures != 0 {
		t.Errorf("refreshes = %d (failed %d), want >= 3 successful refreshes of 2 s tokens in 10 s", c.Refreshes, c.RefreshFailures)
	}
}

// TestRevokedTokensOneReauth: the simulator revokes every token; callers still get 200 and the
// fleet re-authenticates exactly once.
func TestRevokedTokensOneReauth(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	redisURL := redistest.URL(t)
	fleet := []*gateway{
		startGateway(t, simURL, creds, redisURL, nil),
		startGateway(t, simURL, creds, redisURL, nil),
	}
	if a := fleet[0].get(t, sessionPath); a.status != http.StatusOK {
		t.Fatalf("warm-up = %d %s", a.status, a.body)
	}
	before := s.Counters()
	s.RevokeAllTokens()

	answers := burstPaths(t, fleet, 100, func(int) string { return nextUncached() })
	if got := statuses(answers); got[http.StatusOK] != 100 {
		t.Fatalf("after revocation: answers by status = %v; first: %+v", got, firstNot(answers, 200))
	}
	after := s.Counters()
	reauth := (after.Logins - before.Logins) + (after.Refreshes - before.Refreshes)
	if reauth != 1 {
		t.Errorf("re-authentications = %d (logins +%d, refreshes +%d), want exactly 1",
			reauth, after.Logins-before.Logins, after.Refreshes-before.Refreshes)
	}
}

// TestWrongPasswordFailsFast: with a wrong password callers get 502 UPSTREAM_AUTH_FAILED, the
// upstream sees at most 2 login attempts per minute, and the detailed readiness is 503 saying why
// (the public /readyz stays ready: every replica shares the credentials).
func TestWrongPasswordFailsFast(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	wrong := creds
	wrong.password = "wrong-" + creds.password
	g := startGateway(t, simURL, wrong, redistest.URL(t), nil)

	var took []time.Duration
	for round := range 3 {
		answers := burstPaths(t, []*gateway{g}, 50, func(int) string { return nextUncached() })
		for _, a := range answers {
			if a.status != http.StatusBadGateway || !strings.Contains(a.body, `"code":"UPSTREAM_AUTH_FAILED"`) {
				t.Fatalf("round %d: answer %d %s, want 502 UPSTREAM_AUTH_FAILED", round, a.status, a.body)
			}
			if round > 0 {
				took = append(took, a.took)
			}
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("after the first refusal: %d answers, p50 %s, p99 %s, max %s (reported, not asserted)",
		len(took), took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
	if c := s.Counters(); c.Logins+c.LoginFailures > 2 {
		t.Errorf("upstream saw %d login attempts within the test's first seconds, want at most 2", c.Logins+c.LoginFailures)
	}
	a := g.adminGet(t, "/readyz")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "rejected the gateway credentials") {
		t.Errorf("admin /readyz = %d %s, want 503 naming the credentials", a.status, a.body)
	}
	assertNoSecrets(t, a.body, creds)
	if a := g.get(t, "/readyz"); a.status != http.StatusOK {
		t.Errorf("public /readyz = %d %s, want 200: a shared dependency does not take replicas out of rotation", a.status, a.body)
	}
}

// TestRedisOutage: Redis stops mid-run. Callers keep being served from the in-memory token, no
// login storm, never a "bad credentials" state; when Redis returns, the gateway recovers.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	rs := redistest.Start(t)
	g := startGateway(t, simURL, creds, rs.URL(), nil)
	if a := g.get(t, sessionPath); a.status != http.StatusOK {
		t.Fatalf("warm-up = %d %s", a.status, a.body)
	}

	rs.Stop()
	answers := burstPaths(t, []*gateway{g}, 100, func(int) string { return nextUncached() })
	if got := statuses(answers); got[http.StatusOK] != 100 {
		t.Errorf("during the outage: answers by status = %v; first: %+v", got, firstNot(answers, 200))
	}
	if st := g.app.Tokens.Status(); st.State == tokens.StateAuthFailed {
		t.Errorf("token state during the outage = %s", st.State)
	}
	if a := g.adminGet(t, "/readyz"); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `"degraded"`) ||
		!strings.Contains(a.body, `"redis":{"ok":false`) {
		t.Errorf("admin /readyz during the outage = %d %s, want 503 degraded naming redis", a.status, a.body)
	}
	if a := g.get(t, "/readyz"); a.status != http.StatusOK || strings.TrimSpace(a.body) != `{"status":"ready"}` {
		t.Errorf("public /readyz during the outage = %d %s, want 200 ready: the replica stays in rotation", a.status, a.body)
	}
	if c := s.Counters(); c.Logins != 1 || c.LoginFailures != 0 {
		t.Errorf("logins during the outage = %d (failures %d), want the 1 of the warm-up", c.Logins, c.LoginFailures)
	}

	rs.Restart(t)
	wait.Until(t, 15*time.Second, "admin /readyz back to 200 after Redis returns", func() bool {
		return g.adminGet(t, "/readyz").status == http.StatusOK
	})
	if a := g.get(t, nextUncached()); a.status != http.StatusOK {
		t.Errorf("after recovery = %d %s", a.status, a.body)
	}
	if st := g.app.Tokens.Status(); st.State == tokens.StateAuthFailed {
		t.Errorf("token state after recovery = %s", st.State)
	}
	if c := s.Counters(); c.Logins > 2 {
		t.Errorf("logins = %d, want no storm (at most one more after the restart)", c.Logins)
	}
}

// TestTokenEncryptedAtRest: with TOKEN_ENCRYPTION_KEY set, no Redis value holds the token.
func TestTokenEncryptedAtRest(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	_, simURL := startSim(t, creds, sim.Options{})
	redisURL := redistest.URL(t)
	key := base64.StdEncoding.EncodeToString([]byte(randHex(16)))
	g := startGateway(t, simURL, creds, redisURL, map[string]string{"TOKEN_ENCRYPTION_KEY": key})
	if a := g.get(t, sessionPath); a.status != http.StatusOK {
		t.Fatalf("request = %d %s", a.status, a.body)
	}
	tok, err := g.app.Tokens.Token(context.Background())
	if err != nil || tok.Value == "" {
		t.Fatalf("token: %v", err)
	}
	opts, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no keys in Redis: %v", err)
	}
	checked := 0
	for _, k := range keys {
		var values []string
		switch rdb.Type(ctx, k).Val() {
		case "string":
			values = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				values = append(values, f, v)
			}
		}
		for _, v := range values {
			checked++
			if strings.Contains(v, tok.Value) || strings.Contains(v, tok.Value[len(tok.Value)-20:]) {
				t.Errorf("Redis key %s holds the plaintext token", k)
			}
		}
	}
	if checked == 0 {
		t.Error("no value checked")
	}
	if !g.app.Tokens.Encrypted() {
		t.Error("token source reports no encryption")
	}
}

// TestBreakerBoundsUpstreamCalls: the upstream answers 503 to everything; the breaker opens after
// a few failures and from then on callers get 503 with Retry-After and the upstream sees nothing,
// however many callers keep trying.
func TestBreakerBoundsUpstreamCalls(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil,
		app.WithUpstreamOptions(upstream.WithRetry(2, 10*time.Millisecond, 50*time.Millisecond),
			upstream.WithBreaker(5, time.Minute)))
	if a := g.get(t, sessionPath); a.status != http.StatusOK {
		t.Fatalf("warm-up = %d %s", a.status, a.body)
	}
	s.ResetCounters()
	s.SetFaults(sim.Faults{AllStatus: http.StatusServiceUnavailable})
	upstreamCalls := func() int64 {
		var n int64
		for _, c := range s.Counters().Requests {
			n += c
		}
		return n
	}

	// Sequential callers until the breaker opens: 5 failed calls of 2 attempts at most.
	opened := 0
	for i := range 20 {
		a := g.get(t, nextUncached())
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("answer %d = %d %s, want 503", i, a.status, a.body)
		}
		if g.app.Upstream.BreakerState() == "open" {
			opened = i + 1
			break
		}
	}
	beforeOpen := upstreamCalls()
	if opened == 0 || beforeOpen > 10 {
		t.Fatalf("breaker %s after %d callers and %d upstream calls, want open within 5 failures (10 attempts)",
			g.app.Upstream.BreakerState(), opened, beforeOpen)
	}

	// Then 200 concurrent callers: all answered 503 with Retry-After, none reaches the upstream.
	answers := burstPaths(t, []*gateway{g}, 200, func(int) string { return nextUncached() })
	if got := statuses(answers); got[http.StatusServiceUnavailable] != len(answers) {
		t.Errorf("answers by status = %v, want all 503", got)
	}
	for _, a := range answers {
		if a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "UPSTREAM_UNAVAILABLE") {
			t.Fatalf("answer without Retry-After or code: %d %v %s", a.status, a.header, a.body)
		}
	}
	t.Logf("breaker opened after %d callers / %d upstream calls; 200 more callers added %d upstream calls",
		opened, beforeOpen, upstreamCalls()-beforeOpen)
	if extra := upstreamCalls() - beforeOpen; extra != 0 {
		t.Errorf("upstream saw %d calls while the breaker was open", extra)
	}
	a := g.adminGet(t, "/readyz")
	var rs struct {
		Checks map[string]struct {
			OK bool `json:"ok"`
		} `json:"checks"`
	}
	_ = json.Unmarshal([]byte(a.body), &rs)
	if a.status != http.StatusServiceUnavailable || rs.Checks["upstream_breaker"].OK {
		t.Errorf("admin /readyz with the breaker open = %d %s", a.status, a.body)
	}
	if a := g.get(t, "/readyz"); a.status != http.StatusOK {
		t.Errorf("public /readyz with the breaker open = %d %s, want 200", a.status, a.body)
	}
}

func firstNot(as []answer, status int) answer {
	for _, a := range as {
		if a.status != status {
			return a
		}
	}
	return answer{}
}

// TestRouteUnauthorizedBurnsNoLogin: a token the upstream really revoked is replaced exactly once
// for the fleet; then the upstream answers 401 on one relayed route while the new token is valid
// (the simulator's injected fault). However many callers repeat that request on two replicas, no
// login or refresh happens and the token stays; each replica confirms with the profile route at
// most once.
func TestRouteUnauthorizedBurnsNoLogin(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	redisURL := redistest.URL(t)
	fleet := []*gateway{
		startGateway(t, simURL, creds, redisURL, nil),
		startGateway(t, simURL, creds, redisURL, nil),
	}
	for _, g := range fleet {
		if a := g.get(t, "/api/sessions"); a.status != http.StatusOK {
			t.Fatalf("warm-up = %d %s", a.status, a.body)
		}
	}
	contacts := func(i int) string { return fmt.Sprintf("/api/contacts/demo_session?limit=1&page=%d", i+1) }

	// A real revocation: the token is replaced exactly once for the fleet, and callers get 200.
	before := s.Counters()
	s.RevokeAllTokens()
	answers := burstPaths(t, fleet, 100, contacts)
	if got := statuses(answers); got[http.StatusOK] != 100 {
		t.Fatalf("after revocation: answers by status = %v; first: %+v", got, firstNot(answers, 200))
	}
	after := s.Counters()
	if reauth := (after.Logins - before.Logins) + (after.Refreshes - before.Refreshes); reauth != 1 {
		t.Errorf("re-authentications after a revocation = %d (logins +%d, refreshes +%d), want exactly 1",
			reauth, after.Logins-before.Logins, after.Refreshes-before.Refreshes)
	}

	// Route-specific 401s on the new, valid token.
	gen := fleet[0].app.Tokens.Status().Generation
	before = s.Counters()
	s.SetFaults(sim.Faults{RouteStatus: map[string]int{"GET /api/contacts/{sessionId}": http.StatusUnauthorized}})
	answers = burstPaths(t, fleet, 100, func(i int) string { return contacts(1000 + i) })
	for i := range 20 {
		answers = append(answers, fleet[i%2].get(t, contacts(2000+i)))
	}
	if got := statuses(answers); got[http.StatusOK] != 0 || got[-1] != 0 {
		t.Fatalf("answers by status = %v, want every one refused", got)
	}
	after = s.Counters()
	if l, r := after.Logins+after.LoginFailures-before.Logins-before.LoginFailures,
		after.Refreshes+after.RefreshFailures-before.Refreshes-before.RefreshFailures; l != 0 || r != 0 {
		t.Errorf("route-specific 401s caused %d logins and %d refreshes, want none", l, r)
	}
	if checks := after.Requests["GET /api/auth/profile"] - before.Requests["GET /api/auth/profile"]; checks < 1 || checks > int64(len(fleet)) {
		t.Errorf("%d profile checks, want 1 to %d (at most one per replica for the generation)", checks, len(fleet))
	}
	for _, g := range fleet {
		if st := g.app.Tokens.Status(); st.Generation != gen || st.State != tokens.StateValid {
			t.Errorf("token after route 401s: generation %d (was %d), state %s", st.Generation, gen, st.State)
		}
	}
	if a := fleet[1].get(t, "/api/sessions"); a.status != http.StatusOK {
		t.Fatalf("another route after the 401s = %d %s", a.status, a.body)
	}
}
