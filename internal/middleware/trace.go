package middleware

import (
	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Trace runs every request in a server span named after its route pattern (never the raw path),
// continuing the caller's trace from its traceparent and answering with the span's own; the
// request's context then holds the span, so the access log line, the outgoing calls and the
// Redis commands of the request belong to it. Install it only while telemetry.Enabled: off, the
// router has no tracing step at all.
func Trace() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, span := telemetry.StartServer(c.Request.Context(), c.Request.Header, c.Writer.Header(),
			c.Request.Method, routeOf(c), RequestIDOf(c))
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		telemetry.EndServer(span, c.Writer.Status())
	}
}
