package middleware

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// TestAccessLineMatchesSlog: the access log's own encoding of a line is byte for byte what slog's
// JSON handler writes for the same attributes (wrapped by telemetry.LogHandler when the request
// has a span), over escapes, invalid UTF-8, line separators, durations of every size and random
// strings.
func TestAccessLineMatchesSlog(t *testing.T) {
	tricky := []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\x7f\n\r\t end", "<html>&amp;",
		"ñandú 🦤", "bad \xff\xfe utf8", "sep \u2028 and \u2029", "/v1/sessions/:sessionId/chats/:chatId/messages"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		tricky = append(tricky, string(b))
	}
	durations := []float64{0, 0.001, 0.012, 0.5, 1, 12.345, 1234.567, 98765.432, 1.5e6, 123456789.123}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	now := time.Date(2026, 12, 6, 3, 4, 5, 67800, time.UTC)
	for i, s := range tricky {
		l := requestLine{requestID: s, method: "GET", route: tricky[(i+1)%len(tricky)], path: s, status: []int{200, 404, 503}[i%3],
			duration: durations[i%len(durations)], bytes: i * 7, clientIP: "203.0.113.9"}
		if i%2 == 0 {
			l.query, l.caller, l.code = s, "crm", "NOT_FOUND"
		}
		ctx := context.Background()
		if i%4 == 0 {
			ctx = trace.ContextWithSpanContext(ctx, sc)
		}
		var want, got bytes.Buffer
		h := telemetry.LogHandler(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r := slog.NewRecord(now, l.level(), accessMessage, 0)
		r.AddAttrs(l.attrs()...)
		if err := h.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
		l.write(&got, now, l.level(), trace.SpanContextFromContext(ctx))
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("line %d:\n got %q\nwant %q", i, got.String(), want.String())
		}
	}
}

// TestAccessLogWritesTheSameLineEitherWay: through a router, the line written directly and the
// line written through slog differ only in their time and duration; a logger whose level is above the line's
// writes nothing either way.
func TestAccessLogWritesTheSameLineEitherWay(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	serve := func(level slog.Level, direct bool) string {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
		r := gin.New()
		if direct {
			r.Use(RequestID(), AccessLog(logger, &buf))
		} else {
			r.Use(RequestID(), AccessLog(logger, nil))
		}
		r.GET("/v1/sessions/:sessionId", func(c *gin.Context) { c.Set(KeyCaller, "crm"); c.String(http.StatusNotFound, "gone") })
		req := httptest.NewRequest(http.MethodGet, "/v1/sessions/ventas_01?page=2&token=secret", nil)
		req.Header.Set(HeaderRequestID, "req-abc-123")
		r.ServeHTTP(httptest.NewRecorder(), req)
		return buf.String()
	}
	stamp := regexp.MustCompile(`"time":"[^"]*"|"durationMs":[0-9.e+-]*`)
	direct, viaSlog := serve(slog.LevelInfo, true), serve(slog.LevelInfo, false)
	if direct == "" || stamp.ReplaceAllString(direct, "") != stamp.ReplaceAllString(viaSlog, "") {
		t.Errorf("direct line %q\nslog line   %q", direct, viaSlog)
	}
	if quiet := serve(slog.LevelError, true); quiet != "" {
		t.Errorf("a 404 logged at level error: %q", quiet)
	}
}
