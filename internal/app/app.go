// Package app wires the gateway together from its configuration: the store, the upstream client
// and token source, and the HTTP router. cmd/gateway runs one App; tests start several in one
// process (each with its own Redis client and HTTP server) to act as a fleet of replicas.
//
// It owns the order in which a replica's parts are built, started and closed, and the readiness
// checks. It holds no behaviour of its own: a rule about tokens, quotas, caching, jobs or events
// belongs in the package of that concern, and no package imports app.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/handlers"
	"github.com/inboxhub-gateway/gateway/internal/idempotency"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/passthrough"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/recovery"
	"github.com/inboxhub-gateway/gateway/internal/redisconn"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/tokens"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

// MetricPrefix starts the name of every metric of the gateway (not the Go runtime's and
// process's standard ones): inboxhub_gateway_http_requests_total, ..._upstream_requests_total.
const MetricPrefix = "inboxhub_gateway_"

// buildInfo is the constant 1 labelled with what runs: the version, the VCS revision it was built
// from ("unknown" without one) and the Go version.
func buildInfo(version string) prometheus.Collector {
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "build_info", Help: "Always 1: the version, VCS revision and Go version of this replica.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	g.Set(1)
	return g
}

// App is one gateway replica.
type App struct {
	Store     *redisconn.Store
	Registry  *prometheus.Registry
	Readiness *handlers.Readiness
	// Streams ends the open event streams when the replica stops (see Drain).
	Streams  *handlers.Streams
	Upstream *upstream.Client
	Tokens   *tokens.Source
	Quota    *quota.Limiter
	// Cache is the cached view of the upstream the API reads through; webhooks and the status
	// poller invalidate a session's entries through it.
	Cache *cache.CachedUpstream
	// Sync runs "sync now" jobs (on the job queue, internal/jobs, over the same Redis).
	Sync *syncjob.Engine
	// Webhooks receives the upstream's webhooks, forwards events to the CRM and polls session
	// status (package webhooks).
	Webhooks *webhooks.Service

	// metrics registers the gateway's own metrics on Registry under MetricPrefix.
	metrics prometheus.Registerer
	handler http.Handler
	admin   http.Handler
	closers []func()
}

// Option adjusts how New builds a replica; tests use it to shorten timings.
type Option func(*options)

type options struct {
	tokenOpts     []tokens.Option
	upstreamOpts  []upstream.Option
	cachePolicies *cache.Policies
}

// WithCachePolicies replaces the read cache's default freshness and stale windows.
func WithCachePolicies(p cache.Policies) Option {
	return func(s *options) { s.cachePolicies = &p }
}

// WithTokenOptions adds options to the token source (after the ones from the configuration).
func WithTokenOptions(o ...tokens.Option) Option {
	return func(s *options) { s.tokenOpts = append(s.tokenOpts, o...) }
}

// WithUpstreamOptions adds options to the upstream client (after the ones from the configuration).
func WithUpstreamOptions(o ...upstream.Option) Option {
	return func(s *options) { s.upstreamOpts = append(s.upstreamOpts, o...) }
}

// New builds a replica from cfg and starts its background work (the token refresher, the sync and
// webhook workers, the status poller when it wins the lease), which stops when ctx ends or Close
// is called.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, version string, opts ...Option) (_ *App, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	a := &App{Registry: prometheus.NewRegistry(), Readiness: &handlers.Readiness{}, Streams: handlers.NewStreams()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	// The Go runtime's and the process's metrics keep their standard names; every metric of the
	// gateway's own is named under MetricPrefix, whichever package defines it.
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = prometheus.WrapRegistererWithPrefix(MetricPrefix, a.Registry)
	a.metrics.MustRegister(buildInfo(version))

	a.Store, err = redisconn.Open(ctx, cfg.RedisURL.Reveal(), logger)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	a.closers = append(a.closers, a.Store.Close)
	// Redis commands get spans while tracing is on (never their arguments); off, nothing is added.
	if err := telemetry.InstrumentRedis(a.Store.Client); err != nil {
		return nil, fmt.Errorf("redis tracing: %w", err)
	}
	a.Readiness.Add(handlers.Check{Name: "redis", Run: func(ctx context.Context) handlers.CheckResult {
		if err := a.Store.Ping(ctx); err != nil {
			return handlers.CheckResult{Error: redisProblem(err)}
		}
		return handlers.CheckResult{OK: true, Detail: map[string]any{"embedded": a.Store.Embedded}}
	}})

	if err := a.startUpstream(ctx, cfg, logger, o); err != nil {
		return nil, err
	}

	a.Sync, err = syncjob.New(syncjob.Config{
		Redis: a.Store.Client, Upstream: a.Upstream, // live upstream reads, never the cache
		Workers: cfg.Sync.Workers, ItemTTL: cfg.Sync.ItemTTL, SinkBatch: cfg.Sync.SinkBatch,
		SinkURL: cfg.CRMSinkURL.Reveal(), SigningSecret: cfg.CRMSigningSecret.Reveal(),
		Logger: logger.With("component", "sync"), Registerer: a.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("sync engine: %w", err)
	}
	// Closers run newest first: the engine's workers stop and hand their jobs back before the
	// Redis client closes.
	a.closers = append(a.closers, a.Sync.Shutdown)
	if cfg.Sync.Workers > 0 {
		if err := a.Sync.Start(); err != nil {
			return nil, fmt.Errorf("sync workers: %w", err)
		}
	}

	readCache, err := cache.NewReadThrough(a.Store.Client, cache.WithMetrics(a.metrics),
		cache.WithLogger(logger.With("component", "cache")))
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	a.closers = append(a.closers, readCache.Close)
	policies := cache.DefaultPolicies()
	if o.cachePolicies != nil {
		policies = *o.cachePolicies
	}
	a.Cache = cache.NewCachedUpstream(a.Upstream, readCache, policies, logger.With("component", "cache"))
	a.Webhooks, err = webhooks.New(webhooks.Config{
		Redis: a.Store.Client, Secret: cfg.WebhookSecret.Reveal(),
		Cache: a.Cache, Sync: a.Sync, SyncOnConnect: cfg.Sync.OnConnect,
		Sessions:  a.Upstream, // the poller reads live, never the cache
		Statuses:  a.Upstream, // and so do the confirmations of session webhooks
		EventsURL: cfg.CRMEventsURL.Reveal(), SigningSecret: cfg.CRMSigningSecret.Reveal(),
		Workers: cfg.Webhooks.Workers, DedupeTTL: cfg.Webhooks.DedupeTTL,
		Attempts: cfg.Webhooks.EventAttempts, Backoff: cfg.Webhooks.EventBackoff, MaxBackoff: cfg.Webhooks.EventMaxBackoff,
		PollInterval: cfg.Webhooks.PollInterval,
		SpoolDir:     spoolDir(cfg.WebhookSpool), SpoolMaxBytes: cfg.WebhookSpool.MaxBytes,
		Registerer: a.metrics, Logger: logger.With("component", "webhooks"),
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	// Closers run newest first: the webhook workers stop before the read cache and Redis close.
	a.closers = append(a.closers, a.Webhooks.Shutdown)
	if cfg.Webhooks.Workers > 0 {
		if err := a.Webhooks.Start(); err != nil {
			return nil, fmt.Errorf("webhook workers: %w", err)
		}
	}

	webhookTarget := handlers.WebhookTarget{Registrar: a.Upstream, PublicURL: cfg.PublicURL, Secret: cfg.WebhookSecret.Reveal()}
	relayOpts := []passthrough.Option{
		passthrough.WithCache(readCache, passthrough.DefaultPolicy()),
		passthrough.WithMaxBodyBytes(cfg.MaxBodyBytes),
		passthrough.WithLogger(logger.With("component", "passthrough")),
	}
	if target, err := webhookTarget.Webhook(); err == nil {
		// Sessions created through the relay report to the gateway; without a target, webhook
		// settings of callers without the admin scope are dropped.
		relayOpts = append(relayOpts, passthrough.WithWebhookTarget(target))
	}
	relay := passthrough.New(a.Upstream, relayOpts...)

	throttle := auth.NewFailureThrottle(a.Store.Client, quotaRate(cfg.AuthFailureRate), auth.FailureThrottleOptions{
		Logger: logger.With("component", "auth-throttle"), Registerer: a.metrics})
	authn, err := auth.New(auth.Options{APIKeys: cfg.APIKeys, JWT: cfg.JWT, Registerer: a.metrics, Throttle: throttle})
	if err != nil {
		return nil, fmt.Errorf("caller authentication: %w", err)
	}
	callerLimit := auth.NewCallerLimiter(a.Store.Client, quotaRate(cfg.CallerRate),
		auth.WithLimiterLogger(logger.With("component", "caller-limit")), auth.WithLimiterMetrics(a.metrics))

	a.handler, err = handlers.NewRouter(handlers.Deps{
		Logger:         logger,
		HTTPMetrics:    middleware.NewHTTPMetrics(a.metrics),
		MaxBodyBytes:   cfg.MaxBodyBytes,
		TrustedProxies: cfg.TrustedProxies,
		Readiness:      a.Readiness,
		Version:        version,
		CORS:           auth.CORS(cfg.CORSOrigins),
		Authenticate:   []gin.HandlerFunc{authn.Middleware(), callerLimit.Middleware()},
		Require:        auth.Require,
		Sessions:       a.Cache,
		Connector:      liveStatus{a.Cache, a.Upstream},
		QRCodes:        liveStatus{a.Cache, a.Upstream},
		Contacts:       a.Cache,
		Chats:          a.Cache,
		Messages:       a.Cache,
		Sender:         a.Cache, // sends invalidate the session's cached lists
		Passthrough:    relay.Handle,
		Sync:           a.Sync,
		Streams:        a.Streams,
		Webhooks:       a.Webhooks,
		DeadLetters:    a.Webhooks,
		WebhookTarget:  &webhookTarget,
		Idempotency:    idempotency.New(a.Store.Client, idempotency.WithLogger(logger.With("component", "idempotency"))),
	})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	a.admin = handlers.NewAdminRouter(handlers.AdminDeps{Logger: logger, Registry: a.Registry, Readiness: a.Readiness, Version: version})
	return a, nil
}

// Handler is the replica's HTTP API.
func (a *App) Handler() http.Handler { return a.handler }

// AdminHandler serves /metrics and the detailed readiness, for the admin listener only
// (GATEWAY_ADMIN_ADDR): it has no caller authentication.
func (a *App) AdminHandler() http.Handler { return a.admin }

// Drain takes the replica out of rotation before it stops: the public /readyz answers 503 at
// once, requests are still served for delay (while load balancers notice), then the event streams
// end with their reconnect event, so that stopping the HTTP server does not wait on them. It
// returns early when ctx ends. Close, after the server has stopped, returns the jobs and leases.
func (a *App) Drain(ctx context.Context, delay time.Duration) {
	a.Readiness.Drain()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	a.Streams.Close()
}

// Close releases the replica's resources, newest first: the webhook and sync workers stop (running
// jobs keep their last checkpoint and go back to the queue for another replica; the status
// poller's and the outboxes' leases are released), then the caches, the token refresher and the
// store.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// ConfigChecks are the rules on settings that belong to the packages app wires rather than to
// config (which imports none of them), for config.Load: REDIS_URL must be a URL the store can open.
func ConfigChecks() []config.Check {
	return []config.Check{{Var: "REDIS_URL", Valid: func(v string) error {
		if _, err := redisconn.Parse(v); err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "REDIS_URL: "))
		}
		return nil
	}}}
}

// quotaRate is a configured rate as the limiters enforce it (with their default burst).
func quotaRate(r config.Rate) quota.Rate { return quota.Rate{N: r.N, Per: r.Per} }

// spoolDir is the webhook spool's directory, "" when the spool is off (no bytes allowed).
func spoolDir(c config.WebhookSpoolConfig) string {
	if c.MaxBytes <= 0 {
		return ""
	}
	return c.Dir
}

// redisProblem describes a Redis failure for /readyz without internals such as addresses.
func redisProblem(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "redis did not answer within the deadline"
	}
	return "redis unavailable"
}

// startUpstream builds the shared quota, the upstream client and the token source, starts the
// token refresher, and registers their readiness checks.
func (a *App) startUpstream(ctx context.Context, cfg config.Config, logger *slog.Logger, o options) error {
	a.Quota = quota.New(a.Store.Client, map[upstream.Category]quota.Rate{
		upstream.CategoryAuth: quotaRate(cfg.Upstream.RateAuth),
		upstream.CategoryRead: quotaRate(cfg.Upstream.RateRead),
		upstream.CategorySend: quotaRate(cfg.Upstream.RateSend),
	}, quota.WithReserve(cfg.Upstream.Reserve), quota.WithLocalFallback(cfg.Upstream.QuotaFallback),
		quota.WithMetrics(a.metrics), quota.WithLogger(logger.With("component", "quota")))

	// Built as with golang.org/x/oauth2: the token source logs in through the plain client, and the
	// API is called through the client authorised by that source (sharing quota, breaker, metrics).
	login, err := upstream.New(cfg.Upstream.BaseURL, upstream.Credentials{
		Identifier: cfg.Upstream.Identifier.Reveal(),
		Password:   cfg.Upstream.Password.Reveal(),
		APIKey:     cfg.Upstream.APIKey.Reveal(),
	}, append([]upstream.Option{
		upstream.WithTimeout(cfg.Upstream.Timeout),
		upstream.WithLimiter(a.Quota),
		upstream.WithMetrics(a.metrics),
		upstream.WithLogger(logger.With("component", "upstream")),
	}, o.upstreamOpts...)...)
	if err != nil {
		return fmt.Errorf("upstream client: %w", err)
	}
	tokenOpts := []tokens.Option{
		tokens.WithRefreshAt(cfg.TokenRefreshAt, 0.05),
		tokens.WithUpstreamTimeout(cfg.Upstream.Timeout),
		tokens.WithMetrics(a.metrics),
		tokens.WithLogger(logger.With("component", "tokens")),
	}
	if cfg.TokenEncryption.CurrentID != "" {
		tokenOpts = append(tokenOpts, tokens.WithEncryptionKeys(cfg.TokenEncryption.CurrentID, cfg.TokenEncryption.Keys))
	}
	src, err := tokens.New(a.Store.Client, login, append(tokenOpts, o.tokenOpts...)...)
	if err != nil {
		return fmt.Errorf("token source: %w", err)
	}
	client := login.Authorized(src)
	a.Upstream, a.Tokens = client, src
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Start(runCtx)
	}()
	a.closers = append(a.closers, func() {
		stop()
		<-done
		_ = src.Close()
	})

	a.Readiness.Add(handlers.Check{Name: "upstream_token", Run: func(context.Context) handlers.CheckResult {
		return tokenCheck(src.Status())
	}})
	// While the breaker is open, one replica of the fleet probes GET /health and every replica
	// closes its breaker as soon as the upstream answers (internal/recovery).
	watcher := recovery.New(client, a.Store.Client, "", recovery.DefaultInterval, logger.With("component", "recovery"))
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = watcher.Run(watchCtx)
	}()
	a.closers = append(a.closers, func() {
		stopWatch()
		<-watched
	})

	a.Readiness.Add(handlers.Check{Name: "upstream_breaker", Run: func(context.Context) handlers.CheckResult {
		state := client.BreakerState()
		r := handlers.CheckResult{OK: state != "open", Detail: map[string]any{"state": state}}
		if !r.OK {
			r.Error = "circuit breaker open: Inbox Hub is failing, calls are refused until it recovers"
		}
		return r
	}})
	return nil
}

// tokenCheck judges the token source for /readyz. No token yet is ready (the first request logs
// in); credentials refused by the upstream, or no token while the store is down, are not.
func tokenCheck(st tokens.Status) handlers.CheckResult {
	detail := map[string]any{"state": st.State, "generation": st.Generation}
	if st.Fingerprint != "" {
		detail["fingerprint"] = st.Fingerprint
	}
	if !st.ExpiresAt.IsZero() {
		detail["expiresAt"] = st.ExpiresAt.UTC().Format(time.RFC3339)
		detail["secondsLeft"] = int(st.TimeLeft.Seconds())
	}
	if st.LastRefreshError != "" {
		detail["lastRefreshError"] = st.LastRefreshError
	}
	if !st.LastRefreshAt.IsZero() {
		detail["lastRefreshAt"] = st.LastRefreshAt.UTC().Format(time.RFC3339)
	}
	r := handlers.CheckResult{OK: true, Detail: detail}
	switch st.State {
	case tokens.StateAuthFailed:
		r.OK = false
		r.Error = "Inbox Hub rejected the gateway credentials (INBOXHUB_IDENTIFIER / INBOXHUB_PASSWORD / INBOXHUB_API_KEY)"
		if !st.NextLoginAllowedAt.IsZero() {
			detail["nextLoginAllowedAt"] = st.NextLoginAllowedAt.UTC().Format(time.RFC3339)
		}
	case tokens.StateRedisUnavailable:
		if st.TimeLeft <= 0 {
			r.OK = false
			r.Error = "no valid upstream token and the token store (Redis) is unavailable"
		}
	}
	return r
}

// liveStatus reads session statuses live from the upstream while everything else goes through the
// cache (and a connect invalidates it): connect and the QR route decide on the session's state now,
// not as it was a few seconds ago.
type liveStatus struct {
	*cache.CachedUpstream
	live *upstream.Client
}

func (l liveStatus) SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error) {
	return l.live.SessionStatus(ctx, sessionID)
}
