// Command inboxhub-sim serves the Inbox Hub simulator (package internal/sim) over HTTP, for
// development, demos and benchmarks of the gateway against an upstream it can reach.
//
// Usage:
//
//	inboxhub-sim [-addr :8084]
//
// Everything else comes from the environment; unset means the default in brackets:
//
//	SIM_ADDR                   listen address, overridden by -addr [:8084]
//	SIM_IDENTIFIER             login identifier the simulator accepts [generated]
//	SIM_PASSWORD               login password [generated]
//	SIM_API_KEY                X-API-Key value [generated]
//	SIM_JWT_SECRET             HS256 key of the tokens [random]
//	SIM_TOKEN_LIFETIME         access token lifetime, e.g. 24h, 15m, 7d [24h]
//	SIM_REFRESH_LIFETIME       refresh token lifetime [7d]
//	SIM_ROTATE_REFRESH         true: each refresh answers a new refresh token, the old one dies [false]
//	SIM_OMIT_REFRESH_FIELDS    true: refresh answers only accessToken [false]
//	SIM_SEED                   seed of the generated data [0]
//	SIM_SESSIONS               number of sessions [3]
//	SIM_CONTACTS               contacts per connected session; -1 for none [120]
//	SIM_CHATS                  chats per connected session; -1 for none [40]
//	SIM_MESSAGES_PER_CHAT      messages per chat; -1 for none [25]
//	SIM_RATE_AUTH              login/refresh quota per caller, N/duration or 0 for none [5/15m]
//	SIM_RATE_READ              read quota [30/1m]
//	SIM_RATE_SEND              send quota [10/1m]
//	SIM_RATE_GLOBAL            quota over every /api request [1000/15m]
//	SIM_QR_DELAY               time from connect to a scannable QR [1s]
//	SIM_QR_LIFETIME            lifetime of a QR before it is replaced [60s]
//	SIM_WEBHOOK_URL            where webhooks go [none]
//	SIM_WEBHOOK_SECRET         HMAC key of X-Webhook-Signature [unsigned]
//	SIM_LEGACY_WEBHOOKS        true: the older webhook payload shape [false]
//	SIM_ADMIN_KEY              required as X-Sim-Admin-Key on /_sim routes when set [open]
//
// Credentials left unset are generated and printed once at startup: they are fake and only
// open this simulator. Logs are JSON on stdout. SIGINT or SIGTERM shuts the server down
// gracefully.
//
// It holds nothing but flags, settings and the server's lifetime (the simulation is package sim),
// and must not be deployed as a stand-in for Inbox Hub for real users.
package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxhub-sim:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests may take once a signal arrives.
const shutdownTimeout = 10 * time.Second

// run configures the simulator from args and the environment, serves it until ctx ends, then
// shuts it down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("inboxhub-sim", flag.ContinueOnError)
	flags.SetOutput(stdout)
	addr := flags.String("addr", envOr(getenv, "SIM_ADDR", ":8084"), "listen address (also SIM_ADDR)")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	opts, generated, err := optionsFromEnv(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	opts.Logger = log
	if len(generated) > 0 {
		fmt.Fprintln(stdout, "Generated fake credentials for this run (they only open this simulator):")
		for _, line := range generated {
			fmt.Fprintln(stdout, "  "+line)
		}
	}
	s, err := sim.New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute, // room for injected latency
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("listening", "addr", "http://"+ln.Addr().String(), "seed", opts.Seed, "sessions", opts.Sessions,
		"rateAuth", opts.RateAuth.String(), "rateRead", opts.RateRead.String(), "rateSend", opts.RateSend.String(),
		"rateGlobal", opts.RateGlobal.String(), "webhooks", opts.WebhookURL != "")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// optionsFromEnv reads sim.Options from the environment, reporting every bad variable at
// once. Missing credentials are generated; the lines to print about them are returned.
func optionsFromEnv(getenv func(string) string) (sim.Options, []string, error) {
	e := envReader{getenv: getenv}
	var o sim.Options
	var generated []string
	for _, cred := range []struct {
		name   string
		dst    *string
		prefix string
	}{
		{"SIM_IDENTIFIER", &o.Identifier, "sim-operator-"},
		{"SIM_PASSWORD", &o.Password, ""},
		{"SIM_API_KEY", &o.APIKey, "sim_key_"},
	} {
		if *cred.dst = getenv(cred.name); *cred.dst == "" {
			*cred.dst = cred.prefix + crand.Text()
			generated = append(generated, cred.name+"="+*cred.dst)
		}
	}
	if v := getenv("SIM_JWT_SECRET"); v != "" {
		o.JWTSecret = []byte(v)
	}
	e.duration("SIM_TOKEN_LIFETIME", &o.TokenLifetime)
	e.duration("SIM_REFRESH_LIFETIME", &o.RefreshLifetime)
	e.boolean("SIM_ROTATE_REFRESH", &o.RotateRefreshTokens)
	e.boolean("SIM_OMIT_REFRESH_FIELDS", &o.OmitRefreshFields)
	e.integer("SIM_SEED", func(n int) { o.Seed = int64(n) })
	e.integer("SIM_SESSIONS", func(n int) { o.Sessions = n })
	e.integer("SIM_CONTACTS", func(n int) { o.Contacts = n })
	e.integer("SIM_CHATS", func(n int) { o.Chats = n })
	e.integer("SIM_MESSAGES_PER_CHAT", func(n int) { o.MessagesPerChat = n })
	e.rate("SIM_RATE_AUTH", &o.RateAuth)
	e.rate("SIM_RATE_READ", &o.RateRead)
	e.rate("SIM_RATE_SEND", &o.RateSend)
	e.rate("SIM_RATE_GLOBAL", &o.RateGlobal)
	e.duration("SIM_QR_DELAY", &o.QRDelay)
	e.duration("SIM_QR_LIFETIME", &o.QRLifetime)
	o.WebhookURL = getenv("SIM_WEBHOOK_URL")
	o.WebhookSecret = getenv("SIM_WEBHOOK_SECRET")
	e.boolean("SIM_LEGACY_WEBHOOKS", &o.LegacyWebhooks)
	o.AdminKey = getenv("SIM_ADMIN_KEY")
	return o, generated, errors.Join(e.errs...)
}

// envReader parses typed variables, collecting an error for each bad one.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (e *envReader) fail(name, v, want string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: want %s", name, v, want))
}

func (e *envReader) duration(name string, dst *time.Duration) {
	if v := e.getenv(name); v != "" {
		d, err := sim.ParseDuration(v)
		if err != nil || d <= 0 {
			e.fail(name, v, "a positive duration such as 90s, 15m, 24h or 7d")
			return
		}
		*dst = d
	}
}

func (e *envReader) boolean(name string, dst *bool) {
	if v := e.getenv(name); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.fail(name, v, "true or false")
			return
		}
		*dst = b
	}
}

func (e *envReader) integer(name string, set func(int)) {
	if v := e.getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.fail(name, v, "a whole number")
			return
		}
		set(n)
	}
}

func (e *envReader) rate(name string, dst *sim.Rate) {
	if v := e.getenv(name); v != "" {
		r, err := sim.ParseRate(v)
		if err != nil {
			e.fail(name, v, "N/duration such as 30/1m, or 0 for no limit")
			return
		}
		*dst = r
	}
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
