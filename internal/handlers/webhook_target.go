package handlers

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

// WebhookRegistrar is what the webhook-target admin route needs from the upstream
// (*upstream.Client): setting a session's webhook.
type WebhookRegistrar interface {
	SetWebhook(ctx context.Context, sessionID string, w upstream.Webhook) (upstream.WebhookSettings, error)
}

// WebhookTarget is what PUT /v1/admin/sessions/{sessionId}/webhook registers: the gateway's own
// webhook route, under its public URL, with the secret it verifies deliveries with.
type WebhookTarget struct {
	Registrar WebhookRegistrar
	// PublicURL is GATEWAY_PUBLIC_URL, the gateway's externally reachable base URL; empty refuses
	// the route with 409.
	PublicURL string
	// Secret is INBOXHUB_WEBHOOK_SECRET; empty refuses the route with 409. It is sent to the
	// upstream and never answered.
	Secret string
}

// webhookTargetPath is the gateway's webhook route, appended to the public URL.
const webhookTargetPath = "/webhooks/inbox-hub"

// upstreamWebhookEvents are the events the gateway subscribes a session to: every event name of
// the current upstream (session.updated is the gateway's own, never sent by the upstream).
var upstreamWebhookEvents = []string{
	webhooks.TypeMessageReceived, webhooks.TypeMessageSent, webhooks.TypeMessageAck,
	webhooks.TypeSessionConnected, webhooks.TypeSessionDisconnected, webhooks.TypeSessionQR,
	webhooks.TypeContactCreated, webhooks.TypeContactUpdated,
	webhooks.TypeConversationCreated, webhooks.TypeConversationUpdated,
}

// Bounds of a webhook secret the upstream accepts (docs/upstream.md, "Webhooks").
const (
	minWebhookSecret = 16
	maxWebhookSecret = 255
)

// WebhookTargetAnswer is the answer of PUT /v1/admin/sessions/{sessionId}/webhook.
type WebhookTargetAnswer struct {
	Data WebhookTargetResult `json:"data"`
}

// WebhookTargetResult is the webhook the upstream now has for the session; the secret is never
// part of it.
type WebhookTargetResult struct {
	SessionID  string   `json:"sessionId" example:"abc_123"`
	WebhookURL string   `json:"webhookUrl" example:"https://gateway.example.com/webhooks/inbox-hub"`
	Events     []string `json:"events" example:"message.received,session.connected"`
}

// registerWebhookTarget adds PUT /admin/sessions/:sessionId/webhook to the /v1 group, needing the
// admin scope.
func registerWebhookTarget(v1 gin.IRoutes, require func(scope string) gin.HandlerFunc, t WebhookTarget) {
	v1.PUT("/admin/sessions/:sessionId/webhook", require("admin"), webhookTargetHandlers{t: t}.register)
}

type webhookTargetHandlers struct{ t WebhookTarget }

// register godoc
//
//	@Summary		Point a session's webhooks at the gateway
//	@Description	Sets the session's webhook on the upstream (PUT /api/sessions/:id/webhook) to the gateway's own webhook route, GATEWAY_PUBLIC_URL + /webhooks/inbox-hub, signed with INBOXHUB_WEBHOOK_SECRET, for every event (message.received, message.sent, message.ack, session.connected, session.disconnected, session.qr, contact.created, contact.updated, conversation.created, conversation.updated), so that nobody copies the secret by hand. It replaces any webhook the session had. The secret is never answered. Takes no body and no query parameters; calling it again is harmless.
//	@Tags			admin
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["admin"]
//	@Param			sessionId	path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Success		200			{object}	WebhookTargetAnswer
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs admin"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"CONFLICT: GATEWAY_PUBLIC_URL or INBOXHUB_WEBHOOK_SECRET is not configured (or the secret is not 16..255 characters)"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		500			{object}	problem.Details	"INTERNAL"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/admin/sessions/{sessionId}/webhook [put]
func (h webhookTargetHandlers) register(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	if _, ok := queryParams(c); !ok {
		return
	}
	target, err := h.t.Webhook()
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	if _, err := h.t.Registrar.SetWebhook(middleware.Context(c), id, target); err != nil {
		middleware.Fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, WebhookTargetAnswer{Data: WebhookTargetResult{
		SessionID:  id,
		WebhookURL: target.URL, // what the gateway registered, whatever the upstream echoes
		Events:     target.Events,
	}})
}

// Webhook is the gateway's own webhook target, as this route registers it and as the /api
// passthrough sets it on the sessions it creates, or a 409 problem saying which setting is
// missing.
func (t WebhookTarget) Webhook() (upstream.Webhook, error) {
	var missing []string
	if t.PublicURL == "" {
		missing = append(missing, "GATEWAY_PUBLIC_URL (the gateway's externally reachable base URL)")
	}
	if t.Secret == "" {
		missing = append(missing, "INBOXHUB_WEBHOOK_SECRET (the secret webhooks are verified with)")
	}
	if len(missing) > 0 {
		return upstream.Webhook{}, problem.New(http.StatusConflict, problem.CodeConflict,
			"The gateway cannot register itself as the webhook target: "+strings.Join(missing, " and ")+
				" is not configured.")
	}
	if n := len(t.Secret); n < minWebhookSecret || n > maxWebhookSecret {
		return upstream.Webhook{}, problem.New(http.StatusConflict, problem.CodeConflict,
			"The gateway cannot register itself as the webhook target: INBOXHUB_WEBHOOK_SECRET must be 16 to 255 characters for the upstream to accept it.")
	}
	return upstream.Webhook{
		URL:    strings.TrimRight(t.PublicURL, "/") + webhookTargetPath,
		Secret: t.Secret,
		Events: upstreamWebhookEvents,
	}, nil
}
