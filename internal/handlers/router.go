// Package handlers is the gateway's HTTP API: the router, its middleware order, and thin handlers
// that bind and validate input, call one dependency and answer. Errors go through c.Error to the
// one problem+json mapping in package middleware.
package handlers

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	swaggerFiles "github.com/swaggo/files"
	ginSwagger "github.com/swaggo/gin-swagger"

	"github.com/inboxhub-gateway/gateway/docs"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
)

// Deps is what the router needs; later parts of the API add their dependencies here.
type Deps struct {
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	HTTPMetrics    *middleware.HTTPMetrics
	MaxBodyBytes   int64
	TrustedProxies []string
	Readiness      *Readiness
	Version        string
	// CORS answers preflights and adds CORS headers for the configured origins; it runs on the
	// engine (a preflight matches no route).
	CORS gin.HandlerFunc
	// Caller authentication: Authenticate runs on every /v1 route, Require(scope) guards each.
	Authenticate []gin.HandlerFunc
	Require      func(scope string) gin.HandlerFunc
	Sessions     SessionSource
}

// NewRouter builds the gateway's HTTP handler with its middleware in a visible order: request id,
// recovery, access log, metrics, error mapping (which answers what any later step records), CORS,
// body limit; then the routes, each /v1 route behind caller authentication, the per-caller limit
// and its scope.
func NewRouter(d Deps) (*gin.Engine, error) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := r.SetTrustedProxies(d.TrustedProxies); err != nil {
		return nil, err
	}
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.Use(
		middleware.RequestID(),
		middleware.Recovery(d.Logger),
		middleware.AccessLog(d.Logger),
		d.HTTPMetrics.Middleware(),
		middleware.Errors(d.Logger),
		d.CORS,
		middleware.BodyLimit(d.MaxBodyBytes),
	)
	r.NoRoute(middleware.NotFound())
	r.NoMethod(middleware.MethodNotAllowed())

	ops := operations{readiness: d.Readiness, version: d.Version}
	r.GET("/healthz", ops.healthz)
	r.GET("/readyz", ops.readyz)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry})))

	v1 := r.Group("/v1", d.Authenticate...)
	sessions := sessionHandlers{src: d.Sessions}
	v1.GET("/sessions", d.Require("sessions:read"), sessions.list)
	v1.GET("/sessions/:sessionId", d.Require("sessions:read"), sessions.get)

	docs.SwaggerInfo.BasePath = "/"
	r.GET("/swagger", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/swagger/index.html") })
	r.GET("/swagger/*any", ginSwagger.WrapHandler(swaggerFiles.Handler))
	return r, nil
}
