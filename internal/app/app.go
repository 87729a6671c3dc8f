// Package app wires the gateway together from its configuration: the store, the upstream client
// and token source, and the HTTP router. cmd/gateway runs one App; tests start several in one
// process (each with its own Redis client and HTTP server) to act as a fleet of replicas.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/handlers"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
)

// App is one gateway replica.
type App struct {
	Store     *cache.Store
	Registry  *prometheus.Registry
	Readiness *handlers.Readiness

	handler http.Handler
	closers []func()
}

// New builds a replica from cfg. Close releases what it holds.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, version string) (_ *App, err error) {
	a := &App{Registry: prometheus.NewRegistry(), Readiness: &handlers.Readiness{}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	a.Store, err = cache.Open(ctx, cfg.RedisURL.Reveal(), logger)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	a.closers = append(a.closers, a.Store.Close)
	a.Readiness.Add(handlers.Check{Name: "redis", Run: func(ctx context.Context) handlers.CheckResult {
		if err := a.Store.Ping(ctx); err != nil {
			return handlers.CheckResult{Error: redisProblem(err)}
		}
		return handlers.CheckResult{OK: true, Detail: map[string]any{"embedded": a.Store.Embedded}}
	}})

	a.handler, err = handlers.NewRouter(handlers.Deps{
		Logger:         logger,
		Registry:       a.Registry,
		HTTPMetrics:    middleware.NewHTTPMetrics(a.Registry),
		MaxBodyBytes:   cfg.MaxBodyBytes,
		TrustedProxies: cfg.TrustedProxies,
		Readiness:      a.Readiness,
		Version:        version,
	})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return a, nil
}

// Handler is the replica's HTTP API.
func (a *App) Handler() http.Handler { return a.handler }

// Close releases the replica's resources, newest first.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// redisProblem describes a Redis failure for /readyz without internals such as addresses.
func redisProblem(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "redis did not answer within the deadline"
	}
	return "redis unavailable"
}
