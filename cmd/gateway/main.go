// Command gateway runs the Inbox Hub gateway: the one holder of the Inbox Hub credentials and token,
// serving the CRM's REST API.
//
// It owns the command line, the demo mode and the HTTP server's lifetime (timeouts, graceful
// shutdown); package app builds everything else. It must not hold gateway behaviour of its own;
// settings come from package config (only the healthcheck command reads GATEWAY_ADDR itself).
//
//	gateway               run the server (configuration from the environment, see README)
//	gateway -demo         run with the embedded store and the built-in Inbox Hub simulator
//	gateway healthcheck   exit 0 when the local server answers /healthz (for Docker HEALTHCHECK)
//	gateway version       print the version
//
//	@title						Inbox Hub gateway
//	@version					1.0
//	@description				The CRM's stable REST API in front of the Inbox Hub WhatsApp API. The gateway holds the upstream credentials and token, shares one upstream quota across replicas, caches session state, and runs "sync now" imports. Errors are RFC 9457 problem+json with a stable code.
//	@BasePath					/
//	@securityDefinitions.apikey	ApiKey
//	@in							header
//	@name						X-API-Key
//	@description				A per-application gateway key (never an Inbox Hub credential).
//	@securityDefinitions.apikey	BearerJWT
//	@in							header
//	@name						Authorization
//	@description				"Bearer <JWT>" signed by the CRM, with scopes in the "scope" claim.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/logbuf"
	"github.com/inboxhub-gateway/gateway/internal/runtimetune"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], config.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// run is the whole program; it returns instead of exiting so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	getenv, serveNow, err := command(ctx, args, getenv, stdout)
	if err != nil || !serveNow {
		return err
	}
	cfg, err := config.Load(getenv, app.ConfigChecks()...)
	if err != nil {
		return err
	}
	// Log lines are buffered and written in batches (internal/logbuf): a request never waits on
	// stdout. Close writes the last ones when run returns.
	logOut := logbuf.New(stdout, 0, 0)
	defer logOut.Close()
	logger, tracing, stopTracing, err := observe(ctx, getenv, cfg, logOut)
	if err != nil {
		return err
	}
	defer stopTracing()
	if cfg.Demo {
		stopDemo, err := startDemo(ctx, &cfg, logger, logOut)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer stopDemo()
	}
	policy, err := runtimetune.Apply(memlimit.FromCgroup)
	if err != nil {
		logger.Warn("the container's memory limit could not be read: no soft memory limit is set", "error", err.Error())
	}
	logger.Info("starting", "version", version, "config", cfg, "tracing", tracing.On, "tracesProtocol", tracing.Protocol,
		"serviceName", tracing.Service, "runtime", policy)
	if cfg.TokenEncryption.CurrentID == "" {
		logger.Warn("TOKEN_ENCRYPTION_KEY is not set: upstream tokens are stored in Redis unencrypted")
	}

	// The replica's background work runs until Close, through the drain that follows the signal.
	// logger writes JSON lines to logOut (observe): the access log writes its own there directly.
	a, err := app.New(context.WithoutCancel(ctx), cfg, logger, version, app.WithLogOutput(logOut))
	if err != nil {
		return err
	}
	defer a.Close()
	servers, err := listen(cfg, a, logger)
	if err != nil {
		return err
	}
	if err := waitForSignal(ctx, servers); err != nil {
		return err
	}
	return stopReplica(cfg, a, servers, logger)
}

// command reads the command line. serveNow is false when a command (healthcheck, version) has
// run instead of the server; -demo makes getenv answer GATEWAY_DEMO=1.
func command(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) (_ func(string) string, serveNow bool, err error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stdout)
	demo := fs.Bool("demo", false, "run with the embedded store and the built-in Inbox Hub simulator (same as GATEWAY_DEMO=1)")
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	switch fs.Arg(0) {
	case "":
	case "healthcheck":
		return nil, false, healthcheck(ctx, getenv)
	case "version":
		_, err := fmt.Fprintln(stdout, version)
		return nil, false, err
	default:
		return nil, false, fmt.Errorf("unknown command %q (commands: healthcheck, version)", fs.Arg(0))
	}
	if *demo {
		getenv = withDemo(getenv)
	}
	return getenv, true, nil
}

// observe sets up the logger (JSON lines on out) and tracing, which the standard OTEL_* variables
// alone configure (off unless an exporter is). stopTracing exports the last spans.
func observe(ctx context.Context, getenv func(string) string, cfg config.Config, out io.Writer) (_ *slog.Logger, tracing telemetry.Settings, stopTracing func(), err error) {
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: cfg.LogLevel}))
	shutdown, tracing, err := telemetry.Setup(ctx, getenv, version)
	if err != nil {
		return nil, tracing, nil, fmt.Errorf("tracing: %w", err)
	}
	stopTracing = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			logger.Warn("tracing: spans not exported at shutdown", "error", err.Error())
		}
	}
	if tracing.On {
		logger = slog.New(telemetry.LogHandler(logger.Handler())) // trace_id and span_id on request lines
	}
	// go-redis reports connection trouble through a package-level logger; route it to ours so
	// every line stays JSON.
	redis.SetLogger(redisLog{logger.With("component", "redis")})
	return logger, tracing, stopTracing, nil
}

// listen serves the public API, and the admin handler when GATEWAY_ADMIN_ADDR is set.
func listen(cfg config.Config, a *app.App, logger *slog.Logger) ([]*server, error) {
	public, err := serve("public", cfg.Addr, a.Handler(), logger)
	if err != nil {
		return nil, err
	}
	if cfg.AdminAddr == "" {
		return []*server{public}, nil
	}
	admin, err := serve("admin", cfg.AdminAddr, a.AdminHandler(), logger)
	if err != nil {
		_ = public.srv.Close()
		return nil, err
	}
	return []*server{public, admin}, nil
}

// waitForSignal returns nil when ctx ends (the signal to stop), or the error of a listener that
// stopped serving first.
func waitForSignal(ctx context.Context, servers []*server) error {
	public := servers[0]
	var adminDone <-chan error // nil: no admin listener
	if len(servers) > 1 {
		adminDone = servers[1].done
	}
	select {
	case err := <-public.done:
		return fmt.Errorf("serve: %w", err)
	case err := <-adminDone:
		return fmt.Errorf("serve admin: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// stopReplica shuts the replica down: drain (not ready, still serving), the listeners stop (the public
// one first: the admin one answers until the end) within GATEWAY_SHUTDOWN_TIMEOUT, then the
// replica's jobs and leases are returned and its store closed.
func stopReplica(cfg config.Config, a *app.App, servers []*server, logger *slog.Logger) error {
	logger.Info("draining: reporting not ready, still serving", "delay", cfg.DrainDelay.String())
	a.Drain(context.Background(), cfg.DrainDelay)
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.shutdown(sctx); err != nil {
			return err
		}
	}
	a.Close() // returns this replica's jobs and leases
	logger.Info("stopped")
	return nil
}

// server is one of the gateway's HTTP listeners.
type server struct {
	name string
	srv  *http.Server
	done chan error // Serve's result
}

// serve listens on addr and serves h there in the background, with the gateway's timeouts.
func serve(name, addr string, h http.Handler, logger *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, name, err)
	}
	s := &server{name: name, done: make(chan error, 1), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}}
	go func() { s.done <- s.srv.Serve(ln) }()
	if name == "public" {
		logger.Info("listening", "addr", ln.Addr().String())
	} else {
		logger.Info("listening", "listener", name, "addr", ln.Addr().String())
	}
	return s, nil
}

// shutdown stops accepting and waits, within ctx, for the requests in flight.
func (s *server) shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown (%s): %w", s.name, err)
	}
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// healthcheck asks the local server's /healthz, for a container HEALTHCHECK (the final image has
// no shell or curl).
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("GATEWAY_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("GATEWAY_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
	}
	return nil
}

// redisLog adapts slog to go-redis' logger.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// withDemo makes -demo equivalent to GATEWAY_DEMO=1.
func withDemo(getenv func(string) string) func(string) string {
	return func(k string) string {
		if k == "GATEWAY_DEMO" {
			return "1"
		}
		return getenv(k)
	}
}
