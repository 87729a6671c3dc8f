// Package upstream is the one client of the Inbox Hub WhatsApp API (see docs/upstream.md).
//
// Every call goes through one pipeline: a circuit breaker (checked first, so that an open breaker
// spends no quota), the shared quota (Limiter), a per-attempt timeout, retries of idempotent
// requests with backoff and jitter, credentials injection (X-API-Key always, a bearer token when a
// TokenSource is configured), one retry with a fresh token after a 401 that the profile route
// confirms is about the token (one check per token generation, tokencheck.go), and the
// translation of error answers into *Error values that match the sentinel errors of contract.go
// with errors.Is.
//
// No credential, token or request body ever appears in an error string or a log line.
//
// It owns the wire format of Inbox Hub (routes, envelopes, the tolerant decoding of its answers,
// the mapping between the two session ids) and the call pipeline. It must not repeat a request
// that may have reached the upstream unless the request is idempotent (a send is never sent
// twice), follow redirects, cache answers, or know about the gateway's callers, the CRM or Redis:
// the quota and the token come in through the Limiter and TokenSource interfaces.
package upstream

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/inboxhub-gateway/gateway/internal/noredirect"
)

// Defaults of the options.
const (
	DefaultTimeout         = 15 * time.Second
	DefaultMaxAttempts     = 3
	DefaultRetryBase       = 250 * time.Millisecond
	DefaultRetryCap        = 5 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 30 * time.Second
	DefaultMaxBodyBytes    = 8 << 20
)

// Credentials are the gateway's upstream credentials. They print masked with fmt (%v, %+v, %#v),
// slog and encoding/json, so that a stray log line cannot leak them.
type Credentials struct {
	Identifier string
	Password   string
	APIKey     string
}

func maskSecret(s string) string {
	if s == "" {
		return "<unset>"
	}
	return "<redacted>"
}

// String prints the credentials masked.
func (c Credentials) String() string {
	return "upstream.Credentials{Identifier:" + maskSecret(c.Identifier) +
		", Password:" + maskSecret(c.Password) + ", APIKey:" + maskSecret(c.APIKey) + "}"
}

// GoString prints the credentials masked for %#v.
func (c Credentials) GoString() string { return c.String() }

// LogValue prints the credentials masked in slog records.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("identifier", maskSecret(c.Identifier)),
		slog.String("password", maskSecret(c.Password)),
		slog.String("apiKey", maskSecret(c.APIKey)),
	)
}

// MarshalJSON encodes the credentials masked.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"identifier": maskSecret(c.Identifier),
		"password":   maskSecret(c.Password),
		"apiKey":     maskSecret(c.APIKey),
	})
}

// Option configures a Client.
type Option func(*settings)

type settings struct {
	hc              *http.Client
	tokens          TokenSource
	limiter         Limiter
	timeout         time.Duration
	maxAttempts     int
	retryBase       time.Duration
	retryCap        time.Duration
	breakerFailures int
	breakerOpenFor  time.Duration
	maxBody         int64
	reg             prometheus.Registerer
	log             *slog.Logger
}

// WithHTTPClient sets the HTTP client. The client is copied and its redirect policy replaced: the
// gateway never follows upstream redirects, which would carry X-API-Key to another host.
func WithHTTPClient(hc *http.Client) Option { return func(s *settings) { s.hc = hc } }

// WithTokenSource sets where bearer tokens come from; without it no Authorization header is sent.
// A token source that logs in through the client itself is given with Authorized instead.
func WithTokenSource(src TokenSource) Option { return func(s *settings) { s.tokens = src } }

// WithLimiter sets the shared upstream quota, asked before every attempt.
func WithLimiter(l Limiter) Option { return func(s *settings) { s.limiter = l } }

// WithTimeout bounds each attempt (connection, headers and body); default DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(s *settings) { s.timeout = d } }

// WithRetry sets how many attempts an idempotent request gets (1 = no retry) and the exponential
// backoff: attempt n waits a random duration in [0, min(capDelay, base*2^(n-1))]. A Retry-After or
// RateLimit reset longer than capDelay is not waited for inside a call: the rate-limit error is
// returned with RetryAfter instead.
func WithRetry(maxAttempts int, base, capDelay time.Duration) Option {
	return func(s *settings) { s.maxAttempts, s.retryBase, s.retryCap = maxAttempts, base, capDelay }
}

// WithBreaker sets the circuit breaker: it opens after failures consecutive failed attempts
// (connection errors, timeouts, 502, 503, 504) and lets one probe through after openFor.
func WithBreaker(failures int, openFor time.Duration) Option {
	return func(s *settings) { s.breakerFailures, s.breakerOpenFor = failures, openFor }
}

// WithMaxBodyBytes bounds the size of an answer's body; default DefaultMaxBodyBytes (8 MiB).
func WithMaxBodyBytes(n int64) Option { return func(s *settings) { s.maxBody = n } }

// WithMetrics registers the client's metrics on reg; nil (the default) records none.
func WithMetrics(reg prometheus.Registerer) Option { return func(s *settings) { s.reg = reg } }

// WithLogger sets the logger for retries, token rejections and breaker changes.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// Client is the one client of the Inbox Hub API. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[/prefix], without a trailing slash
	creds   Credentials
	hc      *http.Client
	tokens  TokenSource
	limiter Limiter
	timeout time.Duration
	retry   retryPolicy
	maxBody int64
	breaker *breaker
	metrics *metrics
	log     *slog.Logger

	ids       *sessionIDs
	resolving *singleflight.Group
	checks    *tokenChecks // 401s confirmed before the token is dropped (tokencheck.go)
}

// New returns a client of the upstream at baseURL (for example https://api.inbox-hub.com, without
// the /api suffix: the client adds it). Only the API key is required; Login also needs the
// identifier and password. Error messages never contain the credentials.
func New(baseURL string, creds Credentials, opts ...Option) (*Client, error) {
	s := newSettings(opts)
	base, err := s.check(baseURL, creds)
	if err != nil {
		return nil, err
	}
	log := s.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:    base,
		creds:   creds,
		hc:      httpClient(s.hc),
		tokens:  s.tokens,
		limiter: s.limiter,
		timeout: s.timeout,
		retry:   retryPolicy{maxAttempts: s.maxAttempts, base: s.retryBase, cap: s.retryCap},
		maxBody: s.maxBody,
		metrics: m,
		log:     log,
		ids:     newSessionIDs(),

		resolving: &singleflight.Group{},
		checks:    &tokenChecks{},
	}
	c.breaker = newBreaker(s.breakerFailures, s.breakerOpenFor, m, log)
	return c, nil
}

// newSettings applies opts over the defaults.
func newSettings(opts []Option) settings {
	s := settings{
		timeout:         DefaultTimeout,
		maxAttempts:     DefaultMaxAttempts,
		retryBase:       DefaultRetryBase,
		retryCap:        DefaultRetryCap,
		breakerFailures: DefaultBreakerFailures,
		breakerOpenFor:  DefaultBreakerOpenFor,
		maxBody:         DefaultMaxBodyBytes,
	}
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	return s
}

// check returns the base URL without a trailing slash, or every problem of the settings at once.
func (s settings) check(baseURL string, creds Credentials) (string, error) {
	var errs []error
	base, err := parseBaseURL(baseURL)
	if err != nil {
		errs = append(errs, err)
	}
	if creds.APIKey == "" {
		errs = append(errs, errors.New("upstream: the API key is empty"))
	}
	if s.timeout <= 0 {
		errs = append(errs, errors.New("upstream: the attempt timeout must be positive"))
	}
	if s.maxAttempts < 1 || s.retryBase <= 0 || s.retryCap < s.retryBase {
		errs = append(errs, errors.New("upstream: retry needs at least 1 attempt and 0 < base <= cap"))
	}
	if s.breakerFailures < 1 || s.breakerOpenFor <= 0 {
		errs = append(errs, errors.New("upstream: the breaker needs at least 1 failure and a positive open time"))
	}
	if s.maxBody <= 0 {
		errs = append(errs, errors.New("upstream: the body limit must be positive"))
	}
	return base, errors.Join(errs...)
}

// Authorized returns a client whose bearer calls carry src's tokens and that shares everything
// else with c: the HTTP transport, the quota, the circuit breaker, the metrics, the learnt session
// ids and the checks of 401s. It is how a token source that logs in through this client is wired
// without a cycle, as with golang.org/x/oauth2 (a Config's token endpoint, then NewClient with the
// TokenSource): the source logs in and refreshes through c, whose login and refresh calls send no
// bearer token, and the API is called through the client returned. c itself is not changed.
func (c *Client) Authorized(src TokenSource) *Client {
	a := *c
	a.tokens = src
	return &a
}

func parseBaseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("upstream: the base URL must be an absolute http(s) URL")
	}
	if u.User != nil {
		return "", errors.New("upstream: the base URL must not carry user information")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("upstream: the base URL must not have a query or fragment")
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	if p == "/api" || strings.HasSuffix(p, "/api") {
		return "", errors.New("upstream: the base URL must not end in /api (the client adds it)")
	}
	return u.Scheme + "://" + u.Host + p, nil
}

// httpClient copies the given client (or builds the default one) and refuses redirects.
func httpClient(given *http.Client) *http.Client {
	if given != nil {
		return noredirect.Client(given)
	}
	return noredirect.Client(&http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}})
}

// BreakerOpenSince is when the circuit breaker opened, and whether it is open now.
func (c *Client) BreakerOpenSince() (time.Time, bool) { return c.breaker.openSince() }

// CloseBreaker closes an open circuit breaker at once, without waiting out its open period: the
// caller has seen the upstream healthy again (a Probe, on this replica or another).
func (c *Client) CloseBreaker() { c.breaker.close() }

// BreakerState is the circuit breaker's state, "closed", "half-open" or "open", for /readyz.
func (c *Client) BreakerState() string { return c.breaker.state() }
