// Package telemetry owns the gateway's distributed tracing (OpenTelemetry) and the request id
// that travels with a request beyond the gateway: what turns tracing on, the sampler, the
// propagators, the spans of outgoing HTTP calls and of Redis commands, the trace context that a
// queued job carries, the trace fields of log lines, and the OTLP/HTTP exporter (otlphttp.go).
//
// Tracing is configured only by the standard OTEL_* variables (Setup). It is off unless an OTLP
// endpoint is configured and OTEL_TRACES_EXPORTER is not "none"; off, nothing of it is installed
// (no middleware, no Redis hook, no log wrapper), so a request pays nothing for it. On, the SDK's
// provider and propagator become OpenTelemetry's globals, which every instrumented part reads.
//
// It must never record what the gateway keeps out of logs and metrics: no raw request path (it
// holds phone numbers and JIDs; spans name route patterns), no query, no header other than the
// propagation ones, no Redis command argument (tokens, personal data), no error text (an
// *url.Error repeats the URL).
//
// It depends on no package of the gateway, so that every package may use it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName names the gateway's tracer.
const InstrumentationName = "github.com/inboxhub-gateway/gateway"

// DefaultServiceName is the service name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "inboxhub-gateway"

// enabled is whether a recording provider is installed (Setup with an exporter, or Install).
var enabled atomic.Bool

// Enabled reports whether tracing is on. Parts that add per-request work for tracing (the server
// middleware, the Redis hook, the log wrapper) are installed only when it is.
func Enabled() bool { return enabled.Load() }

// Tracer is the gateway's tracer, from the global provider.
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(InstrumentationName) }

// Propagator is the global propagator (W3C tracecontext and baggage unless OTEL_PROPAGATORS says
// otherwise).
func Propagator() propagation.TextMapPropagator { return otel.GetTextMapPropagator() }

// Settings is the tracing configuration read from the OTEL_* variables.
type Settings struct {
	// On: an exporter is configured (OTEL_TRACES_EXPORTER is not "none", an OTLP endpoint is set,
	// OTEL_SDK_DISABLED is not true).
	On bool
	// Protocol is the OTLP protocol: "http/protobuf", the only one built in (grpc is refused, see
	// otlphttp.go).
	Protocol string
	// exporter is what the OTEL_EXPORTER_OTLP_* variables say about the exporter.
	exporter exporterConfig
	// Service is OTEL_SERVICE_NAME, or DefaultServiceName.
	Service string
	// Sampler is the root sampler from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
	Sampler sdktrace.Sampler
	// Propagator is made from OTEL_PROPAGATORS.
	Propagator propagation.TextMapPropagator
}

// Read reads the tracing settings through getenv (os.Getenv in production). Only OTEL_*
// variables are read; a wrong value is an error naming the variable.
func Read(getenv func(string) string) (Settings, error) {
	var s Settings
	var onErr, protocolErr, exporterErr, samplerErr, propagatorErr error
	s.On, onErr = tracesOn(getenv)
	s.Protocol, protocolErr = readProtocol(getenv)
	if s.On {
		s.exporter, exporterErr = readExporter(getenv)
	}
	s.Service = strings.TrimSpace(getenv("OTEL_SERVICE_NAME"))
	if s.Service == "" {
		s.Service = DefaultServiceName
	}
	s.Sampler, samplerErr = readSampler(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG"))
	s.Propagator, propagatorErr = readPropagator(getenv("OTEL_PROPAGATORS"))
	return s, errors.Join(onErr, protocolErr, exporterErr, samplerErr, propagatorErr)
}

// otlpVar is the exporter variable OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>,
// as the specification says, trimmed.
func otlpVar(getenv func(string) string, name string) string {
	if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_" + name)); v != "" {
		return v
	}
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_" + name))
}

// tracesOn: tracing is on when the exporter is otlp (or unset), an endpoint is set and the SDK is
// not disabled; an exporter other than otlp or none is an error.
func tracesOn(getenv func(string) string) (bool, error) {
	var err error
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	switch exporter {
	case "", "otlp", "none":
	default:
		err = fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", exporter)
	}
	endpoint := otlpVar(getenv, "ENDPOINT")
	disabled := strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true")
	return exporter != "none" && endpoint != "" && !disabled, err
}

// readProtocol is the OTLP protocol, http/protobuf by default and the only one built in; the
// value read is returned with its error.
func readProtocol(getenv func(string) string) (string, error) {
	switch p := otlpVar(getenv, "PROTOCOL"); p {
	case "":
		return "http/protobuf", nil
	case "http/protobuf":
		return p, nil
	case "grpc":
		return p, errors.New("OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not built into the gateway: " +
			"use http/protobuf (a collector's OTLP/HTTP port, 4318 by default)")
	default:
		return p, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported (http/protobuf)", p)
	}
}

// readPropagator makes the propagator of the comma-separated names in OTEL_PROPAGATORS (default
// tracecontext and baggage).
func readPropagator(list string) (propagation.TextMapPropagator, error) {
	var names []string
	for n := range strings.SplitSeq(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		names = []string{"tracecontext", "baggage"}
	}
	p, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return p, fmt.Errorf("OTEL_PROPAGATORS: %w", err)
	}
	return p, nil
}

// readSampler builds the sampler the OpenTelemetry specification names (default
// parentbased_always_on).
func readSampler(name, arg string) (sdktrace.Sampler, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") && strings.TrimSpace(arg) != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
		}
		ratio = r
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: %q is not supported", name)
}

// Setup reads the settings through getenv and, when an exporter is configured, installs a
// batching provider that exports over OTLP/HTTP (endpoint, headers, TLS, timeout and compression
// from the standard OTEL_EXPORTER_OTLP_* variables, see readExporter). The returned shutdown
// flushes and stops it; it is a no-op when tracing is off.
func Setup(ctx context.Context, getenv func(string) string, version string) (shutdown func(context.Context) error, s Settings, err error) {
	s, err = Read(getenv)
	if err != nil || !s.On {
		return func(context.Context) error { return nil }, s, err
	}
	exp := newOTLPExporter(s.exporter)
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(s.Service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, s, fmt.Errorf("trace resource: %w", err)
	}
	tp := NewProvider(s.Sampler, sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	restore := Install(tp, s.Propagator)
	return func(ctx context.Context) error {
		defer restore()
		return tp.Shutdown(ctx)
	}, s, nil
}

// NewProvider is an SDK provider with the gateway's sampling rule around root: a trace starts
// only at a request the gateway serves (or a job that has none to continue); an outgoing call or
// a Redis command with no span to belong to (the workers' polling, the token refresher) starts
// none. Tests build it over an in-memory exporter.
func NewProvider(root sdktrace.Sampler, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	if root == nil {
		root = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{
		sdktrace.WithSampler(noOrphanClients{root}),
	}, opts...)...)
}

// noOrphanClients drops client spans that have no parent, and asks root about everything else.
type noOrphanClients struct{ root sdktrace.Sampler }

func (s noOrphanClients) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.Kind == trace.SpanKindClient && !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return s.root.ShouldSample(p)
}

func (s noOrphanClients) Description() string {
	return "NoOrphanClients{" + s.root.Description() + "}"
}

// Install makes tp and prop OpenTelemetry's globals and turns tracing on; restore puts back what
// was there (tests install an in-memory provider for their duration).
func Install(tp trace.TracerProvider, prop propagation.TextMapPropagator) (restore func()) {
	prevTP, prevProp, prevOn := otel.GetTracerProvider(), otel.GetTextMapPropagator(), enabled.Load()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	enabled.Store(true)
	return func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		enabled.Store(prevOn)
	}
}
