package auth

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// What a browser on an allowed origin may do and see.
var (
	corsMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	corsHeaders = []string{HeaderAPIKey, HeaderAuthorization, "Content-Type", "Idempotency-Key", middleware.HeaderRequestID}
	corsExposed = []string{middleware.HeaderRequestID, "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy", "Location"}
)

// corsMaxAge is how long a browser may cache a preflight answer (seconds).
const corsMaxAge = 600

var varyOrigin = middleware.Shared("Origin")

// CORS lets browsers on the given origins (the CRM's, as "https://crm.example.com") call the API,
// and no others. A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin
// asking for an allowed method and headers is answered 204 with the allowed methods and headers
// and a max-age; any other preflight is answered 403 FORBIDDEN without CORS headers. Other
// requests from an allowed origin get Access-Control-Allow-Origin naming that origin (never "*",
// and never Access-Control-Allow-Credentials: credentials travel in headers, not cookies); from
// other origins they get no CORS headers, so the browser keeps the answer from the page.
//
// Mount it on the engine (gin's Use), not on a route group: a preflight matches no route, and only
// engine middleware runs for it.
func CORS(origins []string) gin.HandlerFunc {
	p := &corsPolicy{allowed: map[string][]string{},
		allowMethods: strings.Join(corsMethods, ", "), allowHeaders: strings.Join(corsHeaders, ", "),
		exposeValue: middleware.Shared(strings.Join(corsExposed, ", "))}
	for _, o := range origins {
		if n, ok := normalizeOrigin(o); ok {
			p.allowed[n] = middleware.Shared(n)
		}
	}
	return p.handle
}

// corsPolicy is what CORS allows, and the values it answers with, made once.
type corsPolicy struct {
	// allowed: the allowed origins in their browser form, each with its Access-Control-Allow-Origin
	// value: a request whose Origin is written exactly so (as browsers send it) is matched without
	// parsing, and answered without allocating.
	allowed                    map[string][]string
	allowMethods, allowHeaders string
	exposeValue                []string
}

// handle answers a preflight, or lets any other request through with the CORS headers its origin
// is due.
func (p *corsPolicy) handle(c *gin.Context) {
	h := c.Writer.Header()
	preflight := c.Request.Method == http.MethodOptions && c.Request.Header.Get("Access-Control-Request-Method") != ""
	varyOnCORS(h, preflight)
	origin := c.Request.Header.Get("Origin")
	allowValue, ok := p.match(origin)
	if !preflight {
		if ok {
			if allowValue == nil { // allowed, but written otherwise: echoed as sent
				allowValue = []string{origin}
			}
			h["Access-Control-Allow-Origin"] = allowValue
			h["Access-Control-Expose-Headers"] = p.exposeValue
		}
		c.Next()
		return
	}
	if err := p.refusePreflight(c.Request.Header, origin, ok); err != nil {
		middleware.Fail(c, err)
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", p.allowMethods)
	h.Set("Access-Control-Allow-Headers", p.allowHeaders)
	h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
	c.AbortWithStatus(http.StatusNoContent)
}

// varyOnCORS says that the answer varies with the request's Origin and, for a preflight, with what
// it asks for.
func varyOnCORS(h http.Header, preflight bool) {
	if _, ok := h["Vary"]; ok {
		h.Add("Vary", "Origin")
	} else {
		h["Vary"] = varyOrigin
	}
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
}

// match reports whether origin is allowed, with its Access-Control-Allow-Origin value when it is
// written as browsers send it (nil when it is written otherwise).
func (p *corsPolicy) match(origin string) (allowValue []string, ok bool) {
	if allowValue, ok = p.allowed[origin]; ok {
		return allowValue, true
	}
	n, valid := normalizeOrigin(origin)
	_, ok = p.allowed[n]
	return nil, ok && valid
}

// refusePreflight is the problem of a preflight that names no origin or one not allowed (ok), or
// asks for a method or header outside the lists; nil when it may go on.
func (p *corsPolicy) refusePreflight(req http.Header, origin string, ok bool) error {
	switch {
	case origin == "":
		return problem.New(http.StatusForbidden, problem.CodeForbidden, "A CORS preflight must name its Origin.")
	case !ok:
		return problem.New(http.StatusForbidden, problem.CodeForbidden, "This origin may not call the gateway from a browser.")
	}
	if m := req.Get("Access-Control-Request-Method"); !slices.Contains(corsMethods, m) {
		return problem.New(http.StatusForbidden, problem.CodeForbidden,
			"CORS requests may use the methods "+p.allowMethods+" only.")
	}
	if bad := unlistedHeader(req.Values("Access-Control-Request-Headers")); bad {
		return problem.New(http.StatusForbidden, problem.CodeForbidden,
			"CORS requests may send the headers "+p.allowHeaders+" only.")
	}
	return nil
}

// unlistedHeader reports whether a preflight asks for a header outside corsHeaders.
func unlistedHeader(values []string) bool {
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.ContainsFunc(corsHeaders, func(h string) bool { return strings.EqualFold(h, name) }) {
				return true
			}
		}
	}
	return false
}

// normalizeOrigin returns an origin as browsers serialize it (lower-case scheme and host, no
// default port, no path), or false for anything that is not an http(s) origin.
func normalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(strings.TrimSpace(o), "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return strings.ToLower(u.Scheme) + "://" + host, true
}
