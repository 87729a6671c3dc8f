package problem_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/tokens"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// TestFromAnswers pins every answer From gives to the errors of the packages below it (the
// upstream client, the token source, the standard library), byte for byte as the body is written,
// including chains that hold several of them: which one wins, and which wait is answered.
func TestFromAnswers(t *testing.T) {
	rateLimited := &upstream.RateLimitError{RetryAfter: 7 * time.Second, Source: "gateway"}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"auth failed", fmt.Errorf("login: %w", upstream.ErrAuthFailed), `{"type":"urn:inboxhub-gateway:problem:upstream-auth-failed","title":"Upstream authentication failed","status":502,"detail":"Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.","code":"UPSTREAM_AUTH_FAILED","requestId":"req-1"}`},
		{"unauthorized", upstream.ErrUnauthorized, `{"type":"urn:inboxhub-gateway:problem:upstream-auth-failed","title":"Upstream authentication failed","status":502,"detail":"Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.","code":"UPSTREAM_AUTH_FAILED","requestId":"req-1"}`},
		{"rate limited, no wait", upstream.ErrRateLimited, `{"type":"urn:inboxhub-gateway:problem:rate-limited","title":"Rate limited","status":429,"detail":"The Inbox Hub request quota is used up for now. Retry after the time given.","code":"RATE_LIMITED","requestId":"req-1","retryAfter":1}`},
		{"rate limited by the quota", rateLimited, `{"type":"urn:inboxhub-gateway:problem:rate-limited","title":"Rate limited","status":429,"detail":"The Inbox Hub request quota is used up for now. Retry after the time given.","code":"RATE_LIMITED","requestId":"req-1","retryAfter":7}`},
		{"session not found", upstream.ErrSessionNotFound, `{"type":"urn:inboxhub-gateway:problem:session-not-found","title":"Session not found","status":404,"detail":"No WhatsApp session has that sessionId.","code":"SESSION_NOT_FOUND","requestId":"req-1"}`},
		{"session not connected", upstream.ErrSessionNotConnected, `{"type":"urn:inboxhub-gateway:problem:session-not-connected","title":"Session not connected","status":409,"detail":"The WhatsApp session is not connected. Connect it (POST /v1/sessions/{sessionId}/connect), then scan the QR code (GET /v1/sessions/{sessionId}/qr) with the phone.","code":"SESSION_NOT_CONNECTED","requestId":"req-1"}`},
		{"not found", upstream.ErrNotFound, `{"type":"urn:inboxhub-gateway:problem:not-found","title":"Not found","status":404,"detail":"Inbox Hub has no such resource.","code":"NOT_FOUND","requestId":"req-1"}`},
		{"conflict", upstream.ErrConflict, `{"type":"urn:inboxhub-gateway:problem:conflict","title":"Conflict","status":409,"detail":"The request conflicts with the current state in Inbox Hub.","code":"CONFLICT","requestId":"req-1"}`},
		{"unavailable, no wait", upstream.ErrUnavailable, `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":5}`},
		{"token store", fmt.Errorf("%w (redis down)", tokens.ErrStoreUnavailable), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"The gateway cannot reach its token store; it will recover on its own. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":5}`},
		{"timeout", upstream.ErrTimeout, `{"type":"urn:inboxhub-gateway:problem:upstream-timeout","title":"Upstream timeout","status":504,"detail":"Inbox Hub did not answer in time.","code":"UPSTREAM_TIMEOUT","requestId":"req-1"}`},
		{"deadline", context.DeadlineExceeded, `{"type":"urn:inboxhub-gateway:problem:upstream-timeout","title":"Upstream timeout","status":504,"detail":"Inbox Hub did not answer in time.","code":"UPSTREAM_TIMEOUT","requestId":"req-1"}`},
		{"token wait", tokens.ErrWaitTimeout, `{"type":"urn:inboxhub-gateway:problem:upstream-timeout","title":"Upstream timeout","status":504,"detail":"Inbox Hub did not answer in time.","code":"UPSTREAM_TIMEOUT","requestId":"req-1"}`},
		{"bad response", fmt.Errorf("decode: %w", upstream.ErrBadResponse), `{"type":"urn:inboxhub-gateway:problem:upstream-error","title":"Upstream error","status":502,"detail":"Inbox Hub answered with an error the gateway cannot pass on.","code":"UPSTREAM_ERROR","requestId":"req-1"}`},
		{"upstream error 422", &upstream.Error{Status: 422, Code: "VALIDATION_ERROR"}, `{"type":"urn:inboxhub-gateway:problem:upstream-error","title":"Upstream error","status":502,"detail":"Inbox Hub answered with an error the gateway cannot pass on.","code":"UPSTREAM_ERROR","requestId":"req-1"}`},
		{"upstream error 429", &upstream.Error{Status: 429, RetryAfter: 3 * time.Second}, `{"type":"urn:inboxhub-gateway:problem:rate-limited","title":"Rate limited","status":429,"detail":"The Inbox Hub request quota is used up for now. Retry after the time given.","code":"RATE_LIMITED","requestId":"req-1","retryAfter":3}`},
		{"upstream error 503", &upstream.Error{Status: 503, RetryAfter: 9 * time.Second}, `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":9}`},
		{"upstream error 404 session", &upstream.Error{Status: 404, Code: upstream.CodeSessionNotFound}, `{"type":"urn:inboxhub-gateway:problem:session-not-found","title":"Session not found","status":404,"detail":"No WhatsApp session has that sessionId.","code":"SESSION_NOT_FOUND","requestId":"req-1"}`},
		{"upstream error 401 key", &upstream.Error{Status: 401, Code: upstream.CodeInvalidAPIKey}, `{"type":"urn:inboxhub-gateway:problem:upstream-auth-failed","title":"Upstream authentication failed","status":502,"detail":"Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.","code":"UPSTREAM_AUTH_FAILED","requestId":"req-1"}`},
		{"upstream error 400 disconnected", &upstream.Error{Status: 400, Code: upstream.CodeSessionDisconnected}, `{"type":"urn:inboxhub-gateway:problem:session-not-connected","title":"Session not connected","status":409,"detail":"The WhatsApp session is not connected. Connect it (POST /v1/sessions/{sessionId}/connect), then scan the QR code (GET /v1/sessions/{sessionId}/qr) with the phone.","code":"SESSION_NOT_CONNECTED","requestId":"req-1"}`},
		{"canceled", context.Canceled, `{"type":"urn:inboxhub-gateway:problem:internal","title":"Internal error","status":500,"detail":"An internal error occurred. Quote the requestId when reporting it.","code":"INTERNAL","requestId":"req-1"}`},
		{"internal", errors.New("secret internals"), `{"type":"urn:inboxhub-gateway:problem:internal","title":"Internal error","status":500,"detail":"An internal error occurred. Quote the requestId when reporting it.","code":"INTERNAL","requestId":"req-1"}`},
		{"body too large", &http.MaxBytesError{Limit: 1024}, `{"type":"urn:inboxhub-gateway:problem:payload-too-large","title":"Payload too large","status":413,"detail":"The request body is larger than 1024 bytes.","code":"PAYLOAD_TOO_LARGE","requestId":"req-1"}`},
		{"own answer", fmt.Errorf("x: %w", problem.New(http.StatusConflict, problem.CodeSessionAlreadyConnected, "Already.")), `{"type":"urn:inboxhub-gateway:problem:session-already-connected","title":"Session already connected","status":409,"detail":"Already.","code":"SESSION_ALREADY_CONNECTED","requestId":"req-1"}`},
		{"session beats timeout", errors.Join(upstream.ErrTimeout, upstream.ErrSessionNotFound), `{"type":"urn:inboxhub-gateway:problem:session-not-found","title":"Session not found","status":404,"detail":"No WhatsApp session has that sessionId.","code":"SESSION_NOT_FOUND","requestId":"req-1"}`},
		{"auth beats rate limit", errors.Join(rateLimited, upstream.ErrAuthFailed), `{"type":"urn:inboxhub-gateway:problem:upstream-auth-failed","title":"Upstream authentication failed","status":502,"detail":"Inbox Hub rejected the gateway's credentials. The operators have been alerted through /readyz and metrics.","code":"UPSTREAM_AUTH_FAILED","requestId":"req-1","retryAfter":7}`},
		{"unavailable beats token store", errors.Join(tokens.ErrStoreUnavailable, upstream.ErrUnavailable), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":5}`},
		{"token store beats deadline", errors.Join(context.DeadlineExceeded, tokens.ErrStoreUnavailable), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"The gateway cannot reach its token store; it will recover on its own. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":5}`},
		{"unavailable beats deadline", errors.Join(context.DeadlineExceeded, &upstream.Error{Status: 502}), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":5}`},
		{"deadline beats upstream error", errors.Join(&upstream.Error{Status: 418}, context.DeadlineExceeded), `{"type":"urn:inboxhub-gateway:problem:upstream-timeout","title":"Upstream timeout","status":504,"detail":"Inbox Hub did not answer in time.","code":"UPSTREAM_TIMEOUT","requestId":"req-1"}`},
		{"rate-limit wait beats an earlier wait", errors.Join(&upstream.Error{Status: 503, RetryAfter: 9 * time.Second}, rateLimited), `{"type":"urn:inboxhub-gateway:problem:rate-limited","title":"Rate limited","status":429,"detail":"The Inbox Hub request quota is used up for now. Retry after the time given.","code":"RATE_LIMITED","requestId":"req-1","retryAfter":7}`},
		{"first of two waits", errors.Join(&upstream.Error{Status: 503, RetryAfter: 9 * time.Second}, &upstream.Error{Status: 502, RetryAfter: 4 * time.Second}), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":9}`},
		{"wait of another error", errors.Join(upstream.ErrUnavailable, &upstream.Error{Status: 400, RetryAfter: 2 * time.Second}), `{"type":"urn:inboxhub-gateway:problem:upstream-unavailable","title":"Upstream unavailable","status":503,"detail":"Inbox Hub is unavailable. Retry after the time given.","code":"UPSTREAM_UNAVAILABLE","requestId":"req-1","retryAfter":2}`},
	}
	for _, tc := range cases {
		body, err := json.Marshal(problem.From(tc.err).Body("req-1"))
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != tc.want {
			t.Errorf("%s: From answers\n%s\nwant\n%s", tc.name, body, tc.want)
		}
	}
}
