// Package console serves the operator console: a small page embedded in the binary (plain HTML,
// CSS and JavaScript, no build step, no third-party requests) that lists sessions, connects them
// with a QR code, runs "sync now" with live progress and shows the gateway's readiness. The page
// calls the /v1 API with a key or JWT the operator types in; it holds no credential itself.
//
// It must not load anything from another origin, keep the operator's credential beyond the
// browser tab's session storage, or insert text into the page as HTML (text goes in as text
// nodes); its strict Content Security Policy (same origin only, no inline script) enforces the
// first.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
)

//go:embed static
var files embed.FS

// ContentSecurityPolicy is sent with every console answer: the page may load and call only its
// own origin, show images from itself or data: URLs (the QR code), and cannot be framed.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// contentTypes are the types of the embedded files, by extension.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Register mounts the console at GET /console (the page) and GET /console/*file (its assets),
// with the security headers of middleware.PageSecurityHeaders under the console's own policy.
// It needs no authentication: the page carries no data, and every call it makes is authenticated.
func Register(r gin.IRoutes) {
	headers, h := middleware.PageSecurityHeaders(ContentSecurityPolicy), Handler()
	r.GET("/console", headers, h)
	r.GET("/console/*file", headers, h)
	r.HEAD("/console", headers, h)
	r.HEAD("/console/*file", headers, h)
}

// Handler serves the console's embedded files: index.html for /console and /console/, the named
// asset otherwise, 404 for anything not embedded. Register puts the security headers in front.
func Handler() gin.HandlerFunc {
	return func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("file"), "/")
		if name == "" {
			name = "index.html"
		}
		h := c.Writer.Header()
		ctype, known := contentTypes[path.Ext(name)]
		body, err := fs.ReadFile(files, "static/"+name)
		if !known || err != nil || strings.Contains(name, "/") {
			h.Set("Cache-Control", "no-store")
			c.Data(http.StatusNotFound, "text/plain; charset=utf-8", []byte("404 page not found\n"))
			return
		}
		// No content hashes in the names: browsers revalidate each time (cheap, and an upgrade of
		// the gateway is seen at once).
		h.Set("Cache-Control", "no-cache")
		c.Data(http.StatusOK, ctype, body)
	}
}
