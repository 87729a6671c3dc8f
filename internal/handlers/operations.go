package handlers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check. Run must return within its context's deadline.
type Check struct {
	Name string
	Run  func(ctx context.Context) CheckResult
}

// CheckResult is what one readiness check found. Detail carries facts for operators (token time
// left, breaker state); Error says why the check failed, without secrets.
type CheckResult struct {
	OK     bool           `json:"ok"`
	Error  string         `json:"error,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Readiness is the set of checks behind /readyz. Parts of the gateway register their own.
type Readiness struct {
	mu     sync.RWMutex
	checks []Check
}

// Add registers a check.
func (r *Readiness) Add(c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, c)
}

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

type operations struct {
	readiness *Readiness
	version   string
}

// HealthStatus is the answer of /healthz.
type HealthStatus struct {
	Status  string `json:"status" example:"ok"`
	Version string `json:"version" example:"dev"`
}

// ReadyStatus is the answer of /readyz.
type ReadyStatus struct {
	Status string                 `json:"status" example:"ready"`
	Checks map[string]CheckResult `json:"checks"`
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
//	@Description	Runs every readiness check (Redis; the upstream token's state, time left and last refresh error; the circuit breaker's state) and answers 200 when all pass, 503 with the failing checks' reasons otherwise.
//	@Tags			operations
//	@Produce		json
//	@Success		200	{object}	ReadyStatus
//	@Failure		503	{object}	ReadyStatus
//	@Router			/readyz [get]
func (o operations) readyz(c *gin.Context) {
	ok, results := o.readiness.Run(c.Request.Context(), 2*time.Second)
	c.Header("Cache-Control", "no-store")
	if !ok {
		c.JSON(http.StatusServiceUnavailable, ReadyStatus{Status: "unready", Checks: results})
		return
	}
	c.JSON(http.StatusOK, ReadyStatus{Status: "ready", Checks: results})
}

// metrics godoc
//
//	@Summary		Prometheus metrics
//	@Description	The gateway's metrics in the Prometheus text format: requests by route, status and caller; upstream requests, retries and breaker state; token logins, refreshes and seconds left; quota waits and rejections; cache hits; sync and webhook counters; Go runtime and process metrics.
//	@Tags			operations
//	@Produce		plain
//	@Success		200	{string}	string	"Prometheus text exposition format"
//	@Router			/metrics [get]
func metricsHandler(reg *prometheus.Registry) gin.HandlerFunc {
	return gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}
