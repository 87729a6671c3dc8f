package middleware

import (
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"
)

// AccessLog writes one JSON line per request: method, route (the pattern), path (masked by
// MaskPath: no phone numbers or JIDs), redacted query, status, duration, size, request id and
// caller name. It never logs request headers or bodies, so Authorization, X-API-Key, cookies,
// passwords and tokens cannot reach the log.
//
// The line goes through logger, at the level of its status (5xx error, 4xx warn, else info).
// When out is not nil, it must be the writer of logger's JSON handler (slog.NewJSONHandler, with
// no attributes or groups of its own, possibly wrapped by telemetry.LogHandler), safe for
// concurrent writes that each stay whole: the access log then encodes its line itself and writes
// it there, byte for byte the line the JSON handler writes, trace_id and span_id included, at a
// fraction of its cost (a slog record of this many attributes allocates, and slog encodes the
// duration with encoding/json). TestAccessLineMatchesSlog holds the two together.
func AccessLog(logger *slog.Logger, out io.Writer) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		l := requestLine{
			requestID: RequestIDOf(c),
			method:    c.Request.Method,
			route:     routeOf(c),
			path:      MaskPath(c.Request.URL.Path),
			status:    c.Writer.Status(),
			duration:  float64(time.Since(start).Microseconds()) / 1000,
			bytes:     max(c.Writer.Size(), 0),
			clientIP:  ClientIP(c),
			query:     RedactQuery(c.Request.URL.RawQuery),
			caller:    c.GetString(KeyCaller),
			code:      c.GetString(keyProblemCode),
		}
		ctx, level := c.Request.Context(), l.level()
		if out == nil {
			logger.LogAttrs(ctx, level, accessMessage, l.attrs()...)
			return
		}
		if logger.Enabled(ctx, level) {
			l.write(out, time.Now(), level, trace.SpanContextFromContext(ctx))
		}
	}
}

// accessMessage is the access log line's msg.
const accessMessage = "request"

// requestLine is what the access log says about one request; empty query, caller and code are
// left out.
type requestLine struct {
	requestID, method, route, path string
	status                         int
	duration                       float64 // milliseconds
	bytes                          int
	clientIP, query, caller, code  string
}

func (l *requestLine) level() slog.Level {
	switch {
	case l.status >= 500:
		return slog.LevelError
	case l.status >= 400:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// attrs is the line for slog.
func (l *requestLine) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("requestId", l.requestID),
		slog.String("method", l.method),
		slog.String("route", l.route),
		slog.String("path", l.path),
		slog.Int("status", l.status),
		slog.Float64("durationMs", l.duration),
		slog.Int("bytes", l.bytes),
		slog.String("clientIp", l.clientIP),
	)
	for _, a := range l.optional() {
		if a.value != "" {
			attrs = append(attrs, slog.String(a.key, a.value))
		}
	}
	return attrs
}

// optional is the line's last fields, each left out when empty.
func (l *requestLine) optional() [3]struct{ key, value string } {
	return [...]struct{ key, value string }{{"query", l.query}, {"caller", l.caller}, {"code", l.code}}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// write encodes the line as slog's JSON handler does, at time now, and writes it to out in one
// call.
func (l *requestLine) write(out io.Writer, now time.Time, level slog.Level, sc trace.SpanContext) {
	bp := lineBufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = now.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":`...)
	b = appendJSONString(b, level.String())
	b = append(b, `,"msg":"`+accessMessage+`"`...)
	b = appendField(b, "requestId", l.requestID)
	b = appendField(b, "method", l.method)
	b = appendField(b, "route", l.route)
	b = appendField(b, "path", l.path)
	b = strconv.AppendInt(append(b, `,"status":`...), int64(l.status), 10)
	b = appendJSONFloat(append(b, `,"durationMs":`...), l.duration)
	b = strconv.AppendInt(append(b, `,"bytes":`...), int64(l.bytes), 10)
	b = appendField(b, "clientIp", l.clientIP)
	for _, a := range l.optional() {
		if a.value != "" {
			b = appendField(b, a.key, a.value)
		}
	}
	if sc.IsValid() { // as telemetry.LogHandler adds them
		b = appendField(b, "trace_id", sc.TraceID().String())
		b = appendField(b, "span_id", sc.SpanID().String())
	}
	b = append(b, "}\n"...)
	_, _ = out.Write(b)
	*bp = b
	lineBufs.Put(bp)
}

// appendField appends ,"key":"value" (key needs no escaping).
func appendField(b []byte, key, value string) []byte {
	b = append(append(append(b, `,"`...), key...), `":`...)
	return appendJSONString(b, value)
}

// appendJSONFloat appends f as encoding/json (and so slog's JSON handler) writes a float64:
// shortest decimal form, exponent form below 1e-6 and from 1e21 on.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, `"!ERROR:unsupported value"`...) // cannot happen for a duration
	}
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString appends s as a JSON string, escaped as slog's JSON handler escapes it: the
// characters JSON requires, other control characters as \u00XX, invalid UTF-8 as \ufffd, and
// U+2028 and U+2029.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			switch r {
			case utf8.RuneError:
				b = append(b, `\ufffd`...)
			case '\u2028':
				b = append(b, `\u2028`...)
			default:
				b = append(b, `\u2029`...)
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}

const hexDigits = "0123456789abcdef"
