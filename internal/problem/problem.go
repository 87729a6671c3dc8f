// Package problem is the gateway's one error answer: RFC 9457 problem details
// (application/problem+json) with a stable machine-readable code, and the mapping from the
// program's typed errors to those codes and HTTP statuses.
//
// It owns the codes, their statuses, titles and details, and the Kinds of failure that the
// packages below the HTTP layer give their errors. It imports no package of the gateway, so that
// every layer may import it: the upstream client and the token source classify their own errors
// (their sentinels are made with Sentinel, their error types implement Classified and Waiting), and
// From answers by kind, without knowing those packages. It must not put an error's internals
// (causes, addresses, upstream text) into an answer: a 500 says only that something failed and
// gives the request id, and the full error goes to the log.
package problem

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// Codes of the gateway's error answers, each always answered with the same status.
const (
	CodeInvalidRequest          = "INVALID_REQUEST"
	CodeUnauthenticated         = "UNAUTHENTICATED"
	CodeForbidden               = "FORBIDDEN"
	CodeNotFound                = "NOT_FOUND"
	CodeSessionNotFound         = "SESSION_NOT_FOUND"
	CodeJobNotFound             = "JOB_NOT_FOUND"
	CodeQRNotReady              = "QR_NOT_READY"
	CodeMethodNotAllowed        = "METHOD_NOT_ALLOWED"
	CodeSessionNotConnected     = "SESSION_NOT_CONNECTED"
	CodeSessionAlreadyConnected = "SESSION_ALREADY_CONNECTED"
	CodeConflict                = "CONFLICT"
	CodePayloadTooLarge         = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType    = "UNSUPPORTED_MEDIA_TYPE"
	CodeRateLimited             = "RATE_LIMITED"
	CodeUpstreamAuthFailed      = "UPSTREAM_AUTH_FAILED"
	CodeUpstreamError           = "UPSTREAM_ERROR"
	CodeUpstreamUnavailable     = "UPSTREAM_UNAVAILABLE"
	CodeUpstreamTimeout         = "UPSTREAM_TIMEOUT"
	CodeInternal                = "INTERNAL"
	CodeWebhooksDisabled        = "WEBHOOKS_DISABLED"
	CodeWebhookSpoolFull        = "WEBHOOK_SPOOL_FULL"
)

// ContentType is the media type of every error answer.
const ContentType = "application/problem+json"

// Details is the body of every error answer (RFC 9457).
type Details struct {
	Type       string       `json:"type" example:"urn:inboxhub-gateway:problem:session-not-connected"`
	Title      string       `json:"title" example:"Session not connected"`
	Status     int          `json:"status" example:"409"`
	Detail     string       `json:"detail" example:"The WhatsApp session is not connected. Connect it (POST /v1/sessions/{sessionId}/connect), then scan the QR code (GET /v1/sessions/{sessionId}/qr)."`
	Code       string       `json:"code" example:"SESSION_NOT_CONNECTED"`
	RequestID  string       `json:"requestId" example:"01JD3S9C6Q4W0M1N2P3R4S5T6V"`
	Errors     []FieldError `json:"errors,omitempty"`
	RetryAfter int          `json:"retryAfter,omitempty" example:"30"`
}

// FieldError names one offending input and what is wrong with it.
type FieldError struct {
	Field   string `json:"field" example:"limit"`
	Message string `json:"message" example:"must be an integer from 1 to 100"`
}

// Error is an error that already knows its answer. Handlers return it (through gin's c.Error) for
// failures they detect themselves; everything else is mapped by From.
type Error struct {
	Status     int
	Code       string
	Detail     string
	Fields     []FieldError
	RetryAfter time.Duration
	// Cause is logged, never answered.
	Cause error
}

func (e *Error) Error() string {
	msg := e.Code + ": " + e.Detail
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an error answered with the given status, code and detail.
func New(status int, code, detail string) *Error {
	return &Error{Status: status, Code: code, Detail: detail}
}

// Invalid returns a 400 INVALID_REQUEST naming the offending fields.
func Invalid(detail string, fields ...FieldError) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Detail: detail, Fields: fields}
}

// Field is a shorthand for a FieldError.
func Field(name, message string) FieldError { return FieldError{Field: name, Message: message} }

// From maps any error to its answer. Unknown errors become a 500 INTERNAL whose detail says
// nothing about the cause (the cause stays in Cause, for the log).
func From(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
			Detail: fmt.Sprintf("The request body is larger than %d bytes.", mbe.Limit), Cause: err}
	}
	wrap := func(status int, code, detail string) *Error {
		return &Error{Status: status, Code: code, Detail: detail, RetryAfter: retryAfter(err), Cause: err}
	}
	switch kindOf(err) {
	case KindUpstreamAuthFailed:
		return wrap(http.StatusBadGateway, CodeUpstreamAuthFailed,
			"Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.")
	case KindRateLimited:
		e := wrap(http.StatusTooManyRequests, CodeRateLimited, "The Inbox Hub request quota is used up for now. Retry after the time given.")
		if e.RetryAfter <= 0 {
			e.RetryAfter = time.Second
		}
		return e
	case KindSessionNotFound:
		return wrap(http.StatusNotFound, CodeSessionNotFound, "No WhatsApp session has that sessionId.")
	case KindSessionNotConnected:
		return wrap(http.StatusConflict, CodeSessionNotConnected, SessionNotConnectedDetail)
	case KindNotFound:
		return wrap(http.StatusNotFound, CodeNotFound, "Inbox Hub has no such resource.")
	case KindConflict:
		return wrap(http.StatusConflict, CodeConflict, "The request conflicts with the current state in Inbox Hub.")
	case KindUpstreamUnavailable:
		e := wrap(http.StatusServiceUnavailable, CodeUpstreamUnavailable, "Inbox Hub is unavailable. Retry after the time given.")
		if e.RetryAfter <= 0 {
			e.RetryAfter = 5 * time.Second
		}
		return e
	case KindTokenStoreUnavailable:
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUpstreamUnavailable,
			Detail:     "The gateway cannot reach its token store; it will recover on its own. Retry after the time given.",
			RetryAfter: 5 * time.Second, Cause: err}
	case KindStoreUnavailable:
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUpstreamUnavailable,
			Detail:     "The gateway cannot reach its store for now (a failover or a restart); it will recover on its own. Retry after the time given.",
			RetryAfter: 2 * time.Second, Cause: err}
	case KindTimeout:
		return wrap(http.StatusGatewayTimeout, CodeUpstreamTimeout, "Inbox Hub did not answer in time.")
	case KindUpstreamError:
		return wrap(http.StatusBadGateway, CodeUpstreamError, "Inbox Hub answered with an error the gateway cannot pass on.")
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Detail: "An internal error occurred. Quote the requestId when reporting it.", Cause: err}
}

// SessionNotConnectedDetail tells the caller how to reconnect a session.
const SessionNotConnectedDetail = "The WhatsApp session is not connected. Connect it (POST /v1/sessions/{sessionId}/connect), then scan the QR code (GET /v1/sessions/{sessionId}/qr) with the phone."

// retryAfter finds a wait carried by the error's tree, if any: the first rate limit's, else the
// first one.
func retryAfter(err error) time.Duration {
	var first Waiting
	var limit Waiting
	walk(err, func(e error) bool {
		w, ok := e.(Waiting)
		if !ok {
			return false
		}
		if c, ok := e.(Classified); ok && c.ProblemKind() == KindRateLimited {
			limit = w
			return true
		}
		if first == nil {
			first = w
		}
		return false
	})
	switch {
	case limit != nil:
		return limit.ProblemRetryAfter()
	case first != nil:
		return first.ProblemRetryAfter()
	}
	return 0
}

// Body builds the answer's body for a request.
func (e *Error) Body(requestID string) Details {
	d := Details{
		Type:      "urn:inboxhub-gateway:problem:" + strings.ToLower(strings.ReplaceAll(e.Code, "_", "-")),
		Title:     title(e.Code),
		Status:    e.Status,
		Detail:    e.Detail,
		Code:      e.Code,
		RequestID: requestID,
		Errors:    e.Fields,
	}
	if e.RetryAfter > 0 {
		d.RetryAfter = RetryAfterSeconds(e.RetryAfter)
	}
	return d
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1, as Retry-After needs.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

var titles = map[string]string{
	CodeInvalidRequest:          "Invalid request",
	CodeUnauthenticated:         "Authentication required",
	CodeForbidden:               "Forbidden",
	CodeNotFound:                "Not found",
	CodeSessionNotFound:         "Session not found",
	CodeJobNotFound:             "Sync job not found",
	CodeQRNotReady:              "QR code not ready",
	CodeMethodNotAllowed:        "Method not allowed",
	CodeSessionNotConnected:     "Session not connected",
	CodeSessionAlreadyConnected: "Session already connected",
	CodeConflict:                "Conflict",
	CodePayloadTooLarge:         "Payload too large",
	CodeUnsupportedMediaType:    "Unsupported media type",
	CodeRateLimited:             "Rate limited",
	CodeUpstreamAuthFailed:      "Upstream authentication failed",
	CodeUpstreamError:           "Upstream error",
	CodeUpstreamUnavailable:     "Upstream unavailable",
	CodeUpstreamTimeout:         "Upstream timeout",
	CodeInternal:                "Internal error",
	CodeWebhooksDisabled:        "Webhooks disabled",
}

func title(code string) string {
	if t, ok := titles[code]; ok {
		return t
	}
	return http.StatusText(http.StatusInternalServerError)
}
