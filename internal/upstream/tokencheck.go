package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// tokenChecks confirms a 401 before the shared token is dropped. A 401 on one route may be that
// route's own refusal, and dropping the token costs the fleet a refresh or one of its five logins
// per 15 minutes: a caller repeating such a request must not be able to spend them. So a 401 is
// checked by asking the profile route with the same token; only a 401 there too drops it.
//
// One check per token generation on this replica: concurrent 401s share the check in flight, and
// a conclusive verdict (the profile route accepted or refused the token) is kept for that
// generation, so later 401s on it cost no upstream call. A "token accepted" verdict is kept for
// tokenCheckHold only: the upstream's auth window, so that checks cost at most one of the auth
// category's calls per window and replica, and a token revoked after such a verdict is still
// noticed, at the latest when the hold ends. An inconclusive check (no answer, a 429, a 5xx, the
// quota) keeps the token and is not kept.
type tokenChecks struct {
	flights singleflight.Group
	now     func() time.Time // nil: time.Now

	mu    sync.Mutex
	key   string    // tokenKey of the generation the verdict is about
	valid bool      // the verdict: the profile route accepted the token
	until time.Time // when a "valid" verdict ends
}

// tokenCheckHold is how long a "token accepted" verdict is kept: the upstream's auth window.
const tokenCheckHold = 15 * time.Minute

func (tc *tokenChecks) clock() time.Time {
	if tc.now != nil {
		return tc.now()
	}
	return time.Now()
}

// verdict is the kept verdict on the token of key, if any.
func (tc *tokenChecks) verdict(key string) (valid, known bool) {
	now := tc.clock()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.key != key || (tc.valid && !now.Before(tc.until)) {
		return false, false
	}
	return tc.valid, true
}

func (tc *tokenChecks) keep(key string, valid bool) {
	until := tc.clock().Add(tokenCheckHold)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.key, tc.valid, tc.until = key, valid, until
}

// tokenKey names one token of one generation.
func tokenKey(t AccessToken) string {
	sum := sha256.Sum256([]byte(t.Value))
	return strconv.FormatInt(t.Generation, 10) + ":" + hex.EncodeToString(sum[:])
}

// tokenRefused reports whether the upstream refuses tok itself, after route answered 401 to a
// request carrying it: the kept verdict for tok's generation, or one check with the profile route
// shared by every concurrent caller.
func (c *Client) tokenRefused(ctx context.Context, route string, tok AccessToken) bool {
	key := tokenKey(tok)
	if valid, known := c.checks.verdict(key); known {
		return !valid
	}
	// The check outlives a caller that gives up, so that its verdict is kept for the others;
	// send bounds it with the attempt timeout and the retry policy.
	ch := c.checks.flights.DoChan(key, func() (any, error) {
		if valid, known := c.checks.verdict(key); known { // a check that ended since the look above
			return !valid, nil
		}
		return c.checkToken(context.WithoutCancel(ctx), route, tok, key), nil
	})
	select {
	case r := <-ch:
		return r.Val.(bool)
	case <-ctx.Done():
		return false
	}
}

// checkToken asks the profile route with tok and keeps a conclusive verdict. Only a 401 that is
// not about the API key means the token is refused.
func (c *Client) checkToken(ctx context.Context, route string, tok AccessToken, key string) bool {
	probe := &call{method: http.MethodGet, route: routeProfile, path: routeProfile, category: CategoryAuth, bearer: true}
	ans, err := c.send(ctx, probe, tok.Value)
	fp := fingerprint(tok.Value)
	switch {
	case err != nil:
		c.log.WarnContext(ctx, "a 401 could not be confirmed with the profile route; keeping the token",
			"route", route, "token", fp, "generation", tok.Generation, "error", err.Error())
		return false
	case ans.status == http.StatusUnauthorized && !apiKeyRejected(ans.body):
		c.checks.keep(key, false)
		c.log.InfoContext(ctx, "the profile route confirms the upstream refuses the access token",
			"route", route, "token", fp, "generation", tok.Generation)
		return true
	case ans.ok():
		c.checks.keep(key, true)
		c.log.WarnContext(ctx, "upstream answered 401 on a route but accepts the access token; keeping it",
			"route", route, "token", fp, "generation", tok.Generation)
		return false
	default:
		c.log.WarnContext(ctx, "a 401 could not be confirmed with the profile route; keeping the token",
			"route", route, "token", fp, "generation", tok.Generation, "status", ans.status)
		return false
	}
}
