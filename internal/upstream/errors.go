package upstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// Upstream error codes the client gives meaning to (docs/upstream.md, "Envelopes").
const (
	CodeMissingAPIKey            = "MISSING_API_KEY"
	CodeInvalidAPIKey            = "INVALID_API_KEY"
	CodeSessionNotFound          = "SESSION_NOT_FOUND"
	CodeSessionNotConnected      = "SESSION_NOT_CONNECTED"
	CodeSessionDisconnected      = "SESSION_DISCONNECTED"
	CodeRateLimitExceeded        = "RATE_LIMIT_EXCEEDED"
	CodeMessageRateLimitExceeded = "MESSAGE_RATE_LIMIT_EXCEEDED"
)

// maxMessageBytes bounds the upstream text kept in an Error.
const maxMessageBytes = 300

// errKind says what went wrong when there is no usable answer.
type errKind uint8

const (
	kindAnswer      errKind = iota // the upstream answered with an error status or envelope
	kindConnection                 // no answer: dial, reset, broken body
	kindTimeout                    // the attempt's or the caller's deadline passed
	kindCanceled                   // the caller's context was canceled
	kindBreakerOpen                // the circuit breaker refused the call
	kindBadResponse                // an answer the client could not read
)

// Error is a failed upstream call. Status, Code and Message come from the upstream's answer
// (Status is 0 when there was none); Method and Route name the call by its route pattern (for
// example "/api/contacts/:sessionId"), never by its real path. Message has credentials and tokens
// redacted. RetryAfter is set for 429, for 503 with a Retry-After header and for an open breaker.
//
// errors.Is maps an Error to at most one sentinel: 401 -> ErrUnauthorized (ErrAuthFailed for
// MISSING_API_KEY/INVALID_API_KEY and for a login); 404 + SESSION_NOT_FOUND -> ErrSessionNotFound;
// other 404 -> ErrNotFound; SESSION_NOT_CONNECTED/SESSION_DISCONNECTED (400, 409, ...) ->
// ErrSessionNotConnected; 409 -> ErrConflict; 429 -> ErrRateLimited; 5xx, connection failure and an
// open breaker -> ErrUnavailable; a deadline -> ErrTimeout; an unreadable answer -> ErrBadResponse.
// A rate-limited Error also answers errors.As with a *RateLimitError (Source "upstream"), and a
// canceled call unwraps to context.Canceled (a deadline to context.DeadlineExceeded).
type Error struct {
	Status     int
	Code       string
	Message    string
	Method     string
	Route      string
	RetryAfter time.Duration

	kind   errKind
	login  bool  // the call was a login: 401 and 403 mean the credentials are wrong
	dial   bool  // the connection was never made, so the request never reached the upstream
	caller bool  // the caller's context ended the call
	cause  error // context or network error, without URL or headers
}

// Error describes the failure by method, route pattern, status, code and the upstream's text.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("upstream: ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.Route)
	switch e.kind {
	case kindAnswer:
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(e.Status))
		if e.Code != "" {
			b.WriteByte(' ')
			b.WriteString(e.Code)
		}
		if e.Message != "" {
			b.WriteString(": ")
			b.WriteString(e.Message)
		}
	case kindConnection:
		b.WriteString(": connection failed")
		if e.cause != nil {
			b.WriteString(": ")
			b.WriteString(e.cause.Error())
		}
	case kindTimeout:
		b.WriteString(": timed out")
	case kindCanceled:
		b.WriteString(": canceled")
	case kindBreakerOpen:
		b.WriteString(": circuit breaker open")
	case kindBadResponse:
		b.WriteString(": bad response")
		if e.Status != 0 {
			b.WriteString(" (status ")
			b.WriteString(strconv.Itoa(e.Status))
			b.WriteByte(')')
		}
		if e.Message != "" {
			b.WriteString(": ")
			b.WriteString(e.Message)
		}
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after ")
		b.WriteString(e.RetryAfter.Round(time.Millisecond).String())
		b.WriteByte(')')
	}
	return b.String()
}

// Unwrap returns the context or network error behind a failure without an answer.
func (e *Error) Unwrap() error { return e.cause }

// Is maps the error to its sentinel (see Error).
func (e *Error) Is(target error) bool {
	s := e.sentinel()
	return s != nil && target == s
}

// As lets errors.As(err, &rle) with rle a *RateLimitError read the RetryAfter of a 429.
func (e *Error) As(target any) bool {
	p, ok := target.(**RateLimitError)
	if !ok || e.sentinel() != ErrRateLimited {
		return false
	}
	*p = &RateLimitError{RetryAfter: e.RetryAfter, Source: "upstream"}
	return true
}

// ProblemKind is the kind of the error's sentinel, or problem.KindUpstreamError when it has none
// (an error status the gateway cannot pass on, a canceled call): problem.Classified.
func (e *Error) ProblemKind() problem.Kind {
	if c, ok := e.sentinel().(problem.Classified); ok {
		return c.ProblemKind()
	}
	return problem.KindUpstreamError
}

// ProblemRetryAfter is the wait the answer gives (problem.Waiting).
func (e *Error) ProblemRetryAfter() time.Duration { return e.RetryAfter }

func (e *Error) sentinel() error {
	switch e.kind {
	case kindConnection, kindBreakerOpen:
		return ErrUnavailable
	case kindTimeout:
		return ErrTimeout
	case kindCanceled:
		return nil
	case kindBadResponse:
		return ErrBadResponse
	}
	apiKey := e.Code == CodeMissingAPIKey || e.Code == CodeInvalidAPIKey
	switch {
	case e.Status == http.StatusUnauthorized:
		if apiKey || e.login {
			return ErrAuthFailed
		}
		return ErrUnauthorized
	case e.Status == http.StatusForbidden && (apiKey || e.login):
		return ErrAuthFailed
	case e.Status >= 500:
		return ErrUnavailable
	case e.Code == CodeSessionNotFound:
		return ErrSessionNotFound
	case e.Code == CodeSessionNotConnected || e.Code == CodeSessionDisconnected:
		return ErrSessionNotConnected
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusConflict:
		return ErrConflict
	case e.Status == http.StatusTooManyRequests,
		e.Code == CodeRateLimitExceeded, e.Code == CodeMessageRateLimitExceeded:
		return ErrRateLimited
	}
	return nil
}

// envelope is both shapes of the upstream's answer: the text of an error is in "message" or
// "error" (a string, or an object with message and code).
type envelope struct {
	Success *bool           `json:"success"`
	Message json.RawMessage `json:"message"`
	Error   json.RawMessage `json:"error"`
	Code    json.RawMessage `json:"code"`
	Data    json.RawMessage `json:"data"`
}

// decodeEnvelope reads an answer body. ok is false when the body is not a JSON object.
func decodeEnvelope(body []byte) (env envelope, ok bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return envelope{}, false
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return envelope{}, false
	}
	return env, true
}

// errorText returns the code and the text of an error envelope: text from "message", then
// "error"; the code from "code", then from an "error" object.
func (env envelope) errorText() (code, text string) {
	code = jsonText(env.Code)
	text = jsonText(env.Message)
	if text == "" {
		text = jsonText(env.Error)
	}
	if len(env.Error) > 0 && env.Error[0] == '{' {
		var inner struct {
			Code    json.RawMessage `json:"code"`
			Message json.RawMessage `json:"message"`
			Error   json.RawMessage `json:"error"`
		}
		if json.Unmarshal(env.Error, &inner) == nil {
			if code == "" {
				code = jsonText(inner.Code)
			}
			if text == "" {
				text = jsonText(inner.Message)
			}
			if text == "" {
				text = jsonText(inner.Error)
			}
		}
	}
	return code, text
}

// jsonText is a JSON string's value or a number's text; anything else is "".
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	return ""
}

// answerError turns an error answer into an *Error. secrets (credentials, the token used, a
// refresh token) are redacted from the upstream's text, which is also cut to a bounded length.
func answerError(cl *call, status int, header http.Header, body []byte, now time.Time, secrets ...string) *Error {
	e := &Error{Status: status, Method: cl.method, Route: cl.route, login: cl.login, kind: kindAnswer}
	code, text := "", ""
	if env, ok := decodeEnvelope(body); ok {
		code, text = env.errorText()
	}
	e.Code = cleanCode(code)
	if redact(e.Code, secrets) != e.Code {
		e.Code = ""
	}
	e.Message = cleanText(text, secrets)
	if e.Message == "" && status >= 300 {
		e.Message = http.StatusText(status)
	}
	if e.sentinel() == ErrRateLimited || status == http.StatusServiceUnavailable {
		e.RetryAfter = serverWait(header, now)
	}
	if e.sentinel() == ErrRateLimited && e.RetryAfter <= 0 {
		e.RetryAfter = time.Second // a 429 without headers: still tell the caller to hold back
	}
	return e
}

// redact removes every non-empty secret from s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// cleanText keeps upstream text printable, without secrets and short, so that it can go into
// errors and logs as is. Secrets are removed after the text is made valid and printable, so that
// no cleaning step can join the pieces of one.
func cleanText(s string, secrets []string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(redact(s, secrets))
	return clip.Bytes(s, maxMessageBytes, clip.Ellipsis)
}

// cleanCode keeps an upstream code to the characters codes are made of.
func cleanCode(s string) string {
	if len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return ""
		}
	}
	return s
}
