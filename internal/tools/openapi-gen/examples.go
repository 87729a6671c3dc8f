package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// The examples the schemas cannot give. Everything else comes from the annotations: the field
// examples of the models (swag's example tags) and the problem codes of the answers.

// exampleRequestID is the requestId of the problem examples.
const exampleRequestID = "01JD3S9C6Q4W0M1N2P3R4S5T6V"

// exampleCaller is the caller named in the FORBIDDEN examples.
const exampleCaller = "crm-reader"

// problemDetails is the example detail of each problem code the annotations may name. A code
// missing here cannot be documented (openapi-gen fails), so a new code gets its sentence here.
var problemDetails = map[string]string{
	problem.CodeInvalidRequest:          "The request is not valid.",
	problem.CodeUnauthenticated:         "The API key is not valid.",
	problem.CodeForbidden:               "The caller does not hold the scope this route needs.",
	problem.CodeNotFound:                "Inbox Hub has no such resource.",
	problem.CodeSessionNotFound:         "No WhatsApp session has that sessionId.",
	problem.CodeJobNotFound:             "No sync job has that id (jobs are kept for a few days).",
	problem.CodeQRNotReady:              "The session has no QR code to show yet. Ask again after the time given.",
	problem.CodeMethodNotAllowed:        "This route does not take PATCH.",
	problem.CodeSessionNotConnected:     problem.SessionNotConnectedDetail,
	problem.CodeSessionAlreadyConnected: "The session is already connected: there is no QR code to scan.",
	problem.CodeConflict:                "The request conflicts with the current state.",
	problem.CodePayloadTooLarge:         "The request body is larger than 1048576 bytes.",
	problem.CodeUnsupportedMediaType:    "The request body must be application/json.",
	problem.CodeRateLimited:             "The Inbox Hub request quota is used up for now. Retry after the time given.",
	problem.CodeUpstreamAuthFailed:      "Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.",
	problem.CodeUpstreamError:           "Inbox Hub answered with an error the gateway cannot pass on.",
	problem.CodeUpstreamUnavailable:     "Inbox Hub is unavailable. Retry after the time given.",
	problem.CodeUpstreamTimeout:         "Inbox Hub did not answer in time.",
	problem.CodeInternal:                "An internal error occurred. Quote the requestId when reporting it.",
	problem.CodeWebhooksDisabled:        "Webhooks are disabled: the gateway has no INBOXHUB_WEBHOOK_SECRET to verify them with.",
}

// problemRetryAfter is the retryAfter of the examples of the codes that carry one.
var problemRetryAfter = map[string]time.Duration{
	problem.CodeQRNotReady:          2 * time.Second,
	problem.CodeRateLimited:         3 * time.Second,
	problem.CodeUpstreamUnavailable: 5 * time.Second,
}

// mapKeyExamples is the example key of each map-valued field ("component.field").
var mapKeyExamples = map[string]string{
	"handlers.ReadinessReport.checks": "redis",
	"syncjob.Job.progress":            "messages",
}

// paramExamples is the example of each path and header parameter, by name.
var paramExamples = map[string]any{
	"sessionId":           "demo_session",
	"chatId":              "34657032985@s.whatsapp.net",
	"jobId":               "0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11",
	"eventId":             "evt_3f0c2b7e8a11d5a3f2b1c431d5a3f2b1",
	"resource":            "messages",
	"path":                "sessions/demo_session/status",
	"Accept":              "image/png",
	"Idempotency-Key":     "send-3f2c9a7e-5b1d-4c8e",
	"If-None-Match":       `"Yc3zq0cJ2n8xV1oQbW4uKd9L"`,
	"X-Webhook-Signature": "sha256=" + strings.Repeat("0f", 32),
	"X-Webhook-Timestamp": "1764324000000",
	"X-Webhook-Event":     "message.received",
	"X-Webhook-Session":   "demo_session",
}

// requestBodies declares the bodies the annotations cannot: the passthrough's one annotation
// serves every method, but only its writes take a body (the upstream's own JSON).
var requestBodies = map[string]func() *openapi3.RequestBody{
	"POST /api/{path}": upstreamBody,
	"PUT /api/{path}":  upstreamBody,
}

func upstreamBody() *openapi3.RequestBody {
	return openapi3.NewRequestBody().
		WithDescription("The upstream route's JSON body, as Inbox Hub takes it (application/json only).").
		WithJSONSchema(openapi3.NewObjectSchema().WithAnyAdditionalProperties())
}

// requestExamples are the examples of the request bodies that are free-form JSON.
var requestExamples = map[string]any{
	// A delivery of the upstream (its current shape).
	"POST /webhooks/inbox-hub": map[string]any{
		"event": "message.received",
		"data": map[string]any{
			"sessionId": "demo_session", "session_db_id": 91,
			"message": map[string]any{
				"whatsappMessageId": "3EB0C431D5A3F2B1", "content": "Hola, ¿qué tal?",
				"chatId": "34657032985@s.whatsapp.net", "from": "34657032985@s.whatsapp.net",
				"to": "demo_session", "fromMe": false, "timestamp": 1762516680, "type": "text",
				"has_attachment": false, "media": nil,
			},
		},
	},
	// POST /api/messages/{sessionId}/send, the most used write.
	"POST /api/{path}": map[string]any{
		"to": "34657032985@s.whatsapp.net", "message": "Hola, su cita está confirmada para el jueves a las 10:00.", "type": "text",
	},
	// PUT /api/sessions/{id}/webhook.
	"PUT /api/{path}": map[string]any{
		"webhookUrl": "https://gateway.example.com/webhooks/inbox-hub", "webhookSecret": "example-webhook-secret-0123",
		"webhookEvents": []any{"message.received", "session.connected"},
	},
}

// responseExamples build the examples of the answers whose schema cannot give one (text, the
// upstream's free-form JSON) or would give a misleading one, by "METHOD /path status".
var responseExamples = map[string]func(doc *openapi3.T) (any, error){
	"GET /readyz 200": constant(map[string]any{"status": "ready"}),
	"GET /readyz 503": constant(map[string]any{"status": "draining"}),
	"GET /v1/admin/status 200": constant(map[string]any{"data": map[string]any{
		"status": "degraded",
		"checks": map[string]any{
			"redis": map[string]any{"ok": true, "detail": map[string]any{"embedded": false}},
			"upstream_token": map[string]any{"ok": false, "detail": map[string]any{"state": "auth_failed", "generation": 3},
				"error": "Inbox Hub rejected the gateway credentials (INBOXHUB_IDENTIFIER / INBOXHUB_PASSWORD / INBOXHUB_API_KEY)"},
			"upstream_breaker": map[string]any{"ok": true, "detail": map[string]any{"state": "closed"}},
		},
	}}),
	"GET /v1/sync-jobs/{jobId}/events 200": syncEvents,
	"GET /api/{path} 200": constant(map[string]any{
		"success": true,
		"data":    map[string]any{"id": 91, "sessionId": "demo_session", "status": "connected", "phoneNumber": "34657032985"},
	}),
	"POST /api/{path} 200": constant(map[string]any{
		"success": true, "message": "Mensaje enviado",
		"data": map[string]any{"messageId": "3EB0C431D5A3F2B1", "status": "sent"},
	}),
	"PUT /api/{path} 200": constant(map[string]any{
		"success": true, "message": "Webhook configurado",
		"data": map[string]any{"webhookUrl": "https://gateway.example.com/webhooks/inbox-hub", "webhookEvents": []any{"message.received", "session.connected"}},
	}),
	"DELETE /api/{path} 200": constant(map[string]any{"success": true, "message": "Sesión eliminada"}),
}

func constant(v any) func(*openapi3.T) (any, error) {
	return func(*openapi3.T) (any, error) { return v, nil }
}

// syncEvents is the start of a job's event stream: a progress event with the job, as the
// handler writes it, from the job schema's own example.
func syncEvents(doc *openapi3.T) (any, error) {
	job, ok := doc.Components.Schemas["syncjob.Job"]
	if !ok {
		return nil, fmt.Errorf("no syncjob.Job schema for the event stream's example")
	}
	ex, err := exampleOf(&openapi3.SchemaRef{Ref: "#/components/schemas/syncjob.Job", Value: job.Value}, "")
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(ex)
	if err != nil {
		return nil, err
	}
	return "id: 7\nevent: progress\ndata: " + string(raw) + "\n\n", nil
}
