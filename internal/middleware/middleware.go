// Package middleware holds the gin middleware every gateway route runs through, in this order:
// request id, tracing (while it is on), recovery, security headers, access log, metrics, error
// mapping, and body limit.
// Authentication and per-caller limits are added per route group by the handlers.
//
// It must not log request headers or bodies, label metrics with anything but route patterns,
// methods, statuses and caller names, or put an internal error's text into an answer.
package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/promreg"
	"github.com/inboxhub-gateway/gateway/internal/storeerr"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Context keys set by the middleware.
const (
	// KeyRequestID holds the request's state, of which the request id (read it with RequestIDOf).
	KeyRequestID = "requestId"
	// KeyCaller holds the authenticated caller's name (string), set by authentication.
	KeyCaller = "caller"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = telemetry.HeaderRequestID

// RequestID takes a well-formed X-Request-ID from the caller or makes a new one, stores it in the
// gin context and echoes it on the answer. The request's context does not carry it (that would
// cost every request a copy of its http.Request): work done on the request's behalf takes its
// context from Context, which does.
func RequestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		// The canonical form of HeaderRequestID, read directly: Header.Get would canonicalise
		// the name (an allocation) on every request.
		id := ""
		if v := c.Request.Header["X-Request-Id"]; len(v) > 0 {
			id = v[0]
		}
		if !validRequestID(id) {
			id = newRequestID()
		}
		pooled := c.Keys == nil
		if pooled {
			c.Keys = keysPool.Get().(map[any]any)
		}
		st := &requestState{id: [1]string{id}}
		c.Set(KeyRequestID, st)
		c.Writer.Header()["X-Request-Id"] = st.id[:] // the canonical form of HeaderRequestID
		c.Next()
		if pooled {
			keys := c.Keys
			c.Keys = nil
			clear(keys)
			keysPool.Put(keys)
		}
	}
}

// keysPool keeps the gin contexts' Keys maps between requests: gin makes a new map for every
// request's first c.Set (two allocations). A map goes back once the whole chain has run, when
// nothing reads the request's context any more (gin itself then reuses the context; work that
// outlives a request takes c.Copy(), which copies the map).
var keysPool = sync.Pool{New: func() any { return make(map[any]any, 4) }}

// requestState is what the middleware keeps of a request, in one allocation: the request id
// (its array is also X-Request-Id's header value, capacity 1 like Shared's) and the client
// address once computed.
type requestState struct {
	id       [1]string
	clientIP string
	ipKnown  bool
}

func stateOf(c *gin.Context) *requestState {
	v, _ := c.Get(KeyRequestID)
	st, _ := v.(*requestState)
	return st
}

// ClientIP is c.ClientIP(), computed once per request (the failed-authentication throttle and
// the access log both need it; each computation parses the address and allocates its text).
func ClientIP(c *gin.Context) string {
	st := stateOf(c)
	if st == nil {
		return c.ClientIP()
	}
	if !st.ipKnown {
		st.clientIP, st.ipKnown = c.ClientIP(), true
	}
	return st.clientIP
}

// Context is the context for work done on the request's behalf: the request's own (its deadline,
// cancellation and, while tracing is on, its span) carrying the request id, so that every
// outgoing call made with it sends X-Request-ID and a queued job takes the id along (package
// telemetry). Handlers pass it, never c.Request.Context(), to anything that may call out.
func Context(c *gin.Context) context.Context {
	ctx := c.Request.Context()
	if id := RequestIDOf(c); id != "" {
		return telemetry.WithRequestID(ctx, id)
	}
	return ctx
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RequestIDOf returns the request id of a gin context, "" before RequestID ran.
func RequestIDOf(c *gin.Context) string {
	if st := stateOf(c); st != nil {
		return st.id[0]
	}
	return ""
}

// Recovery turns a panic into a logged 500 INTERNAL problem answer. The stack goes to the log with
// the request id, never to the caller.
func Recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
			logger.ErrorContext(c.Request.Context(), "panic in handler",
				"requestId", RequestIDOf(c), "route", c.FullPath(), "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				Write(c, problem.New(http.StatusInternalServerError, problem.CodeInternal,
					"An internal error occurred. Quote the requestId when reporting it."))
			}
			c.Abort()
		}()
		c.Next()
	}
}

// sensitiveParams are query parameters whose values never reach a log line.
var sensitiveParams = []string{"token", "access_token", "refresh_token", "password", "secret", "key", "apikey", "api_key", "signature", "code", "jwt", "auth"}

// RedactQuery returns the query string with the values of sensitive parameters replaced by ***.
func RedactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsable)"
	}
	for name := range q {
		lower := strings.ToLower(name)
		for _, s := range sensitiveParams {
			if strings.Contains(lower, s) {
				for i := range q[name] {
					q[name][i] = "***"
				}
				break
			}
		}
	}
	return q.Encode()
}

// MaskPath returns a request path fit for a log line: every run of digits becomes "#" and the
// part of a segment before an "@" (a WhatsApp JID's user: a phone number, a group or lid id)
// becomes "*", so that phone numbers and JIDs, however they are formatted, never reach a log,
// while the path's shape (and literal segments such as session names) still shows what was asked.
// Only an API version segment ("v1") keeps its digits.
func MaskPath(p string) string {
	if !needsMask(p) {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if apiVersion.MatchString(s) {
			continue
		}
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			s = "*" + s[at:]
		}
		segs[i] = maskDigits(s)
	}
	return strings.Join(segs, "/")
}

// needsMask reports whether MaskPath changes p: whether a segment other than a version segment
// holds a digit or an "@". It allocates nothing, so that the common paths cost no copy.
func needsMask(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if strings.ContainsFunc(seg, func(r rune) bool { return r == '@' || unicode.IsDigit(r) }) && !apiVersion.MatchString(seg) {
			return true
		}
	}
	return false
}

// apiVersion is a path segment naming an API version, the one segment whose digits are kept.
var apiVersion = regexp.MustCompile(`^v[0-9]$`)

// maskDigits replaces every run of digits in s (any script's, so full-width digits too) by "#".
func maskDigits(s string) string {
	var b strings.Builder
	inRun := false
	for _, r := range s {
		if unicode.IsDigit(r) {
			if !inRun {
				b.WriteByte('#')
			}
			inRun = true
			continue
		}
		inRun = false
		b.WriteRune(r)
	}
	return b.String()
}

func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

// HTTPMetrics are the request metrics of the gateway's own API.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	// The label children met so far, resolved once (the callers' names make the set open-ended:
	// promreg.Children bounds it).
	counters  promreg.Children[requestLabels, prometheus.Counter]
	observers promreg.Children[routeMethod, prometheus.Observer]
}

type routeMethod struct{ route, method string }

type requestLabels struct {
	routeMethod
	status int
	caller string
}

// NewHTTPMetrics registers the request metrics on reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests answered, by route pattern, method, status and caller.",
		}, []string{"route", "method", "status", "caller"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time to answer, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "Requests being answered now.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// Middleware records every request under its route pattern (never the raw path, which holds ids).
func (m *HTTPMetrics) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		m.inFlight.Inc()
		c.Next()
		m.inFlight.Dec()
		rm := routeMethod{routeOf(c), c.Request.Method}
		m.counter(requestLabels{rm, c.Writer.Status(), c.GetString(KeyCaller)}).Inc()
		observe(c.Request.Context(), m.observer(rm), time.Since(start).Seconds())
	}
}

// observe records v, with the request's trace id as the exemplar when the request is traced and
// sampled (the histogram's buckets then link to a trace).
func observe(ctx context.Context, o prometheus.Observer, v float64) {
	if id, ok := telemetry.SampledTraceID(ctx); ok {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": id})
			return
		}
	}
	o.Observe(v)
}

// counter is the request counter's child of l, resolved once.
func (m *HTTPMetrics) counter(l requestLabels) prometheus.Counter {
	return m.counters.Get(l, func(l requestLabels) prometheus.Counter {
		return m.requests.WithLabelValues(l.route, l.method, strconv.Itoa(l.status), l.caller)
	})
}

// observer is the duration histogram's child of rm, resolved once.
func (m *HTTPMetrics) observer(rm routeMethod) prometheus.Observer {
	return m.observers.Get(rm, func(rm routeMethod) prometheus.Observer {
		return m.duration.WithLabelValues(rm.route, rm.method)
	})
}

// BodyLimit caps request bodies at n bytes; reading past it fails with *http.MaxBytesError, which
// the error mapping answers as 413 PAYLOAD_TOO_LARGE. A declared Content-Length over the limit is
// refused before the handler runs.
func BodyLimit(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			Fail(c, problem.From(&http.MaxBytesError{Limit: n}))
			return
		}
		// A request without a body (the server gives it http.NoBody) has nothing to cap.
		if c.Request.Body != nil && c.Request.Body != http.NoBody {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		}
		c.Next()
	}
}

const keyProblemCode = "problemCode"

// Errors answers the last error a handler recorded with c.Error as problem+json. 5xx causes are
// logged in full with the request id; the body only says what the caller may know. An error that
// would be a 500 but says the store is unreachable (storeerr.Unavailable: a Redis failover or
// restart) is answered 503 UPSTREAM_UNAVAILABLE with Retry-After, whichever route met it.
func Errors(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if len(c.Errors) == 0 || c.Writer.Written() {
			return
		}
		err := c.Errors.Last().Err
		p := problem.From(err)
		if p.Code == problem.CodeInternal && storeerr.Unavailable(p.Cause) {
			// The store (Redis) failing over or restarting: 503 with Retry-After, on every route.
			p = problem.From(storeerr.Mark(p.Cause))
		}
		if p.Status >= 500 {
			logger.ErrorContext(c.Request.Context(), "request failed", "requestId", RequestIDOf(c), "route", routeOf(c), "code", p.Code, "error", err.Error())
		}
		Write(c, p)
	}
}

// Fail records err and stops the chain; the Errors middleware answers it.
func Fail(c *gin.Context, err error) {
	_ = c.Error(err)
	c.Abort()
}

// Write answers a problem right away, with Retry-After when it carries a wait.
func Write(c *gin.Context, p *problem.Error) {
	c.Set(keyProblemCode, p.Code)
	if p.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(problem.RetryAfterSeconds(p.RetryAfter)))
	}
	c.Header("Cache-Control", "no-store")
	c.Render(p.Status, problemJSON{body: p.Body(RequestIDOf(c))})
}

// problemJSON renders a problem body with its own content type.
type problemJSON struct{ body problem.Details }

func (r problemJSON) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	return encodeJSON(w, r.body)
}

func (r problemJSON) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", problem.ContentType)
}

// NotFound answers unknown routes; MethodNotAllowed answers known routes called with another method.
func NotFound() gin.HandlerFunc {
	return func(c *gin.Context) {
		// The path is not repeated: it may hold a phone number or a chat id (the access log has
		// it, masked, with the request id).
		Write(c, problem.New(http.StatusNotFound, problem.CodeNotFound, "No route matches "+clip.Bytes(c.Request.Method, 16, clip.Ellipsis)+" on this path."))
	}
}

// MethodNotAllowed answers a known path called with a method it does not take.
func MethodNotAllowed() gin.HandlerFunc {
	return func(c *gin.Context) {
		Write(c, problem.New(http.StatusMethodNotAllowed, problem.CodeMethodNotAllowed, "This route does not take "+clip.Bytes(c.Request.Method, 16, clip.Ellipsis)+"."))
	}
}

func encodeJSON(w http.ResponseWriter, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
