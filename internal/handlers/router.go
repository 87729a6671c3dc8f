// Package handlers is the gateway's HTTP API: the router, its middleware order, and thin handlers
// that bind and validate input, call one dependency and answer. Errors go through c.Error to the
// one problem+json mapping in package middleware.
//
// It owns the routes, their scopes, input validation, the answer envelopes and the swag
// annotations the API reference is generated from. It must not let unvalidated input reach a
// dependency, talk to Redis or Inbox Hub except through the small interfaces of Deps, or write an
// error answer of its own shape.
package handlers

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/docs"
	"github.com/inboxhub-gateway/gateway/internal/console"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/swaggerui"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Deps is what the router needs; later parts of the API add their dependencies here.
type Deps struct {
	Logger *slog.Logger
	// AccessLogOut, when set, is the writer of Logger's JSON handler: the access log encodes its
	// lines itself and writes them there (see middleware.AccessLog).
	AccessLogOut   io.Writer
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
	// The WhatsApp routes of /v1, each behind the small interface it uses (a cache may stand in
	// front of the upstream client for the reads).
	Connector SessionConnector
	QRCodes   QRSource
	Contacts  ContactSource
	Chats     ChatSource
	Messages  MessageSource
	Sender    MessageSender
	// Idempotency keeps the answers of sends made with an Idempotency-Key; nil ignores the header
	// (after validating it).
	Idempotency IdempotencyStore
	// Passthrough serves ANY /api/*path, the drop-in relay of the upstream API (it checks scopes
	// per route itself); nil: not mounted.
	Passthrough gin.HandlerFunc
	// Sync runs "sync now" (package syncjob); nil: the sync routes are not mounted.
	Sync SyncJobs
	// Streams ends the event streams when the replica stops; nil: they end only with their job.
	Streams *Streams
	// Webhooks receives POST /webhooks/inbox-hub (no caller authentication: the signature
	// authenticates the upstream); nil: not mounted.
	Webhooks WebhookReceiver
	// DeadLetters serves the admin routes over the events the CRM did not accept; nil: not mounted.
	DeadLetters DeadLetterAdmin
	// WebhookTarget serves the admin route that points a session's upstream webhook at the
	// gateway; nil: not mounted.
	WebhookTarget *WebhookTarget
}

// Media types of the OpenAPI 3 document's two forms.
const (
	contentTypeJSON = "application/json"
	contentTypeYAML = "application/yaml"
)

// document serves one of the API's documents, embedded in the binary.
func document(contentType string, body []byte) gin.HandlerFunc {
	return func(c *gin.Context) { c.Data(http.StatusOK, contentType, body) }
}

// swaggerUI serves GET /swagger/*any: the Swagger UI's files (package swaggerui) and, at
// doc.json, the Swagger 2.0 document; anything else is the router's 404.
func swaggerUI(swagger2 []byte) gin.HandlerFunc {
	doc, notFound := document(contentTypeJSON, swagger2), middleware.NotFound()
	return func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("any"), "/")
		switch {
		case name == "doc.json":
			doc(c)
		case !swaggerui.Serve(c.Writer, c.Request, name):
			notFound(c)
		}
	}
}

// NewRouter builds the gateway's HTTP handler with its middleware in a visible order: request id,
// tracing (only while it is on), recovery, security headers (the strictest policy; pages set their own), access log, metrics,
// error mapping (which answers what any later step records), CORS, body limit; then the routes,
// each /v1 route behind caller authentication, the per-caller limit and its scope.
func NewRouter(d Deps) (*gin.Engine, error) {
	r := newEngine()
	if err := r.SetTrustedProxies(d.TrustedProxies); err != nil {
		return nil, err
	}
	useMiddleware(r, d)
	ops := operations{readiness: d.Readiness, version: d.Version}
	r.GET("/healthz", ops.healthz)
	r.GET("/readyz", ops.readyz)
	// /metrics and the detailed readiness are on the admin listener (NewAdminRouter); an admin
	// caller reads the detailed readiness here too.
	v1 := r.Group("/v1", d.Authenticate...)
	registerV1(v1, d, ops)
	registerOptional(r, v1, d)
	registerDocuments(r)
	console.Register(r) // GET /console: the operator console (a static page; its API calls authenticate)
	return r, nil
}

// useMiddleware puts the middleware on the engine, in the order NewRouter tells.
func useMiddleware(r *gin.Engine, d Deps) {
	r.Use(middleware.RequestID())
	if telemetry.Enabled() {
		r.Use(middleware.Trace()) // off: no tracing step at all
	}
	r.Use(
		middleware.Recovery(d.Logger),
		middleware.SecurityHeaders(middleware.PolicyNone),
		middleware.AccessLog(d.Logger, d.AccessLogOut),
		d.HTTPMetrics.Middleware(),
		middleware.Errors(d.Logger),
		d.CORS,
		middleware.BodyLimit(d.MaxBodyBytes),
	)
}

// registerV1 adds the gateway's own /v1 routes, each behind its scope: sessions, contacts, chats,
// messages, sending and the admin status.
func registerV1(v1 *gin.RouterGroup, d Deps, ops operations) {
	sessions := sessionHandlers{src: d.Sessions, rendered: &atomic.Pointer[renderedList]{}}
	v1.GET("/sessions", d.Require("sessions:read"), sessions.list)
	v1.GET("/sessions/:sessionId", d.Require("sessions:read"), sessions.get)
	lifecycle := sessionLifecycle{connector: d.Connector, qr: d.QRCodes}
	v1.POST("/sessions/:sessionId/connect", d.Require("sessions:write"), lifecycle.connect)
	v1.GET("/sessions/:sessionId/qr", d.Require("sessions:read"), lifecycle.getQR)
	lists := listHandlers{contacts: d.Contacts, chats: d.Chats, messages: d.Messages}
	v1.GET("/sessions/:sessionId/contacts", d.Require("messages:read"), lists.listContacts)
	v1.GET("/sessions/:sessionId/chats", d.Require("messages:read"), lists.listChats)
	v1.GET("/sessions/:sessionId/chats/:chatId/messages", d.Require("messages:read"), lists.listChatMessages)
	send := sendHandlers{sender: d.Sender, idem: d.Idempotency}
	v1.POST("/sessions/:sessionId/messages", d.Require("messages:send"), send.send)

	v1.GET("/admin/status", d.Require("admin"), ops.status)
}

// registerOptional adds the routes of the parts this replica has: sync jobs, the webhook receiver,
// dead letters, the webhook target and the passthrough of /api/*.
func registerOptional(r *gin.Engine, v1 *gin.RouterGroup, d Deps) {
	if d.Sync != nil {
		registerSync(v1, d.Require, d.Sync, d.Streams)
	}
	if d.Webhooks != nil {
		registerWebhooks(r, d.Webhooks)
	}
	if d.DeadLetters != nil {
		registerDeadLetters(v1, d.Require, d.DeadLetters)
	}
	if d.WebhookTarget != nil {
		registerWebhookTarget(v1, d.Require, *d.WebhookTarget)
	}
	if d.Passthrough != nil {
		r.Any("/api/*path", append(append([]gin.HandlerFunc{}, d.Authenticate...), d.Passthrough)...)
	}
}

// registerDocuments adds the API's documents: OpenAPI 3 (what Swagger UI shows) and the Swagger
// 2.0 it is converted from (still at /swagger/doc.json).
func registerDocuments(r *gin.Engine) {
	r.GET("/openapi.json", document(contentTypeJSON, docs.OpenAPIJSON()))
	r.GET("/openapi.yaml", document(contentTypeYAML, docs.OpenAPIYAML()))
	r.GET("/swagger", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/swagger/index.html") })
	r.GET("/swagger/*any", middleware.PageSecurityHeaders(middleware.PolicySwaggerUI), swaggerUI(docs.SwaggerJSON()))
}

// newEngine is the base of every listener's router: problem answers for unknown routes and
// methods, request contexts that reach the handlers.
func newEngine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No redirect from /x to /x/ (or back): gin builds its Location from the request target, which
	// a caller may send in absolute form ("GET http://elsewhere/api"), so the redirect would point
	// wherever the caller likes. A path that differs by its slash is an unknown route (404).
	r.RedirectTrailingSlash = false
	r.ContextWithFallback = true
	r.NoRoute(middleware.NotFound())
	r.NoMethod(middleware.MethodNotAllowed())
	return r
}
