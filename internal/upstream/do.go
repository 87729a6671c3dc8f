package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// call is one logical request, which may take several attempts.
type call struct {
	method      string
	route       string // route pattern, for errors, metrics and logs
	path        string // escaped path under the base URL, e.g. /api/contacts/abc_123
	query       url.Values
	body        []byte // nil: no body
	contentType string
	category    Category // "": not subject to the quota
	bearer      bool     // send the TokenSource's token
	login       bool     // a 401/403 means the credentials are wrong
	raw         bool     // hand back every answer except a 401 instead of an *Error
	secrets     []string // more secrets to keep out of errors (a refresh token)
}

// answer is an upstream answer, body read in full (within the size limit).
type answer struct {
	status int
	header http.Header
	body   []byte
	token  string // the bearer token the request carried, to keep it out of errors
}

func (a *answer) ok() bool { return a.status >= 200 && a.status < 300 }

// drainLimit bounds how much of an unread body is drained so that the connection can be reused.
const drainLimit = 64 << 10

// exec runs a call: token, attempts with retries, and one more round with a fresh token after a
// 401 that the profile route confirms is about the token (tokencheck.go); a 401 it does not
// confirm leaves the token alone and is the call's answer. It returns 2xx answers (and, for raw
// calls, every answer but a 401); any other answer becomes an *Error.
func (c *Client) exec(ctx context.Context, cl *call) (*answer, error) {
	var tok AccessToken
	useTok := cl.bearer && c.tokens != nil
	if useTok {
		t, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, err // unchanged: ErrAuthFailed, a Redis failure, ... are the provider's to say
		}
		tok = t
	}
	ans, err := c.send(ctx, cl, tok.Value)
	if err != nil {
		return nil, err
	}
	if ans.status == http.StatusUnauthorized && useTok && !apiKeyRejected(ans.body) && c.tokenRefused(ctx, cl.route, tok) {
		c.log.InfoContext(ctx, "upstream rejected the access token; getting a new one",
			"route", cl.route, "token", fingerprint(tok.Value), "generation", tok.Generation)
		c.tokens.Rejected(ctx, tok)
		t, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		tok = t
		if ans, err = c.send(ctx, cl, tok.Value); err != nil {
			return nil, err
		}
	}
	ans.token = tok.Value
	if ans.ok() || (cl.raw && ans.status != http.StatusUnauthorized) {
		return ans, nil
	}
	return nil, c.answerError(cl, ans)
}

func (c *Client) answerError(cl *call, ans *answer) *Error {
	secrets := append([]string{c.creds.APIKey, c.creds.Password, c.creds.Identifier, ans.token}, cl.secrets...)
	return answerError(cl, ans.status, ans.header, ans.body, time.Now(), secrets...)
}

// apiKeyRejected says whether a 401 is about the API key, which a new token does not fix.
func apiKeyRejected(body []byte) bool {
	env, ok := decodeEnvelope(body)
	if !ok {
		return false
	}
	code, _ := env.errorText()
	return code == CodeMissingAPIKey || code == CodeInvalidAPIKey
}

// send runs the attempts of a call with one token: before each, the breaker and the quota; after
// each, the retry policy. It returns the last answer whatever its status, or the error that ended
// the attempts.
func (c *Client) send(ctx context.Context, cl *call, token string) (*answer, error) {
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, c.ctxError(cl, err)
		}
		// Checked before the quota so that an open breaker does not spend quota.
		if c.breaker.open() {
			c.metrics.attempt(cl.route, cl.method, "breaker_open", 0)
			return nil, c.breakerError(cl)
		}
		if cl.category != "" && c.limiter != nil {
			if err := c.limiter.Wait(ctx, cl.category); err != nil {
				return nil, err
			}
		}
		done, ok := c.breaker.allow()
		if !ok {
			c.metrics.attempt(cl.route, cl.method, "breaker_open", 0)
			return nil, c.breakerError(cl)
		}
		start := time.Now()
		ans, err := c.attempt(ctx, cl, token)
		done(breakerOutcome(ans, err))
		c.metrics.attempt(cl.route, cl.method, statusLabel(ans, err), time.Since(start))
		if ans != nil && ans.status == http.StatusTooManyRequests && c.limiter != nil && cl.category != "" {
			c.log.WarnContext(ctx, "upstream answered 429 although the quota admitted the call: the configured rates are above the upstream's",
				"route", cl.route, "category", string(cl.category))
		}

		wait, again := c.retryDecision(ctx, cl, n, ans, err)
		if !again {
			return ans, err
		}
		c.metrics.retry(cl.route)
		c.log.DebugContext(ctx, "retrying upstream request", "route", cl.route, "method", cl.method,
			"attempt", n, "status", statusLabel(ans, err), "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return nil, c.ctxError(cl, err)
		}
	}
}

// retryDecision applies the retry policy (see retryPolicy) to attempt n.
func (c *Client) retryDecision(ctx context.Context, cl *call, n int, ans *answer, err error) (time.Duration, bool) {
	if n >= c.retry.maxAttempts {
		return 0, false
	}
	idem := idempotent(cl.method)
	var wait time.Duration
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return 0, false
		}
		switch {
		case e.caller || (e.kind != kindConnection && e.kind != kindTimeout):
			return 0, false
		case !idem && !e.dial:
			return 0, false
		}
		wait = c.retry.backoff(n)
	} else {
		if !idem || !retryableStatus(ans.status) {
			return 0, false
		}
		if sw := serverWait(ans.header, time.Now()); sw > 0 {
			if sw > c.retry.cap {
				return 0, false // too long to hold a caller: the error carries RetryAfter
			}
			wait = sw
		} else {
			wait = c.retry.backoff(n)
		}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
		return 0, false // never sleep past the caller's deadline
	}
	return wait, true
}

// breakerOutcome classifies an attempt for the breaker (see breaker).
func breakerOutcome(ans *answer, err error) error {
	if err != nil {
		var e *Error
		if errors.As(err, &e) && !e.caller && (e.kind == kindConnection || e.kind == kindTimeout) {
			return errBreakerFailure
		}
		return errBreakerExcluded
	}
	switch ans.status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return errBreakerFailure
	}
	return nil
}

// attempt sends the request once and reads the answer through the size limit.
func (c *Client) attempt(ctx context.Context, cl *call, token string) (*answer, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	// The call's span (package telemetry, while tracing is on) is named by the route pattern.
	req, err := http.NewRequestWithContext(telemetry.WithURLTemplate(actx, cl.route), cl.method, target, body)
	if err != nil {
		// Only a malformed method or path gets here; the URL is not repeated in the error.
		return nil, &Error{Method: cl.method, Route: cl.route, kind: kindBadResponse, Message: "cannot build the request"}
	}
	req.Header.Set("X-API-Key", c.creds.APIKey)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "inboxhub-gateway")
	if cl.body != nil {
		ct := cl.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, actx, cl, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		_ = resp.Body.Close()
	}()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, c.transportError(ctx, actx, cl, err)
	}
	if int64(len(b)) > c.maxBody {
		return nil, &Error{Status: resp.StatusCode, Method: cl.method, Route: cl.route, kind: kindBadResponse,
			Message: "body larger than " + strconv.FormatInt(c.maxBody, 10) + " bytes"}
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// transportError classifies a failure without an answer: the caller's context, the attempt's
// timeout, or a connection failure (dial failures marked, since they are safe to retry).
func (c *Client) transportError(ctx, actx context.Context, cl *call, err error) error {
	if ctx.Err() != nil {
		return c.ctxError(cl, ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL stays out of the error
	}
	var op *net.OpError
	dial := errors.As(err, &op) && op.Op == "dial"
	var ne net.Error
	if actx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Method: cl.method, Route: cl.route, kind: kindTimeout, dial: dial, cause: context.DeadlineExceeded}
	}
	return &Error{Method: cl.method, Route: cl.route, kind: kindConnection, dial: dial, cause: err}
}

// ctxError is the error of a call ended by its context: errors.Is(err, context.Canceled) or, for a
// deadline, errors.Is(err, ErrTimeout) and errors.Is(err, context.DeadlineExceeded).
func (c *Client) ctxError(cl *call, err error) error {
	kind := kindCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		kind = kindTimeout
	}
	return &Error{Method: cl.method, Route: cl.route, kind: kind, caller: true, cause: err}
}

func (c *Client) breakerError(cl *call) error {
	return &Error{Method: cl.method, Route: cl.route, kind: kindBreakerOpen, RetryAfter: c.breaker.retryAfter()}
}

// do runs a call and decodes the data of its success envelope into out (when out is not nil).
func (c *Client) do(ctx context.Context, cl *call, out any) error {
	ans, err := c.exec(ctx, cl)
	if err != nil {
		return err
	}
	data, err := c.successData(cl, ans)
	if err != nil {
		return err
	}
	if out == nil || isNull(data) {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return badResponse(cl, ans.status, "the data is not the documented JSON")
	}
	return nil
}

// successData checks the envelope of a 2xx answer and returns its data. An envelope that says
// success false is an error answer despite its status.
func (c *Client) successData(cl *call, ans *answer) (json.RawMessage, error) {
	env, ok := decodeEnvelope(ans.body)
	if !ok {
		return nil, badResponse(cl, ans.status, "the body is not a JSON object")
	}
	if env.Success != nil && !*env.Success {
		return nil, c.answerError(cl, ans)
	}
	return env.Data, nil
}

func badResponse(cl *call, status int, msg string) *Error {
	return &Error{Status: status, Method: cl.method, Route: cl.route, kind: kindBadResponse, Message: msg}
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// fingerprint is a short SHA-256 of a token, for logs.
func fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}
