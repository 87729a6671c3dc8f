package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/idempotency"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// MessageSender is what the send route needs from the upstream.
type MessageSender interface {
	SendText(ctx context.Context, sessionID, toJID, text string) (upstream.Message, error)
}

// IdempotencyStore runs a request once per caller, Idempotency-Key and request fingerprint, and
// replays its stored answer to repeats (see package idempotency).
type IdempotencyStore interface {
	Do(ctx context.Context, scope, key, fingerprint string, fn func(context.Context) (idempotency.Response, error)) (idempotency.Response, bool, error)
}

// HeaderIdempotentReplayed marks an answer replayed from an earlier request with the same key.
const HeaderIdempotentReplayed = "Idempotent-Replayed"

// SendMessageRequest is the body of POST /v1/sessions/{sessionId}/messages.
type SendMessageRequest struct {
	// To is a phone number with its country code in any common format (+34 657 03 29 85,
	// 0034657032985, (+34) 657-03-29-85) or a JID (…@s.whatsapp.net, …@c.us, …@g.us, …@lid).
	To string `json:"to" example:"+34 657 03 29 85"`
	// Text is the message, 1 to 4096 characters, not blank.
	Text string `json:"text" example:"Hola, su cita está confirmada para el jueves a las 10:00."`
}

// MessageAnswer is the answer of the send route: the message sent, in the same schema as the
// chat messages route, the sync items and the webhook events (crm.Message).
type MessageAnswer struct {
	Data crm.Message `json:"data"`
	Meta ObjectMeta  `json:"meta"`
}

type sendHandlers struct {
	sender MessageSender
	idem   IdempotencyStore // nil: Idempotency-Key is validated but not honoured
}

// send godoc
//
//	@Summary		Send a text message
//	@Description	Sends a WhatsApp text message from the session. "to" is a phone number with its country code in any common format (spaces, dashes, dots, parentheses, a leading + or 00 are accepted; 8 to 15 digits) or a JID (@s.whatsapp.net, @g.us, @lid; @c.us is rewritten to @s.whatsapp.net); the answer is the message in the schema of the chat messages route, its "to" the JID it was sent to. The body must be JSON (Content-Type: application/json) with no other fields.
//	@Description	With an Idempotency-Key header (1 to 128 printable ASCII characters, a UUID for example) the send is safe to retry: a repeat with the same key and body, within 24 h, gets the first answer again with Idempotent-Replayed: true and sends nothing; a repeat that arrives while the first is still being sent waits for it; the same key with another body is 409 CONFLICT. A send that failed is not remembered, so a retry with its key sends.
//	@Tags			messages
//	@Accept			json
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["messages:send"]
//	@Param			sessionId		path		string				true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			Idempotency-Key	header		string				false	"Makes the send safe to retry (1 to 128 printable ASCII characters)"
//	@Param			message			body		SendMessageRequest	true	"Recipient and text"
//	@Success		201				{object}	MessageAnswer
//	@Header			201				{string}	Idempotent-Replayed	"true when the answer is replayed from an earlier request with the same Idempotency-Key"
//	@Failure		400				{object}	problem.Details		"INVALID_REQUEST: bad sessionId, body, recipient, text, Idempotency-Key or unknown query parameters"
//	@Failure		401				{object}	problem.Details		"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details		"FORBIDDEN: needs messages:send"
//	@Failure		404				{object}	problem.Details		"SESSION_NOT_FOUND"
//	@Failure		409				{object}	problem.Details		"SESSION_NOT_CONNECTED, or CONFLICT: Idempotency-Key reused with another body, or its first request still in progress (with Retry-After)"
//	@Header			409				{integer}	Retry-After			"Seconds to wait when the key's first request is still in progress"
//	@Failure		413				{object}	problem.Details		"PAYLOAD_TOO_LARGE"
//	@Failure		415				{object}	problem.Details		"UNSUPPORTED_MEDIA_TYPE: the body is not application/json"
//	@Failure		429				{object}	problem.Details		"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details		"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details		"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details		"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/messages [post]
func (h sendHandlers) send(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	if _, ok := queryParams(c); !ok {
		return
	}
	key, ok := idempotencyKey(c)
	if !ok {
		return
	}
	var req SendMessageRequest
	if !bindJSON(c, &req) {
		return
	}
	to, ok := checkSend(c, req)
	if !ok {
		return
	}
	run := func(ctx context.Context) (idempotency.Response, error) {
		m, err := h.sender.SendText(ctx, id, to, req.Text)
		if err != nil {
			return idempotency.Response{}, err
		}
		body, err := json.Marshal(MessageAnswer{Data: sentMessage(m, to, req.Text)})
		if err != nil {
			return idempotency.Response{}, err
		}
		return idempotency.Response{Status: http.StatusCreated, ContentType: "application/json; charset=utf-8", Body: body}, nil
	}
	var resp idempotency.Response
	var err error
	if key == "" || h.idem == nil {
		resp, err = run(middleware.Context(c))
	} else {
		canonical, _ := json.Marshal(req) // the fields as sent, without the body's whitespace or key order
		fp := idempotency.Fingerprint(c.Request.Method, c.Request.URL.Path, canonical)
		var replayed bool
		resp, replayed, err = h.idem.Do(middleware.Context(c), callerScope(c), key, fp, run)
		if replayed {
			c.Header(HeaderIdempotentReplayed, "true")
		}
	}
	if err != nil {
		middleware.Fail(c, idempotencyProblem(err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(resp.Status, resp.ContentType, resp.Body)
}

// checkSend validates a send request and returns the recipient's JID, or answers 400 naming every
// offending field.
func checkSend(c *gin.Context, req SendMessageRequest) (string, bool) {
	var fields []problem.FieldError
	to, err := NormalizeRecipient(req.To)
	if err != nil {
		fields = append(fields, problem.Field("to", err.Error()))
	}
	if msg := checkText(req.Text); msg != "" {
		fields = append(fields, problem.Field("text", msg))
	}
	if len(fields) > 0 {
		middleware.Fail(c, problem.Invalid("The message cannot be sent as given.", fields...))
		return "", false
	}
	return to, true
}

// sentMessage is the answer of a send: the upstream's message, completed with what was asked
// (to is the recipient's JID, also the chat's when the upstream names none).
func sentMessage(m upstream.Message, to, text string) crm.Message {
	out := crm.NormalizeMessage(to, m)
	out.FromMe = true
	if out.To == "" {
		out.To = to
	}
	if out.Text == "" {
		out.Text = text
	}
	if out.Status == "" {
		out.Status = "pending"
	}
	if out.Timestamp == nil {
		out.Timestamp = timePtr(time.Now())
	}
	return out
}

// callerScope separates callers' Idempotency-Keys: the authentication method and caller name
// (so that an API key named like a JWT subject never shares keys with it).
func callerScope(c *gin.Context) string {
	if caller, ok := auth.CallerOf(c); ok {
		return caller.Method + "/" + caller.Name
	}
	return "unauthenticated/" + c.GetString(middleware.KeyCaller)
}

// idempotencyProblem answers the idempotency store's own failures; the send's errors pass as they
// are, to the one error mapping.
func idempotencyProblem(err error) error {
	switch {
	case errors.Is(err, idempotency.ErrKeyReused):
		return &problem.Error{Status: http.StatusConflict, Code: problem.CodeConflict, Cause: err,
			Detail: "This Idempotency-Key was already used for a different request (another session, recipient or text). Use a new key for a new message."}
	case errors.Is(err, idempotency.ErrInProgress):
		return &problem.Error{Status: http.StatusConflict, Code: problem.CodeConflict, Cause: err, RetryAfter: time.Second,
			Detail: "A request with this Idempotency-Key is still being processed. Retry after the time given to get its answer."}
	case errors.Is(err, idempotency.ErrUnavailable):
		return &problem.Error{Status: http.StatusServiceUnavailable, Code: problem.CodeUpstreamUnavailable, Cause: err, RetryAfter: 5 * time.Second,
			Detail: "The gateway cannot reach its idempotency store, so the message was not sent. Retry after the time given."}
	}
	return err
}
