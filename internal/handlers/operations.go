package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
)

// Check is one readiness check. Run must return within its context's deadline.
type Check struct {
	Name string
	Run  func(ctx context.Context) CheckResult
}

// CheckResult is what one readiness check found. Detail carries facts for operators (token time
// left, breaker state); Error says why the check failed, without secrets.
type CheckResult struct {
	OK     bool           `json:"ok" example:"true"`
	Error  string         `json:"error,omitempty" example:"redis unavailable"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Readiness is this replica's readiness: the draining flag behind the public /readyz (a replica
// leaves the load balancer only for a reason of its own), and the checks of the shared
// dependencies (Redis, the upstream token, the breaker) behind the detailed view operators read on
// the admin listener and at /v1/admin/status. Parts of the gateway register their own checks.
type Readiness struct {
	mu       sync.RWMutex
	checks   []Check
	draining atomic.Bool
}

// Add registers a check.
func (r *Readiness) Add(c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, c)
}

// Drain marks the replica as shutting down: the public /readyz answers 503 from now on, so the
// load balancer stops sending it new requests while it finishes the ones it has.
func (r *Readiness) Drain() { r.draining.Store(true) }

// Draining reports whether Drain was called.
func (r *Readiness) Draining() bool { return r.draining.Load() }

// Run runs every check concurrently, each within timeout, and reports whether all passed.
func (r *Readiness) Run(ctx context.Context, timeout time.Duration) (bool, map[string]CheckResult) {
	r.mu.RLock()
	checks := append([]Check(nil), r.checks...)
	r.mu.RUnlock()
	results := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] = c.Run(cctx)
		})
	}
	wg.Wait()
	ok := true
	out := make(map[string]CheckResult, len(checks))
	for i, c := range checks {
		out[c.Name] = results[i]
		ok = ok && results[i].OK
	}
	return ok, out
}

// Report is the detailed view: the state of the replica and of every check.
func (r *Readiness) Report(ctx context.Context) ReadinessReport {
	ok, results := r.Run(ctx, checkTimeout)
	rep := ReadinessReport{Status: StatusReady, Checks: results}
	switch {
	case r.Draining():
		rep.Status = StatusDraining
	case !ok:
		rep.Status = StatusDegraded
	}
	return rep
}

// Streams ends the replica's long-lived answers (the sync jobs' event streams) when it stops:
// http.Server.Shutdown waits for every answer to finish and a stream never does by itself, so
// without this a stopping replica would wait out its whole timeout and exit in error. Each stream
// sends a last event telling the client to reconnect (to another replica) and ends.
type Streams struct {
	once sync.Once
	done chan struct{}
}

// NewStreams returns an open Streams.
func NewStreams() *Streams { return &Streams{done: make(chan struct{})} }

// Close ends every open stream, and every one opened after, with its reconnect event.
func (s *Streams) Close() { s.once.Do(func() { close(s.done) }) }

// Closing is closed once Close is called; a nil Streams never closes.
func (s *Streams) Closing() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.done
}

// checkTimeout bounds each readiness check.
const checkTimeout = 2 * time.Second

// States of a replica, as /readyz and the detailed view name them.
const (
	// StatusReady: serving, every check passes.
	StatusReady = "ready"
	// StatusDegraded: serving, in rotation, with a shared dependency failing (the detailed view
	// says which); the public /readyz still answers ready.
	StatusDegraded = "degraded"
	// StatusDraining: shutting down; out of rotation, finishing what it has.
	StatusDraining = "draining"
)

type operations struct {
	readiness *Readiness
	version   string
}

// HealthStatus is the answer of /healthz.
type HealthStatus struct {
	Status  string `json:"status" example:"ok"`
	Version string `json:"version" example:"dev"`
}

// ReadyStatus is the answer of the public /readyz: ready or draining, nothing more.
type ReadyStatus struct {
	Status string `json:"status" example:"ready" enums:"ready,draining"`
}

// ReadinessReport is the detailed view of a replica: its state and each check's result (the
// Redis store, the upstream token's state and time left, the circuit breaker). It is answered on
// the admin listener's /readyz and at GET /v1/admin/status, never to an anonymous caller.
type ReadinessReport struct {
	Status string                 `json:"status" example:"ready" enums:"ready,degraded,draining"`
	Checks map[string]CheckResult `json:"checks"`
}

// StatusAnswer is the answer of GET /v1/admin/status.
type StatusAnswer struct {
	Data ReadinessReport `json:"data"`
}

// healthz godoc
//
//	@Summary		Liveness
//	@Description	Answers 200 while the process serves HTTP. It checks nothing else, so an orchestrator does not restart the gateway because Redis or Inbox Hub is down.
//	@Tags			operations
//	@Produce		json
//	@Success		200	{object}	HealthStatus
//	@Router			/healthz [get]
func (o operations) healthz(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, HealthStatus{Status: "ok", Version: o.version})
}

// readyz godoc
//
//	@Summary		Readiness
//	@Description	Whether this replica takes new requests: 200 "ready" while it serves, 503 "draining" once it is shutting down. It reflects this replica's own state only: when Redis or Inbox Hub is down every replica stays ready and gives its degraded answers, since taking them all out of rotation would help nobody. The state of the shared dependencies is on the admin listener (GATEWAY_ADMIN_ADDR) and at GET /v1/admin/status.
//	@Tags			operations
//	@Produce		json
//	@Success		200	{object}	ReadyStatus
//	@Failure		503	{object}	ReadyStatus
//	@Router			/readyz [get]
func (o operations) readyz(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	if o.readiness.Draining() {
		c.JSON(http.StatusServiceUnavailable, ReadyStatus{Status: StatusDraining})
		return
	}
	c.JSON(http.StatusOK, ReadyStatus{Status: StatusReady})
}

// status godoc
//
//	@Summary		Gateway status (detailed readiness)
//	@Description	The replica's state (ready, degraded: serving with a shared dependency failing, draining) and each check: the Redis store, the upstream token (state, generation, fingerprint, expiry, last refresh and its error) and the circuit breaker. The operator console shows it. The same report is answered on the admin listener's /readyz.
//	@Tags			admin
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["admin"]
//	@Success		200	{object}	StatusAnswer
//	@Failure		401	{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403	{object}	problem.Details	"FORBIDDEN: needs admin"
//	@Failure		429	{object}	problem.Details	"RATE_LIMITED"
//	@Router			/v1/admin/status [get]
func (o operations) status(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, StatusAnswer{Data: o.readiness.Report(middleware.Context(c))})
}

// adminReadyz answers the detailed view on the admin listener: 200 when ready, 503 when degraded
// or draining (for monitoring; load balancers probe the public /readyz).
func (o operations) adminReadyz(c *gin.Context) {
	rep := o.readiness.Report(middleware.Context(c))
	c.Header("Cache-Control", "no-store")
	code := http.StatusOK
	if rep.Status != StatusReady {
		code = http.StatusServiceUnavailable
	}
	c.JSON(code, rep)
}

// metricsHandler serves the registry, on the admin listener only: in the Prometheus text format,
// or in OpenMetrics (with the exemplars that link request durations to traces) to a scraper that
// asks for it.
func metricsHandler(reg *prometheus.Registry) gin.HandlerFunc {
	return gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
}

// AdminDeps is what the admin listener's router needs.
type AdminDeps struct {
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	Readiness *Readiness
	Version   string
}

// NewAdminRouter builds the handler of the admin listener (GATEWAY_ADMIN_ADDR, loopback unless an
// operator opens it): GET /metrics, the detailed GET /readyz and GET /healthz. It has no caller
// authentication: who can reach the listener is the protection, so it must never be the public
// address. Its requests are not logged or counted (a scraper would flood both).
func NewAdminRouter(d AdminDeps) *gin.Engine {
	r := newEngine()
	r.Use(
		middleware.RequestID(),
		middleware.Recovery(d.Logger),
		middleware.SecurityHeaders(middleware.PolicyNone),
		middleware.Errors(d.Logger),
	)
	ops := operations{readiness: d.Readiness, version: d.Version}
	r.GET("/healthz", ops.healthz)
	r.GET("/readyz", ops.adminReadyz)
	r.GET("/metrics", metricsHandler(d.Registry))
	return r
}
