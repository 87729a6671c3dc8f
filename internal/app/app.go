// Package app wires the gateway together from its configuration. New builds a replica as a list
// of steps, one per component (the store, the quota, the upstream client and token source, the
// recovery prober, the sync engine, the read cache, the webhook service, the routers), then runs
// the components that work in the background (component: Run(ctx) until ctx ends) under one
// errgroup. cmd/gateway runs one App; tests start several in one process (each with its own Redis
// client and HTTP server) to act as a fleet of replicas.
//
// It owns the order in which a replica's parts are built, started and closed (drain, event
// streams ended, background work stopped with its jobs and leases given back, then the store
// closed), and the readiness checks. It holds no behaviour of its own: a rule about tokens,
// quotas, caching, jobs or events belongs in the package of that concern, and no package imports
// app.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	metrics   prometheus.Registerer
	readCache *cache.ReadThrough // under Cache, and under the relay's cached reads
	handler   http.Handler
	admin     http.Handler
	// background are the parts that work until Close (see component); running runs them.
	background []namedComponent
	running    *group
	// closers release what the parts hold, newest first, once the background work has stopped.
	closers []func()
	logger  *slog.Logger
}

// Option adjusts how New builds a replica; tests use it to shorten timings.
type Option func(*options)

type options struct {
	logOut        io.Writer
	tokenOpts     []tokens.Option
	upstreamOpts  []upstream.Option
	cachePolicies *cache.Policies
}

// WithLogOutput says that out is the writer of the logger's JSON handler (slog.NewJSONHandler,
// no attributes or groups of its own; telemetry.LogHandler may wrap it), safe for concurrent
// writes that each stay whole: the access log then writes its lines there itself, in the same
// format, at a fraction of slog's cost (middleware.AccessLog).
func WithLogOutput(out io.Writer) Option {
	return func(s *options) { s.logOut = out }
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

// build is what New's steps read: the configuration and the options.
type build struct {
	cfg     config.Config
	logger  *slog.Logger
	version string
	o       options
}

// New builds a replica from cfg, one component after the other, then runs its background
// components (the token refresher, the recovery prober, the sync workers, the webhook workers with
// the forwarder and the status poller), which stop when ctx ends or Close is called.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, version string, opts ...Option) (_ *App, err error) {
	b := build{cfg: cfg, logger: logger, version: version}
	for _, opt := range opts {
		opt(&b.o)
	}
	a := &App{Registry: prometheus.NewRegistry(), Readiness: &handlers.Readiness{}, Streams: handlers.NewStreams(), logger: logger}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	for _, step := range []func(context.Context, build) error{
		a.buildMetrics,  // the registry, under MetricPrefix
		a.buildStore,    // Redis, and its readiness check
		a.buildQuota,    // the fleet-wide upstream quota
		a.buildUpstream, // the upstream client and the token source; the refresher
		a.buildRecovery, // the prober that closes open breakers fleet-wide
		a.buildSync,     // the "sync now" engine; its workers
		a.buildCache,    // the read cache and the cached upstream
		a.buildWebhooks, // webhooks in, events out; workers, forwarder, poller
		a.buildRouters,  // the public API and the admin listener
	} {
		if err := step(ctx, b); err != nil {
			return nil, err
		}
	}
	a.running = runGroup(ctx, a.background)
	return a, nil
}

// buildMetrics sets up the registry: the Go runtime's and the process's metrics keep their
// standard names; every metric of the gateway's own is named under MetricPrefix, whichever package
// defines it.
func (a *App) buildMetrics(_ context.Context, b build) error {
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = prometheus.WrapRegistererWithPrefix(MetricPrefix, a.Registry)
	a.metrics.MustRegister(buildInfo(b.version))
	return nil
}

// buildStore opens the Redis connection (closed last) and adds its readiness check.
func (a *App) buildStore(ctx context.Context, b build) error {
	var err error
	a.Store, err = redisconn.Open(ctx, b.cfg.RedisURL.Reveal(), b.logger)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	a.closers = append(a.closers, a.Store.Close)
	// Redis commands get spans while tracing is on (never their arguments); off, nothing is added.
	if err := telemetry.InstrumentRedis(a.Store.Client); err != nil {
		return fmt.Errorf("redis tracing: %w", err)
	}
	a.Readiness.Add(handlers.Check{Name: "redis", Run: func(ctx context.Context) handlers.CheckResult {
		if err := a.Store.Ping(ctx); err != nil {
			return handlers.CheckResult{Error: redisProblem(err)}
		}
		return handlers.CheckResult{OK: true, Detail: map[string]any{"embedded": a.Store.Embedded}}
	}})
	return nil
}

// buildQuota builds the shared upstream quota, one rate per category.
func (a *App) buildQuota(_ context.Context, b build) error {
	a.Quota = quota.New(a.Store.Client, map[upstream.Category]quota.Rate{
		upstream.CategoryAuth: quotaRate(b.cfg.Upstream.RateAuth),
		upstream.CategoryRead: quotaRate(b.cfg.Upstream.RateRead),
		upstream.CategorySend: quotaRate(b.cfg.Upstream.RateSend),
	}, quota.WithReserve(b.cfg.Upstream.Reserve), quota.WithLocalFallback(b.cfg.Upstream.QuotaFallback),
		quota.WithMetrics(a.metrics), quota.WithLogger(b.logger.With("component", "quota")))
	return nil
}

// buildUpstream builds the upstream client and the token source as golang.org/x/oauth2 wires a
// token source: the source logs in through the plain client, and the API is called through the
// client authorised by that source (one quota, breaker and metrics for both). The token refresher
// runs in the background; the token's and the breaker's states are readiness checks.
func (a *App) buildUpstream(_ context.Context, b build) error {
	cfg := b.cfg
	login, err := upstream.New(cfg.Upstream.BaseURL, upstream.Credentials{
		Identifier: cfg.Upstream.Identifier.Reveal(),
		Password:   cfg.Upstream.Password.Reveal(),
		APIKey:     cfg.Upstream.APIKey.Reveal(),
	}, append([]upstream.Option{
		upstream.WithTimeout(cfg.Upstream.Timeout),
		upstream.WithLimiter(a.Quota),
		upstream.WithMetrics(a.metrics),
		upstream.WithLogger(b.logger.With("component", "upstream")),
	}, b.o.upstreamOpts...)...)
	if err != nil {
		return fmt.Errorf("upstream client: %w", err)
	}
	tokenOpts := []tokens.Option{
		tokens.WithRefreshAt(cfg.TokenRefreshAt, 0.05),
		tokens.WithUpstreamTimeout(cfg.Upstream.Timeout),
		tokens.WithMetrics(a.metrics),
		tokens.WithLogger(b.logger.With("component", "tokens")),
	}
	if cfg.TokenEncryption.CurrentID != "" {
		tokenOpts = append(tokenOpts, tokens.WithEncryptionKeys(cfg.TokenEncryption.CurrentID, cfg.TokenEncryption.Keys))
	}
	src, err := tokens.New(a.Store.Client, login, append(tokenOpts, b.o.tokenOpts...)...)
	if err != nil {
		return fmt.Errorf("token source: %w", err)
	}
	a.Upstream, a.Tokens = login.Authorized(src), src
	a.runInBackground("token refresher", runFunc(func(ctx context.Context) error {
		src.Start(ctx)
		return src.Close()
	}))
	a.Readiness.Add(handlers.Check{Name: "upstream_token", Run: func(context.Context) handlers.CheckResult {
		return tokenCheck(src.Status())
	}})
	a.Readiness.Add(handlers.Check{Name: "upstream_breaker", Run: func(context.Context) handlers.CheckResult {
		return breakerCheck(a.Upstream.BreakerState())
	}})
	return nil
}

// buildRecovery adds the recovery prober: while the breaker is open, one replica of the fleet
// probes GET /health and every replica closes its breaker as soon as the upstream answers.
func (a *App) buildRecovery(_ context.Context, b build) error {
	a.runInBackground("recovery prober",
		recovery.New(a.Upstream, a.Store.Client, "", recovery.DefaultInterval, b.logger.With("component", "recovery")))
	return nil
}

// buildSync builds the "sync now" engine, which reads the upstream live (never the cache). Its
// workers run when the configuration gives this replica any; they hand their jobs back on Close.
func (a *App) buildSync(_ context.Context, b build) error {
	cfg := b.cfg
	var err error
	a.Sync, err = syncjob.New(syncjob.Config{
		Redis: a.Store.Client, Upstream: a.Upstream, // live upstream reads, never the cache
		Workers: cfg.Sync.Workers, ItemTTL: cfg.Sync.ItemTTL, SinkBatch: cfg.Sync.SinkBatch,
		SinkURL: cfg.CRMSinkURL.Reveal(), SigningSecret: cfg.CRMSigningSecret.Reveal(),
		Logger: b.logger.With("component", "sync"), Registerer: a.metrics,
	})
	if err != nil {
		return fmt.Errorf("sync engine: %w", err)
	}
	if cfg.Sync.Workers > 0 {
		a.runInBackground("sync workers", startStop{start: a.Sync.Start, stop: a.Sync.Shutdown})
	}
	return nil
}

// buildCache builds the read cache in Redis (closed after the background work) and the cached
// view of the upstream that the API reads through.
func (a *App) buildCache(_ context.Context, b build) error {
	var err error
	a.readCache, err = cache.NewReadThrough(a.Store.Client, cache.WithMetrics(a.metrics),
		cache.WithLogger(b.logger.With("component", "cache")))
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	a.closers = append(a.closers, a.readCache.Close)
	policies := cache.DefaultPolicies()
	if b.o.cachePolicies != nil {
		policies = *b.o.cachePolicies
	}
	a.Cache = cache.NewCachedUpstream(a.Upstream, a.readCache, policies, b.logger.With("component", "cache"))
	return nil
}

// buildWebhooks builds the webhook service. Its workers, the forwarder and the status poller run
// when the configuration gives this replica workers; on Close they give back their tasks, outboxes
// and the poller's leadership, and the spool of deliveries waiting for Redis stops.
func (a *App) buildWebhooks(_ context.Context, b build) error {
	cfg := b.cfg
	var err error
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
		Registerer: a.metrics, Logger: b.logger.With("component", "webhooks"),
	})
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	// Shutdown also stops the spool of deliveries waiting for Redis, which runs from New: it is a
	// closer too, for a replica without workers or whose New fails later (a second call only waits
	// for the spool, already stopped).
	a.closers = append(a.closers, a.Webhooks.Shutdown)
	if cfg.Webhooks.Workers > 0 {
		a.runInBackground("webhook workers", startStop{start: a.Webhooks.Start, stop: a.Webhooks.Shutdown})
	}
	return nil
}

// buildRouters builds the public API (the relay, caller authentication and limits, idempotency,
// every route) and the admin listener's router.
func (a *App) buildRouters(_ context.Context, b build) error {
	cfg, logger := b.cfg, b.logger
	webhookTarget := handlers.WebhookTarget{Registrar: a.Upstream, PublicURL: cfg.PublicURL, Secret: cfg.WebhookSecret.Reveal()}
	authn, err := auth.New(auth.Options{APIKeys: cfg.APIKeys, JWT: cfg.JWT, Registerer: a.metrics,
		Throttle: auth.NewFailureThrottle(a.Store.Client, quotaRate(cfg.AuthFailureRate), auth.FailureThrottleOptions{
			Logger: logger.With("component", "auth-throttle"), Registerer: a.metrics})})
	if err != nil {
		return fmt.Errorf("caller authentication: %w", err)
	}
	callerLimit := auth.NewCallerLimiter(a.Store.Client, quotaRate(cfg.CallerRate),
		auth.WithLimiterLogger(logger.With("component", "caller-limit")), auth.WithLimiterMetrics(a.metrics))

	a.handler, err = handlers.NewRouter(handlers.Deps{
		Logger:         logger,
		AccessLogOut:   b.o.logOut,
		HTTPMetrics:    middleware.NewHTTPMetrics(a.metrics),
		MaxBodyBytes:   cfg.MaxBodyBytes,
		TrustedProxies: cfg.TrustedProxies,
		Readiness:      a.Readiness,
		Version:        b.version,
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
		Passthrough:    a.relay(cfg, logger, webhookTarget).Handle,
		Sync:           a.Sync,
		Streams:        a.Streams,
		Webhooks:       a.Webhooks,
		DeadLetters:    a.Webhooks,
		WebhookTarget:  &webhookTarget,
		Idempotency:    idempotency.New(a.Store.Client, idempotency.WithLogger(logger.With("component", "idempotency"))),
	})
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	a.admin = handlers.NewAdminRouter(handlers.AdminDeps{Logger: logger, Registry: a.Registry, Readiness: a.Readiness, Version: b.version})
	return nil
}

// relay is the drop-in /api/* relay, reading through the read cache. Sessions created through it
// report to the gateway when a webhook target is configured; without one, webhook settings of
// callers without the admin scope are dropped.
func (a *App) relay(cfg config.Config, logger *slog.Logger, webhookTarget handlers.WebhookTarget) *passthrough.Handler {
	opts := []passthrough.Option{
		passthrough.WithCache(a.readCache, passthrough.DefaultPolicy()),
		passthrough.WithMaxBodyBytes(cfg.MaxBodyBytes),
		passthrough.WithLogger(logger.With("component", "passthrough")),
	}
	if target, err := webhookTarget.Webhook(); err == nil {
		opts = append(opts, passthrough.WithWebhookTarget(target))
	}
	return passthrough.New(a.Upstream, opts...)
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

// Close stops the replica, in this order: the background components stop together and Close waits
// for all of them (running sync jobs keep their last checkpoint and go back to the queue for
// another replica; the webhook tasks, the outboxes' and the status poller's leases are given back;
// the token refresher and the recovery prober end), then the read cache and the store close, newest
// first. It may be called more than once.
func (a *App) Close() {
	if a.running != nil {
		for _, err := range a.running.stop() {
			a.logger.Error("background component failed", "component", err.name, "error", err.err.Error())
		}
		a.running = nil
	}
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

// breakerCheck judges the upstream client's circuit breaker for /readyz.
func breakerCheck(state string) handlers.CheckResult {
	r := handlers.CheckResult{OK: state != "open", Detail: map[string]any{"state": state}}
	if !r.OK {
		r.Error = "circuit breaker open: Inbox Hub is failing, calls are refused until it recovers"
	}
	return r
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
