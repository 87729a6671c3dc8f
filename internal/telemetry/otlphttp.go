package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The gateway's OTLP exporter speaks http/protobuf only, written here instead of the SDK's
// otlptracehttp: that one imports google.golang.org/grpc (and the gRPC gateway) for its shared
// configuration and the collector's service stubs, about 14 MB of the static binary for a
// protocol the gateway does not use. This one builds the same request body (an
// ExportTraceServiceRequest, checked against otlptracehttp's in the tests) from the OTLP message
// types alone, which need only the protobuf runtime the Prometheus client already brings.

// exporterConfig is what the OTEL_EXPORTER_OTLP_* variables say about the trace exporter.
type exporterConfig struct {
	url     string
	headers map[string]string
	timeout time.Duration
	gzip    bool
	tls     *tls.Config
}

// readExporter reads the exporter's variables through getenv, the traces-specific one first
// (OTEL_EXPORTER_OTLP_TRACES_X, then OTEL_EXPORTER_OTLP_X), as the specification says: the
// endpoint (the traces one used as is, the general one with /v1/traces added), headers
// (key=value pairs, comma separated, values URL-encoded), timeout in milliseconds (10 s), gzip or
// no compression, and the PEM files of the CA and of the client's certificate and key.
func readExporter(getenv func(string) string) (exporterConfig, error) {
	var c exporterConfig
	var errs []error
	c.url = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if c.url == "" {
		if base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); base != "" {
			c.url = strings.TrimRight(base, "/") + "/v1/traces"
		}
	}
	if u, err := url.Parse(c.url); c.url != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		errs = append(errs, errors.New("OTEL_EXPORTER_OTLP_ENDPOINT: not an http:// or https:// URL"))
	}

	c.headers = map[string]string{}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		if err := parseHeaders(getenv(name), c.headers); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}

	c.timeout = 10 * time.Second
	if v := otlpVar(getenv, "TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT: %q is not a positive number of milliseconds", v))
		} else {
			c.timeout = time.Duration(ms) * time.Millisecond
		}
	}

	switch v := otlpVar(getenv, "COMPRESSION"); v {
	case "", "none":
	case "gzip":
		c.gzip = true
	default:
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_COMPRESSION: %q is not supported (gzip or none)", v))
	}

	var err error
	if c.tls, err = readTLS(otlpVar(getenv, "CERTIFICATE"), otlpVar(getenv, "CLIENT_CERTIFICATE"), otlpVar(getenv, "CLIENT_KEY")); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// parseHeaders adds the headers of an OTEL_EXPORTER_OTLP_HEADERS value to h. Values are not
// repeated in the error (they are credentials).
func parseHeaders(v string, h map[string]string) error {
	for pair := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return errors.New("a header is not key=value")
		}
		val, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return fmt.Errorf("the value of header %q is not URL-encoded", k)
		}
		h[http.CanonicalHeaderKey(k)] = val
	}
	return nil
}

// readTLS is the TLS configuration of the PEM files named (nil when none is).
func readTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("OTEL_EXPORTER_OTLP_CERTIFICATE: no PEM certificate in the file")
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// otlpExporter is an sdktrace.SpanExporter posting OTLP/HTTP protobuf requests.
type otlpExporter struct {
	cfg     exporterConfig
	client  *http.Client
	stopped atomic.Bool
	// retry is the backoff between attempts of one export (the SDK exporter's defaults).
	retry func() backoff.BackOff
}

func newOTLPExporter(cfg exporterConfig) *otlpExporter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.tls != nil {
		tr.TLSClientConfig = cfg.tls
	}
	return &otlpExporter{cfg: cfg,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a collector that redirects is misconfigured: not followed
		}},
		retry: func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval = 5*time.Second, 30*time.Second
			return b
		},
	}
}

// errRetryable marks an export failure worth another attempt.
type errRetryable struct {
	err   error
	after time.Duration
}

func (e *errRetryable) Error() string { return e.err.Error() }

// ExportSpans sends the spans in one request, retrying what the specification calls retryable
// (429, 502, 503, 504 and transport errors) with backoff for at most a minute or until ctx ends.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if e.stopped.Load() || len(spans) == 0 {
		return nil
	}
	body, err := marshalExportRequest(spans)
	if err != nil {
		return fmt.Errorf("OTLP export: %w", err)
	}
	if e.cfg.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = b.Bytes()
	}
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		err := e.post(ctx, body)
		var r *errRetryable
		switch {
		case err == nil:
			return struct{}{}, nil
		case errors.As(err, &r) && r.after > 0:
			return struct{}{}, backoff.RetryAfter(int(math.Ceil(r.after.Seconds())))
		case errors.As(err, &r):
			return struct{}{}, err
		}
		return struct{}{}, backoff.Permanent(err)
	}, backoff.WithBackOff(e.retry()), backoff.WithMaxElapsedTime(time.Minute))
	return err
}

// post makes one attempt.
func (e *otlpExporter) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range e.cfg.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if e.cfg.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		// The error names the collector's URL, never a span's content.
		return &errRetryable{err: fmt.Errorf("OTLP export: %w", err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &errRetryable{err: fmt.Errorf("OTLP export: the collector answered %d", resp.StatusCode),
			after: time.Duration(max(after, 0)) * time.Second}
	}
	return fmt.Errorf("OTLP export: the collector answered %d", resp.StatusCode)
}

// Shutdown stops exporting; spans handed over afterwards are dropped.
func (e *otlpExporter) Shutdown(context.Context) error {
	e.stopped.Store(true)
	e.client.CloseIdleConnections()
	return nil
}

// marshalExportRequest is the protobuf ExportTraceServiceRequest of the spans: field 1
// (resource_spans) repeated, which is all the message holds; written with protowire so that the
// collector's service package (and gRPC with it) is not needed.
func marshalExportRequest(spans []sdktrace.ReadOnlySpan) ([]byte, error) {
	var out []byte
	for _, rs := range resourceSpans(spans) {
		b, err := proto.Marshal(rs)
		if err != nil {
			return nil, err
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}

// resourceSpans groups the spans by resource, then by instrumentation scope, in the order they
// come (the mapping of the SDK's OTLP exporters).
func resourceSpans(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	type scopeKey struct {
		r attribute.Distinct
		s instrumentation.Scope
	}
	var out []*tracepb.ResourceSpans
	byResource := map[attribute.Distinct]*tracepb.ResourceSpans{}
	byScope := map[scopeKey]*tracepb.ScopeSpans{}
	for _, sd := range spans {
		if sd == nil {
			continue
		}
		rk := sd.Resource().Equivalent()
		sk := scopeKey{rk, sd.InstrumentationScope()}
		ss, ok := byScope[sk]
		if !ok {
			ss = &tracepb.ScopeSpans{Scope: scopeOf(sk.s), SchemaUrl: sk.s.SchemaURL}
			byScope[sk] = ss
		}
		ss.Spans = append(ss.Spans, spanOf(sd))
		rs, seen := byResource[rk]
		if !seen {
			rs = &tracepb.ResourceSpans{Resource: resourceOf(sd.Resource()), SchemaUrl: sd.Resource().SchemaURL()}
			byResource[rk] = rs
			out = append(out, rs)
		}
		if !ok {
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
	}
	return out
}

func resourceOf(r *resource.Resource) *resourcepb.Resource {
	if r == nil {
		return nil
	}
	return &resourcepb.Resource{Attributes: keyValues(r.Attributes())}
}

func scopeOf(s instrumentation.Scope) *commonpb.InstrumentationScope {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	return &commonpb.InstrumentationScope{Name: s.Name, Version: s.Version, Attributes: keyValues(s.Attributes.ToSlice())}
}

func spanOf(sd sdktrace.ReadOnlySpan) *tracepb.Span {
	sc := sd.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	st := sd.Status()
	s := &tracepb.Span{
		TraceId:                tid[:],
		SpanId:                 sid[:],
		TraceState:             sc.TraceState().String(),
		Status:                 statusOf(st.Code, st.Description),
		StartTimeUnixNano:      unixNano(sd.StartTime()),
		EndTimeUnixNano:        unixNano(sd.EndTime()),
		Kind:                   kindOf(sd.SpanKind()),
		Name:                   sd.Name(),
		Attributes:             keyValues(sd.Attributes()),
		DroppedAttributesCount: clampUint32(sd.DroppedAttributes()),
		DroppedEventsCount:     clampUint32(sd.DroppedEvents()),
		DroppedLinksCount:      clampUint32(sd.DroppedLinks()),
		Flags:                  spanFlags(sc.TraceFlags(), sd.Parent()),
	}
	if p := sd.Parent().SpanID(); p.IsValid() {
		s.ParentSpanId = p[:]
	}
	for _, l := range sd.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		s.Links = append(s.Links, &tracepb.Span_Link{TraceId: ltid[:], SpanId: lsid[:], Attributes: keyValues(l.Attributes),
			DroppedAttributesCount: clampUint32(l.DroppedAttributeCount),
			Flags:                  spanFlags(l.SpanContext.TraceFlags(), l.SpanContext)})
	}
	for _, ev := range sd.Events() {
		s.Events = append(s.Events, &tracepb.Span_Event{Name: ev.Name, TimeUnixNano: unixNano(ev.Time),
			Attributes: keyValues(ev.Attributes), DroppedAttributesCount: clampUint32(ev.DroppedAttributeCount)})
	}
	return s
}

// spanFlags: the W3C trace flags, and whether the parent (or linked span) is remote.
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if parent.IsRemote() {
		f |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return f
}

func statusOf(c codes.Code, msg string) *tracepb.Status {
	code := tracepb.Status_STATUS_CODE_UNSET
	switch c {
	case codes.Ok:
		code = tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		code = tracepb.Status_STATUS_CODE_ERROR
	}
	return &tracepb.Status{Code: code, Message: msg}
}

func kindOf(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: anyValue(kv.Value)})
	}
	return out
}

func anyValue(v attribute.Value) *commonpb.AnyValue {
	av := &commonpb.AnyValue{}
	switch v.Type() {
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.STRING:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.AsString()}
	case attribute.BYTESLICE:
		av.Value = &commonpb.AnyValue_BytesValue{BytesValue: v.AsByteSlice()}
	case attribute.BOOLSLICE:
		av.Value = arrayOf(v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		av.Value = arrayOf(v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		av.Value = arrayOf(v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		av.Value = arrayOf(v.AsStringSlice(), attribute.StringValue)
	case attribute.SLICE:
		av.Value = arrayOf(v.AsSlice(), func(v attribute.Value) attribute.Value { return v })
	case attribute.MAP:
		av.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: keyValues(v.AsMap())}}
	case attribute.EMPTY:
	default:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return av
}

func arrayOf[T any](vs []T, value func(T) attribute.Value) *commonpb.AnyValue_ArrayValue {
	arr := &commonpb.ArrayValue{Values: make([]*commonpb.AnyValue, 0, len(vs))}
	for _, v := range vs {
		arr.Values = append(arr.Values, anyValue(value(v)))
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) } //nolint:gosec // clamped

func clampUint32(v int) uint32 { return uint32(min(max(v, 0), math.MaxUint32)) } //nolint:gosec // clamped
