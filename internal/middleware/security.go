package middleware

import "github.com/gin-gonic/gin"

// Content security policies of the gateway's answers. Every one forbids framing
// (frame-ancestors 'none') and a <base> or form that would send the page's data elsewhere.
const (
	// PolicyNone is the policy of every answer that is not a page (JSON, problem+json, text,
	// images, event streams): a browser that renders one anyway loads and runs nothing from it.
	PolicyNone = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

	// PolicySwaggerUI is the policy of the Swagger UI: its scripts, styles and images come from the
	// gateway itself and it calls only the gateway ("Try it out"). The UI sets inline styles from
	// its scripts, hence 'unsafe-inline' for styles only; scripts stay 'self'.
	PolicySwaggerUI = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

// SecurityHeaders sets the headers that keep a browser from misreading or framing an answer:
// Content-Security-Policy (csp), X-Content-Type-Options: nosniff and X-Frame-Options: DENY (for
// browsers that predate frame-ancestors). The router runs it with PolicyNone on every answer.
//
// An answer that is not a page gets no Referrer-Policy: under PolicyNone it loads nothing and
// holds no link, and browsers send no path to another origin by default
// (strict-origin-when-cross-origin). One field less keeps a JSON answer's header map, which
// net/http copies once per answer, in its smaller size (see docs/benchmarks.md).
func SecurityHeaders(csp string) gin.HandlerFunc {
	policy := Shared(csp)
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h["Content-Security-Policy"] = policy
		h["X-Content-Type-Options"] = nosniff
		h["X-Frame-Options"] = deny
		c.Next()
	}
}

// PageSecurityHeaders is SecurityHeaders for the routes that serve pages and their assets (the
// Swagger UI, the console), under the page's own policy, which replaces the router's, plus
// Referrer-Policy: no-referrer, so that nothing a page loads or links to learns its URL.
func PageSecurityHeaders(csp string) gin.HandlerFunc {
	headers := SecurityHeaders(csp)
	return func(c *gin.Context) {
		c.Writer.Header()["Referrer-Policy"] = noReferrer
		headers(c)
	}
}

var nosniff, noReferrer, deny = Shared("nosniff"), Shared("no-referrer"), Shared("DENY")

// Shared returns a header value that every answer can share: assigned to an http.Header under
// the field's canonical name (h["X-Frame-Options"] = v), it costs no allocation per answer.
// Nothing writes into a header's value slices (net/http only reads them; Set replaces the slice;
// Add appends to it, which copies it, its capacity being its length).
func Shared(value string) []string { return []string{value} }
