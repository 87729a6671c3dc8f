package handlers

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

// WebhookReceiver is what POST /webhooks/inbox-hub needs (*webhooks.Service): it verifies, parses
// and accepts a delivery, leaving the work to its workers.
type WebhookReceiver interface {
	Receive(ctx context.Context, d webhooks.Delivery) (webhooks.Receipt, error)
}

// DeadLetterAdmin is what the dead-letter admin routes need (*webhooks.Service).
type DeadLetterAdmin interface {
	DeadLetters(ctx context.Context, page, limit int) (webhooks.DeadLetterPage, error)
	Replay(ctx context.Context, id string) (webhooks.DeadLetter, error)
	ReplayAll(ctx context.Context) (int, error)
}

// Headers of an Inbox Hub webhook delivery (docs/upstream.md, "Webhooks").
const (
	HeaderWebhookEvent     = "X-Webhook-Event"
	HeaderWebhookSession   = "X-Webhook-Session"
	HeaderWebhookTimestamp = "X-Webhook-Timestamp"
	HeaderWebhookSignature = "X-Webhook-Signature"
)

// codeWebhooksDisabled answers deliveries while no webhook secret is configured.
const codeWebhooksDisabled = problem.CodeWebhooksDisabled

// WebhookAnswer is the answer to an accepted delivery.
type WebhookAnswer struct {
	Data webhooks.Receipt `json:"data"`
}

// DeadLetterList is the answer of GET /v1/admin/dead-letters, newest first.
type DeadLetterList struct {
	Data []webhooks.DeadLetter `json:"data"`
	Meta DeadLetterListMeta    `json:"meta"`
}

// DeadLetterListMeta pages the dead letters.
type DeadLetterListMeta struct {
	Page  int `json:"page" example:"1"`
	Limit int `json:"limit" example:"50"`
	Total int `json:"total" example:"3"`
}

// DeadLetterAnswer is the answer of a replay: the dead letter that was queued again.
type DeadLetterAnswer struct {
	Data webhooks.DeadLetter `json:"data"`
}

// ReplayAllAnswer is the answer of POST /v1/admin/dead-letters/replay-all.
type ReplayAllAnswer struct {
	Data ReplayAllResult `json:"data"`
}

// ReplayAllResult says how many dead letters were queued again.
type ReplayAllResult struct {
	Replayed int `json:"replayed" example:"12"`
}

// registerWebhooks mounts POST /webhooks/inbox-hub on r. It runs without caller authentication:
// the upstream authenticates each delivery with its signature.
func registerWebhooks(r gin.IRoutes, recv WebhookReceiver) {
	r.POST("/webhooks/inbox-hub", webhookHandlers{recv: recv}.receive)
}

// registerDeadLetters adds the dead-letter admin routes to the /v1 group, each needing the admin
// scope.
func registerDeadLetters(v1 gin.IRoutes, require func(scope string) gin.HandlerFunc, admin DeadLetterAdmin) {
	h := deadLetterHandlers{admin: admin}
	v1.GET("/admin/dead-letters", require("admin"), h.list)
	v1.POST("/admin/dead-letters/replay-all", require("admin"), h.replayAll)
	v1.POST("/admin/dead-letters/:eventId/replay", require("admin"), h.replay)
}

type webhookHandlers struct{ recv WebhookReceiver }

// receive godoc
//
//	@Summary		Receive an Inbox Hub webhook
//	@Description	The target of the upstream's webhooks (set webhookUrl of a session to it). Not behind caller authentication: each delivery must carry X-Webhook-Signature, "sha256=" and the hex HMAC-SHA256 of the raw body under INBOXHUB_WEBHOOK_SECRET, and X-Webhook-Timestamp (Unix milliseconds) within the last 5 minutes (1 minute ahead at most). The signature covers the body only, so no header decides anything the body says: the event name and the session id are the signed body's (sessionId, else data.sessionId); an X-Webhook-Session that disagrees is refused with 400, and X-Webhook-Event or X-Webhook-Session alone (the body naming none) is read only for a session event, the header's session only when the gateway knows it. Both payload shapes and every event name of the upstream are read (message.received, message.sent, message.ack, session.connected, session.disconnected, session.qr, contact.created, contact.updated, conversation.created, conversation.updated, and the older message, message_status, session_status). A repeated message, contact or conversation event (the same whatsappMessageId, or the same signed body, whatever its timestamp) is answered 202 with duplicate true and done nothing with. A session event is a hint, answered 202 with hint true: the gateway reads the session's status from Inbox Hub (a few reads per session and minute at most, within the upstream quota) and acts only when it differs from the last one known, so a replayed delivery changes nothing. An unknown event name is answered 202 with ignored true. While the gateway's store (Redis) is unreachable, an authentic delivery is kept on the replica's disk (fsynced, GATEWAY_WEBHOOK_SPOOL_DIR) and answered 202 with spooled true, then handled in arrival order when the store returns; when that spool is full it is answered 503. The work (cache, automatic sync, forwarding to CRM_EVENTS_URL) happens after the answer.
//	@Tags			webhooks
//	@Accept			json
//	@Produce		json
//	@Param			X-Webhook-Signature	header		string	true	"sha256=<hex HMAC-SHA256(secret, raw body)>"
//	@Param			X-Webhook-Timestamp	header		string	true	"Unix milliseconds of the delivery"
//	@Param			X-Webhook-Event		header		string	false	"Event name (ignored when the body names one)"
//	@Param			X-Webhook-Session	header		string	false	"Session id: must equal the signed body's"
//	@Param			body				body		object	true	"The upstream's payload, either shape"
//	@Success		202					{object}	WebhookAnswer
//	@Failure		400					{object}	problem.Details	"INVALID_REQUEST: not JSON, no or a malformed session id, an X-Webhook-Session that disagrees with the body"
//	@Failure		401					{object}	problem.Details	"UNAUTHENTICATED: signature missing or wrong, timestamp missing or out of the window"
//	@Failure		413					{object}	problem.Details	"PAYLOAD_TOO_LARGE: over 256 KiB"
//	@Failure		500					{object}	problem.Details	"INTERNAL"
//	@Failure		503					{object}	problem.Details	"WEBHOOKS_DISABLED: INBOXHUB_WEBHOOK_SECRET is not configured; WEBHOOK_SPOOL_FULL: the store is unreachable and the local spool is full"
//	@Router			/webhooks/inbox-hub [post]
func (h webhookHandlers) receive(c *gin.Context) {
	rec, err := h.recv.Receive(middleware.Context(c), webhooks.Delivery{
		Event:     c.GetHeader(HeaderWebhookEvent),
		Session:   c.GetHeader(HeaderWebhookSession),
		Timestamp: c.GetHeader(HeaderWebhookTimestamp),
		Signature: c.GetHeader(HeaderWebhookSignature),
		Body:      c.Request.Body,
	})
	if err != nil {
		middleware.Fail(c, webhookProblem(err))
		return
	}
	c.JSON(http.StatusAccepted, WebhookAnswer{Data: rec})
}

// webhookProblem maps the receiver's errors to answers; others go to the common mapping.
func webhookProblem(err error) error {
	var tooLarge *webhooks.TooLargeError
	var auth *webhooks.AuthError
	var inv *webhooks.InvalidError
	switch {
	case errors.Is(err, webhooks.ErrNotConfigured):
		return &problem.Error{Status: http.StatusServiceUnavailable, Code: codeWebhooksDisabled,
			Detail: "Webhooks are disabled: the gateway has no INBOXHUB_WEBHOOK_SECRET to verify them with.", Cause: err}
	case errors.Is(err, webhooks.ErrSpoolFull):
		return &problem.Error{Status: http.StatusServiceUnavailable, Code: problem.CodeWebhookSpoolFull,
			Detail:     "The gateway cannot keep the webhook now: its store is unreachable and its local spool is full. It was not accepted.",
			RetryAfter: 30 * time.Second, Cause: err}
	case errors.As(err, &tooLarge):
		return problem.From(&http.MaxBytesError{Limit: tooLarge.Limit})
	case errors.As(err, &auth):
		return &problem.Error{Status: http.StatusUnauthorized, Code: problem.CodeUnauthenticated,
			Detail: "The webhook is not authenticated: " + auth.Reason + ".", Cause: err}
	case errors.As(err, &inv):
		return problem.Invalid("The webhook payload is not valid.", problem.Field(inv.Field, inv.Message))
	}
	return err
}

type deadLetterHandlers struct{ admin DeadLetterAdmin }

// list godoc
//
//	@Summary		List dead letters
//	@Description	Events the CRM events URL did not accept after every attempt (or refused with a 4xx), newest first.
//	@Tags			admin
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["admin"]
//	@Param			page	query		int	false	"Page, from 1"			minimum(1)	default(1)
//	@Param			limit	query		int	false	"Dead letters per page"	minimum(1)	maximum(100)	default(50)
//	@Success		200		{object}	DeadLetterList
//	@Failure		400		{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401		{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details	"FORBIDDEN: needs admin"
//	@Failure		429		{object}	problem.Details	"RATE_LIMITED"
//	@Failure		500		{object}	problem.Details	"INTERNAL"
//	@Router			/v1/admin/dead-letters [get]
func (h deadLetterHandlers) list(c *gin.Context) {
	p, ok := listParams(c, 50, false)
	if !ok {
		return
	}
	page, err := h.admin.DeadLetters(middleware.Context(c), p.Page, p.Limit)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, DeadLetterList{Data: page.Items, Meta: DeadLetterListMeta{Page: p.Page, Limit: p.Limit, Total: page.Total}})
}

// replay godoc
//
//	@Summary		Replay a dead letter
//	@Description	Queues the event again, at the tail of its session's events (after those waiting), and removes it from the dead letters. It keeps its id, so a CRM that did receive it can ignore it.
//	@Tags			admin
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["admin"]
//	@Param			eventId	path		string	true	"Event id (evt_ and 32 hex digits)"
//	@Success		202		{object}	DeadLetterAnswer
//	@Failure		400		{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401		{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details	"FORBIDDEN: needs admin"
//	@Failure		404		{object}	problem.Details	"NOT_FOUND"
//	@Failure		409		{object}	problem.Details	"CONFLICT: events are not forwarded (CRM_EVENTS_URL is not set)"
//	@Failure		429		{object}	problem.Details	"RATE_LIMITED"
//	@Failure		500		{object}	problem.Details	"INTERNAL"
//	@Router			/v1/admin/dead-letters/{eventId}/replay [post]
func (h deadLetterHandlers) replay(c *gin.Context) {
	id := c.Param("eventId")
	if !webhooks.ValidEventID(id) {
		middleware.Fail(c, problem.Invalid("The eventId is not valid.",
			problem.Field("eventId", "must be evt_ followed by 32 lower-case hex digits")))
		return
	}
	d, err := h.admin.Replay(middleware.Context(c), id)
	if err != nil {
		middleware.Fail(c, deadLetterProblem(err))
		return
	}
	c.JSON(http.StatusAccepted, DeadLetterAnswer{Data: d})
}

// replayAll godoc
//
//	@Summary		Replay every dead letter
//	@Description	Queues every dead letter again, oldest first, each at the tail of its session's events.
//	@Tags			admin
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["admin"]
//	@Success		202	{object}	ReplayAllAnswer
//	@Failure		401	{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403	{object}	problem.Details	"FORBIDDEN: needs admin"
//	@Failure		409	{object}	problem.Details	"CONFLICT: events are not forwarded (CRM_EVENTS_URL is not set)"
//	@Failure		429	{object}	problem.Details	"RATE_LIMITED"
//	@Failure		500	{object}	problem.Details	"INTERNAL"
//	@Router			/v1/admin/dead-letters/replay-all [post]
func (h deadLetterHandlers) replayAll(c *gin.Context) {
	if _, ok := queryParams(c); !ok {
		return
	}
	n, err := h.admin.ReplayAll(middleware.Context(c))
	if err != nil {
		middleware.Fail(c, deadLetterProblem(err))
		return
	}
	c.JSON(http.StatusAccepted, ReplayAllAnswer{Data: ReplayAllResult{Replayed: n}})
}

func deadLetterProblem(err error) error {
	switch {
	case errors.Is(err, webhooks.ErrDeadLetterNotFound):
		return &problem.Error{Status: http.StatusNotFound, Code: problem.CodeNotFound,
			Detail: "No dead letter has that id (it may have been replayed already).", Cause: err}
	case errors.Is(err, webhooks.ErrForwardingDisabled):
		return &problem.Error{Status: http.StatusConflict, Code: problem.CodeConflict,
			Detail: "Events are not forwarded (CRM_EVENTS_URL is not set), so there is nothing to replay them to.", Cause: err}
	}
	return err
}
