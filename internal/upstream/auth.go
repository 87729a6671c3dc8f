package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Routes of the auth resource and of health.
const (
	routeLogin   = "/api/auth/login"
	routeRefresh = "/api/auth/refresh-token"
	routeProfile = "/api/auth/profile"
	routeHealth  = "/health"
)

// tokenData is the data of a login or refresh answer; some deployments nest the tokens in "tokens".
type tokenData struct {
	AccessToken  flexString   `json:"accessToken"`
	RefreshToken flexString   `json:"refreshToken"`
	ExpiresIn    flexDuration `json:"expiresIn"`
	Tokens       *struct {
		AccessToken  flexString   `json:"accessToken"`
		RefreshToken flexString   `json:"refreshToken"`
		ExpiresIn    flexDuration `json:"expiresIn"`
	} `json:"tokens"`
}

func (d tokenData) set() TokenSet {
	ts := TokenSet{AccessToken: string(d.AccessToken), RefreshToken: string(d.RefreshToken), ExpiresIn: string(d.ExpiresIn)}
	if ts.AccessToken == "" && d.Tokens != nil {
		ts = TokenSet{AccessToken: string(d.Tokens.AccessToken), RefreshToken: string(d.Tokens.RefreshToken),
			ExpiresIn: string(d.Tokens.ExpiresIn)}
	}
	return ts
}

// Login signs in with the identifier and password (POST /api/auth/login, quota category auth).
// Rejected credentials (401 or 403), or credentials not configured, give an error matching
// ErrAuthFailed. A login is never retried automatically, except after a dial failure (the request
// never left): the upstream allows 5 logins per 15 minutes.
func (c *Client) Login(ctx context.Context) (TokenSet, error) {
	cl := &call{method: http.MethodPost, route: routeLogin, path: routeLogin, category: CategoryAuth, login: true}
	if c.creds.Identifier == "" || c.creds.Password == "" {
		return TokenSet{}, fmt.Errorf("upstream: login: identifier or password not configured: %w", ErrAuthFailed)
	}
	cl.body, _ = json.Marshal(map[string]string{"identifier": c.creds.Identifier, "password": c.creds.Password})
	var d tokenData
	if err := c.do(ctx, cl, &d); err != nil {
		return TokenSet{}, err
	}
	ts := d.set()
	if ts.AccessToken == "" {
		return TokenSet{}, badResponse(cl, http.StatusOK, "the answer carries no access token")
	}
	return ts, nil
}

// RefreshToken exchanges a refresh token for a new access token (POST /api/auth/refresh-token,
// quota category auth, no bearer token). The answer may lack a new refresh token and expiresIn;
// those fields are then empty. A 401 gives an error matching ErrUnauthorized (the caller falls back
// to Login).
func (c *Client) RefreshToken(ctx context.Context, refreshToken string) (TokenSet, error) {
	cl := &call{method: http.MethodPost, route: routeRefresh, path: routeRefresh, category: CategoryAuth,
		secrets: []string{refreshToken}}
	if refreshToken == "" {
		return TokenSet{}, fmt.Errorf("upstream: refresh: no refresh token: %w", ErrUnauthorized)
	}
	cl.body, _ = json.Marshal(map[string]string{"refreshToken": refreshToken})
	var d tokenData
	if err := c.do(ctx, cl, &d); err != nil {
		return TokenSet{}, err
	}
	ts := d.set()
	if ts.AccessToken == "" {
		return TokenSet{}, badResponse(cl, http.StatusOK, "the answer carries no access token")
	}
	return ts, nil
}

// Profile returns the account the gateway is signed in as (GET /api/auth/profile, bearer token,
// quota category auth).
func (c *Client) Profile(ctx context.Context) (User, error) {
	cl := &call{method: http.MethodGet, route: routeProfile, path: routeProfile, category: CategoryAuth, bearer: true}
	var raw json.RawMessage
	if err := c.do(ctx, cl, &raw); err != nil {
		return User{}, err
	}
	var u User
	if err := unmarshalWrapped(raw, "user", &u); err != nil {
		return User{}, badResponse(cl, http.StatusOK, "the user is not the documented JSON")
	}
	return u, nil
}

// Health asks GET /health (no authentication). It passes the circuit breaker but not the quota:
// /health is outside /api, where the upstream's rate limits apply.
func (c *Client) Health(ctx context.Context) (Health, error) {
	cl := &call{method: http.MethodGet, route: routeHealth, path: routeHealth}
	ans, err := c.exec(ctx, cl)
	if err != nil {
		return Health{}, err
	}
	var h Health
	if err := json.Unmarshal(ans.body, &h); err != nil {
		return Health{}, badResponse(cl, ans.status, "the body is not the documented JSON")
	}
	return h, nil
}

// Probe asks GET /health once, outside the breaker, the quota and the retries, and reports
// whether the upstream answered as a healthy upstream does (2xx with the documented JSON). It is
// how an open breaker learns that the outage is over (see CloseBreaker); it sends no credential
// but the API key header every request carries, and spends no WhatsApp quota.
func (c *Client) Probe(ctx context.Context) error {
	cl := &call{method: http.MethodGet, route: routeHealth, path: routeHealth}
	start := time.Now()
	ans, err := c.attempt(ctx, cl, "")
	c.metrics.attempt(cl.route, cl.method, statusLabel(ans, err), time.Since(start))
	if err != nil {
		return err
	}
	if !ans.ok() {
		return c.answerError(cl, ans)
	}
	var h Health
	if err := json.Unmarshal(ans.body, &h); err != nil {
		return badResponse(cl, ans.status, "the body is not the documented JSON")
	}
	return nil
}

// unmarshalWrapped decodes data into out, whether the object is data itself or data[key].
func unmarshalWrapped(data json.RawMessage, key string, out any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	if inner, ok := m[key]; ok && !isNull(inner) && len(inner) > 0 && inner[0] == '{' {
		return json.Unmarshal(inner, out)
	}
	return json.Unmarshal(data, out)
}
