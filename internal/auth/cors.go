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
	// The allowed origins in their browser form, each with its Access-Control-Allow-Origin value
	// made once: a request whose Origin is written exactly so (as browsers send it) is matched
	// without parsing, and answered without allocating.
	allowed := map[string][]string{}
	for _, o := range origins {
		if n, ok := normalizeOrigin(o); ok {
			allowed[n] = middleware.Shared(n)
		}
	}
	allowMethods := strings.Join(corsMethods, ", ")
	allowHeaders := strings.Join(corsHeaders, ", ")
	expose := strings.Join(corsExposed, ", ")
	exposeValue := middleware.Shared(expose)
	return func(c *gin.Context) {
		h := c.Writer.Header()
		if _, ok := h["Vary"]; ok {
			h.Add("Vary", "Origin")
		} else {
			h["Vary"] = varyOrigin
		}
		origin := c.Request.Header.Get("Origin")
		preflight := c.Request.Method == http.MethodOptions && c.Request.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		allowValue, ok := allowed[origin]
		if !ok {
			n, valid := normalizeOrigin(origin)
			_, ok = allowed[n]
			ok = ok && valid
		}
		if !preflight {
			if ok {
				if allowValue == nil { // allowed, but written otherwise: echoed as sent
					allowValue = []string{origin}
				}
				h["Access-Control-Allow-Origin"] = allowValue
				h["Access-Control-Expose-Headers"] = exposeValue
			}
			c.Next()
			return
		}
		switch {
		case origin == "":
			middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden, "A CORS preflight must name its Origin."))
			return
		case !ok:
			middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden, "This origin may not call the gateway from a browser."))
			return
		}
		if m := c.Request.Header.Get("Access-Control-Request-Method"); !slices.Contains(corsMethods, m) {
			middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden,
				"CORS requests may use the methods "+allowMethods+" only."))
			return
		}
		if bad := unlistedHeader(c.Request.Header.Values("Access-Control-Request-Headers")); bad {
			middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden,
				"CORS requests may send the headers "+allowHeaders+" only."))
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", allowMethods)
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		c.AbortWithStatus(http.StatusNoContent)
	}
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
