// Package passthrough is the drop-in relay of the Inbox Hub API under /api/...:
// the same paths, queries and bodies as the upstream, so that an app that calls Inbox Hub today
// switches by changing its base URL and sending its gateway key in X-API-Key.
//
// What the relay decides, in this order, before anything reaches the upstream:
//   - the path is clean: no dot or empty segments, no encoded slash or backslash, no control
//     characters (400 INVALID_REQUEST);
//   - /api/auth/* is refused with 403 FORBIDDEN: the gateway holds the upstream login and tokens;
//   - the method and path are on the allow-list (AllowList), else 404 NOT_FOUND;
//   - the caller holds the route's scope, else 403 FORBIDDEN naming it (a session's webhook
//     target is the admin scope's: whoever holds it receives every customer message, so a
//     session create by a caller without admin gets the gateway's own target instead of any
//     webhook settings it sent, see WithWebhookTarget);
//   - session ids and JIDs in the path, page and limit in the query, the query's size and the
//     body (JSON only, size-limited, well-formed) are valid, else 400, 413 or 415.
//
// The upstream's credentials are added by the upstream client; nothing of the caller's request
// but the method, path, query and body is sent on (no X-API-Key, Authorization, Cookie or other
// header of the caller). A JSON answer of the upstream is relayed with its status and body, error
// answers included: that is what a drop-in means. Of its headers only an allow-list is passed on
// (RelayedHeaders: Content-Type, Content-Language, Cache-Control, ETag, Last-Modified,
// Retry-After); nothing that could send the caller elsewhere or set state in its client
// (Location, Refresh, Link, Set-Cookie), describe the upstream (Server, X-Powered-By, its
// RateLimit-* headers, which are about the gateway's shared quota and not the caller's own limit)
// or contradict the gateway's own headers (CORS, X-Request-ID). An answer that is not JSON (an
// HTML error page of a proxy in front of the upstream, a redirect) is never relayed: it becomes
// the gateway's problem+json with the status its upstream status maps to (a 5xx: 503
// UPSTREAM_UNAVAILABLE; a 404: 404 NOT_FOUND; a 429: 429 RATE_LIMITED; others: 502
// UPSTREAM_ERROR). An empty 2xx (204) is relayed as it is.
//
// Failures that are the gateway's own (the shared quota refused the call, the breaker is open,
// the upstream rejected the gateway's credentials, no answer in time) are answered as the
// gateway's problem+json. GET answers are cached and coalesced through the read cache (200s
// only), marked with X-Cache: hit, miss or stale, and a stale 200 stands in for a 5xx or 429 of
// the upstream while it lasts. A successful write drops the cached reads of the session it names.
//
// It must not relay a route that is not on the allow-list, forward any header of the caller, or
// let the caller reach /api/auth/*.
package passthrough

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/jsonbody"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// RawDoer relays one request to the upstream with the gateway's credentials and returns the
// answer verbatim (*upstream.Client implements it).
type RawDoer interface {
	Do(ctx context.Context, req upstream.RawRequest) (*upstream.RawResponse, error)
}

// Defaults of the options.
const (
	DefaultMaxBodyBytes  = 1 << 20
	DefaultMaxQueryBytes = 2048
	// maxPathBytes bounds the request path.
	maxPathBytes = 1024
)

// DefaultPolicy caches a GET answer for 5 s, serves it stale for 5 s more while one refresh
// runs, and for 10 minutes when the upstream is down or over quota.
func DefaultPolicy() cache.Policy {
	return cache.Policy{Fresh: 5 * time.Second, Revalidate: 5 * time.Second, StaleIfError: 10 * time.Minute}
}

// HeaderCache tells the caller whether a GET was answered from the cache: hit, miss or stale.
const HeaderCache = "X-Cache"

// KindAPI is the cache kind (and metric label) of passthrough answers.
const KindAPI = "api"

// Option configures a Handler.
type Option func(*Handler)

// WithCache caches and coalesces GET answers in rt under the policy p (DefaultPolicy() for
// the default); without it every request goes to the upstream.
func WithCache(rt *cache.ReadThrough, p cache.Policy) Option {
	return func(h *Handler) { h.cache, h.policy = rt, p }
}

// WithMaxBodyBytes bounds request bodies; default DefaultMaxBodyBytes.
func WithMaxBodyBytes(n int64) Option { return func(h *Handler) { h.maxBody = n } }

// WithMaxQueryBytes bounds the raw query string; default DefaultMaxQueryBytes.
func WithMaxQueryBytes(n int) Option { return func(h *Handler) { h.maxQuery = n } }

// WithLogger sets the logger for failed cache invalidations.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// Handler relays /api/... to the upstream. It is safe for concurrent use.
type Handler struct {
	doer     RawDoer
	cache    *cache.ReadThrough
	policy   cache.Policy
	maxBody  int64
	maxQuery int
	log      *slog.Logger
	target   *upstream.Webhook // the gateway's own webhook target; nil: none configured
}

// New returns the relay of /api/... over doer. Mount Handle as ANY /api/*path behind caller
// authentication (it reads auth.CallerOf) and the per-caller limit.
func New(doer RawDoer, opts ...Option) *Handler {
	h := &Handler{doer: doer, maxBody: DefaultMaxBodyBytes, maxQuery: DefaultMaxQueryBytes, policy: DefaultPolicy()}
	for _, o := range opts {
		if o != nil {
			o(h)
		}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// Handle godoc
//
//	@Summary		Inbox Hub API, relayed
//	@Description	Drop-in passthrough of the Inbox Hub API: the same paths, queries and bodies, authenticated with the caller's gateway key; the gateway adds the upstream credentials. Only the allow-listed routes are relayed, each with its scope (sessions reads: sessions:read; create, connect, disconnect, delete: sessions:write; a session's webhook, PUT sessions/{id}/webhook: admin; contacts and messages reads: messages:read; send and mark read: messages:send). Where a session's events go is an admin decision: on create, the webhook settings (webhookUrl, webhookSecret, webhookEvents, in any spelling) of a caller without the admin scope are replaced by the gateway's own target when GATEWAY_PUBLIC_URL and INBOXHUB_WEBHOOK_SECRET are set, and dropped otherwise. /api/auth/* is refused. The upstream's JSON answers are relayed with their status and body and an allow-list of headers (Content-Type, Content-Language, Cache-Control, ETag, Last-Modified, Retry-After); an answer that is not JSON (a proxy's HTML error page, a redirect) becomes a problem+json answer; GET answers carry X-Cache (hit, miss, stale).
//	@Tags			passthrough
//	@Accept			json
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@Param			path	path		string					true	"Upstream path after /api/, for example sessions/demo_session/status"
//	@Success		200		{object}	map[string]interface{}	"The upstream's answer, as it is"
//	@Failure		400		{object}	problem.Details			"INVALID_REQUEST: unclean path, bad id or query, body not JSON"
//	@Failure		401		{object}	problem.Details			"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details			"FORBIDDEN: /api/auth/*, or a missing scope"
//	@Failure		404		{object}	problem.Details			"NOT_FOUND: not available through the gateway"
//	@Failure		413		{object}	problem.Details			"PAYLOAD_TOO_LARGE"
//	@Failure		415		{object}	problem.Details			"UNSUPPORTED_MEDIA_TYPE"
//	@Failure		429		{object}	problem.Details			"RATE_LIMITED"
//	@Failure		502		{object}	problem.Details			"UPSTREAM_AUTH_FAILED, or UPSTREAM_ERROR (also for an answer of the upstream that is not JSON)"
//	@Failure		503		{object}	problem.Details			"UPSTREAM_UNAVAILABLE"
//	@Failure		504		{object}	problem.Details			"UPSTREAM_TIMEOUT"
//	@Failure		default	{object}	map[string]interface{}	"Any other answer of the upstream, relayed as it is"
//	@x-relayed		["400","403","404","429","502","503","504"]
//	@Router			/api/{path} [get]
//	@Router			/api/{path} [post]
//	@Router			/api/{path} [put]
//	@Router			/api/{path} [delete]
func (h *Handler) Handle(c *gin.Context) {
	caller, ok := auth.CallerOf(c)
	if !ok {
		middleware.Fail(c, &problem.Error{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
			Detail: "An internal error occurred. Quote the requestId when reporting it.",
			Cause:  errors.New("passthrough: no authenticated caller: mount it behind the authentication middleware")})
		return
	}
	r, params, req, err := h.request(c, caller)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	if req.Method == http.MethodGet && h.cache != nil {
		h.cached(c, r, params, req)
		return
	}
	h.forward(c, r, params, req)
}

// request reads the caller's request into the upstream request of its allowed route, with its path
// parameters; the error is the problem to answer.
func (h *Handler) request(c *gin.Context, caller auth.Caller) (*Route, map[string]string, upstream.RawRequest, error) {
	segs, err := cleanPath(c.Request.URL)
	if err != nil {
		return nil, nil, upstream.RawRequest{}, err
	}
	method := c.Request.Method
	r, params, err := route(method, segs, caller)
	if err != nil {
		return nil, nil, upstream.RawRequest{}, err
	}
	query, err := h.input(params, c.Request.URL.RawQuery)
	if err != nil {
		return nil, nil, upstream.RawRequest{}, err
	}
	req := upstream.RawRequest{Method: method, Path: "/" + strings.Join(segs, "/"), Query: query, Route: r.Pattern}
	if method == http.MethodPost || method == http.MethodPut {
		body, err := h.body(c)
		if err == nil && r.WebhookFields {
			body, err = h.ownWebhook(body, caller.Has(ScopeAdmin))
		}
		if err != nil {
			return nil, nil, upstream.RawRequest{}, err
		}
		if len(body) > 0 {
			req.Body, req.ContentType = body, "application/json"
		}
	}
	return r, params, req, nil
}

// route finds the allow-listed route of method on the clean path segs, which caller must hold the
// scope of: /api/auth/* is refused, and any other path off the list is not found.
func route(method string, segs []string, caller auth.Caller) (*Route, map[string]string, error) {
	if segs[1] == "auth" {
		return nil, nil, problem.New(http.StatusForbidden, problem.CodeForbidden,
			"The gateway holds the Inbox Hub login and tokens itself: /api/auth routes are not available through it. "+
				"Authenticate to the gateway with your gateway key in X-API-Key and call the other /api routes directly.")
	}
	r, params := match(method, segs)
	if r == nil {
		// The path is not repeated: it may hold a phone number or a chat id.
		return nil, nil, problem.New(http.StatusNotFound, problem.CodeNotFound,
			clip.Bytes(method, 16, clip.Ellipsis)+" on this path is not available through the gateway (the API reference lists the relayed routes).")
	}
	if !caller.Has(r.Scope) {
		return nil, nil, problem.New(http.StatusForbidden, problem.CodeForbidden,
			fmt.Sprintf("%s %s needs the scope %q, which the caller %q does not hold.", r.Method, r.Pattern, r.Scope, caller.Name))
	}
	return r, params, nil
}

// input checks the path parameters (by name) and then the query, and answers all their problems
// at once; it returns the query to send.
func (h *Handler) input(params map[string]string, rawQuery string) (url.Values, error) {
	var fields []problem.FieldError
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if msg := paramProblem(name, params[name]); msg != "" {
			fields = append(fields, problem.Field(name, msg))
		}
	}
	query, qfields := h.query(rawQuery)
	fields = append(fields, qfields...)
	if len(fields) > 0 {
		return nil, problem.Invalid("The request is not valid.", fields...)
	}
	return query, nil
}

// forward sends req to the upstream, drops the cached reads that a successful write changed, and
// relays the answer.
func (h *Handler) forward(c *gin.Context, r *Route, params map[string]string, req upstream.RawRequest) {
	resp, err := h.doer.Do(middleware.Context(c), req)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	if req.Method != http.MethodGet && resp.Status >= 200 && resp.Status < 300 && h.cache != nil {
		if err := h.cache.Invalidate(middleware.Context(c), scopes(r, params)...); err != nil {
			h.log.WarnContext(middleware.Context(c), "passthrough: could not drop cached reads after a write; they expire on their own",
				"requestId", middleware.RequestIDOf(c), "route", r.Pattern, "error", err.Error())
		}
	}
	relay(c, r, h.answerOf(resp), "", 0)
}

// answerOf is an upstream answer as it is relayed (and cached).
func (h *Handler) answerOf(resp *upstream.RawResponse) answer {
	return answer{Status: resp.Status, Header: relayHeaders(resp.Header), Body: h.scrub(resp.Body)}
}

// answer is an upstream answer as relayed (and as cached).
type answer struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// relayedError carries an upstream answer that is relayed as it is unless a stale cached 200
// can stand in for it (a 5xx or a 429: the upstream is down or over quota).
type relayedError struct {
	answer   answer
	sentinel error
}

func (e *relayedError) Error() string {
	return "upstream answered " + strconv.Itoa(e.answer.Status)
}

// Is makes the answer count as the upstream failure it is, for the cache's stale-if-error.
func (e *relayedError) Is(target error) bool { return target == e.sentinel }

// cached answers a GET through the read cache: key method + path + sorted query (hashed), in the
// scope of the session the path names. Only 200s are stored.
func (h *Handler) cached(c *gin.Context, r *Route, params map[string]string, req upstream.RawRequest) {
	sc := scopes(r, params)
	key := cache.Key{Scope: sc[len(sc)-1], Kind: KindAPI, Name: cache.Hash(req.Method + " " + req.Path + "?" + req.Query.Encode())}
	pol := h.policy
	if r.NoStale {
		pol.Revalidate, pol.StaleIfError = 0, 0
	}
	ctx, rec := cache.Track(middleware.Context(c))
	a, err := cache.ReadUntil(ctx, h.cache, key, pol, func(ctx context.Context) (answer, error) {
		resp, err := h.doer.Do(ctx, req)
		if err != nil {
			return answer{}, err
		}
		a := h.answerOf(resp)
		switch {
		case resp.Status == http.StatusTooManyRequests:
			return answer{}, &relayedError{answer: a, sentinel: upstream.ErrRateLimited}
		case resp.Status >= 500:
			return answer{}, &relayedError{answer: a, sentinel: upstream.ErrUnavailable}
		}
		return a, nil
	}, func(a answer) time.Duration {
		if a.Status != http.StatusOK || !a.relayable() {
			return 0
		}
		return pol.Fresh
	})
	var rel *relayedError
	switch {
	case errors.As(err, &rel):
		relay(c, r, rel.answer, cache.StatusMiss, 0)
	case err != nil:
		middleware.Fail(c, err)
	default:
		info, _ := rec.Info()
		relay(c, r, a, info.Status, info.Age)
	}
}

// write relays an answer, with the cache facts of a GET and the request id.
func write(c *gin.Context, a answer, status cache.Status, age time.Duration) {
	h := c.Writer.Header()
	for k, vs := range a.Header {
		h[k] = slices.Clone(vs)
	}
	if status != "" {
		h.Set(HeaderCache, string(status))
		if status != cache.StatusMiss {
			h.Set("Age", strconv.Itoa(int(age/time.Second)))
		}
	}
	if id := middleware.RequestIDOf(c); id != "" {
		h.Set(middleware.HeaderRequestID, id)
	}
	c.Status(a.Status)
	if bodyAllowed(a.Status) && c.Request.Method != http.MethodHead {
		_, _ = c.Writer.Write(a.Body)
	} else {
		c.Writer.WriteHeaderNow()
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// RelayedHeaders are the upstream headers passed on to the caller; every other one is dropped.
var RelayedHeaders = []string{"Content-Type", "Content-Language", "Cache-Control", "Etag", "Last-Modified", "Retry-After"}

// relayHeaders returns the upstream headers that are passed on to the caller.
func relayHeaders(in http.Header) http.Header {
	out := http.Header{}
	for _, k := range RelayedHeaders {
		if vs := in.Values(k); len(vs) > 0 {
			out[k] = slices.Clone(vs)
		}
	}
	return out
}

// relayable reports whether an upstream answer may be passed on as it is: a JSON body, or a 2xx
// without a body.
func (a answer) relayable() bool {
	if len(a.Body) == 0 {
		return a.Status >= 200 && a.Status < 300
	}
	mt, _, err := mime.ParseMediaType(a.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return false
	}
	return json.Valid(a.Body)
}

// relay answers with an upstream answer: as it is when it is relayable, else as the gateway's
// problem for the upstream status it carries.
func relay(c *gin.Context, r *Route, a answer, status cache.Status, age time.Duration) {
	if !a.relayable() {
		raw := upstream.RawResponse{Status: a.Status, Header: a.Header, Body: a.Body}
		var err error = raw.AsError(r.Method, r.Pattern)
		if a.Status >= 200 && a.Status < 300 {
			err = fmt.Errorf("passthrough: %s %s answered %d with a body that is not JSON: %w", r.Method, r.Pattern, a.Status, upstream.ErrBadResponse)
		}
		middleware.Fail(c, err)
		return
	}
	write(c, a, status, age)
}

// cleanPath splits a request path under /api/ into segments, refusing anything that could
// address another path than it shows: dot and empty segments, encoded slashes and backslashes,
// control characters.
func cleanPath(u *url.URL) ([]string, error) {
	bad := func(msg string) error {
		return problem.Invalid("The path is not valid.", problem.Field("path", msg))
	}
	p := u.Path
	if len(p) > maxPathBytes {
		return nil, bad("is longer than " + strconv.Itoa(maxPathBytes) + " bytes")
	}
	raw := strings.ToLower(u.RawPath)
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(p, `\`) {
		return nil, bad("must not contain encoded slashes or backslashes")
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, bad("must not contain control characters")
	}
	rest, ok := strings.CutPrefix(p, "/api/")
	if !ok {
		return nil, bad("must start with /api/")
	}
	segs := append([]string{"api"}, strings.Split(strings.TrimSuffix(rest, "/"), "/")...)
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, bad("must not contain empty, . or .. segments")
		}
	}
	return segs, nil
}

// query parses and checks the query: its size, page and limit; other parameters are the
// upstream's to judge.
func (h *Handler) query(raw string) (url.Values, []problem.FieldError) {
	if raw == "" {
		return nil, nil
	}
	if len(raw) > h.maxQuery {
		return nil, []problem.FieldError{problem.Field("query", "is longer than "+strconv.Itoa(h.maxQuery)+" bytes")}
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, []problem.FieldError{problem.Field("query", "is not a valid query string")}
	}
	var fields []problem.FieldError
	for name, vs := range q {
		for _, v := range vs {
			if strings.ContainsFunc(name+v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				fields = append(fields, problem.Field(clip.Bytes(name, 40, clip.Ellipsis), "must not contain control characters"))
			}
		}
	}
	check := func(name string, lo, hi int) {
		for _, v := range q[name] {
			if n, err := strconv.Atoi(v); err != nil || n < lo || n > hi {
				fields = append(fields, problem.Field(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi)))
				return
			}
		}
	}
	check("page", 1, 1_000_000)
	check("limit", 1, upstream.MaxLimit)
	return q, fields
}

// body reads a POST or PUT body: JSON only, within the size limit, well-formed, and with no
// member named twice in any case (jsonbody.Check): the upstream must not read it another way
// than the gateway did.
func (h *Handler) body(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, h.maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, problem.Invalid("The request body could not be read.")
	}
	if int64(len(b)) > h.maxBody {
		return nil, &http.MaxBytesError{Limit: h.maxBody}
	}
	if len(b) == 0 {
		return nil, nil
	}
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, problem.New(http.StatusUnsupportedMediaType, problem.CodeUnsupportedMediaType,
			"A request body must be JSON, sent with Content-Type: application/json.")
	}
	if err := jsonbody.Check(b); err != nil {
		return nil, err
	}
	return b, nil
}
