package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/sim"
)

// startDemo runs the Inbox Hub simulator in-process on a loopback port with freshly generated
// credentials, points cfg at it with the embedded store and a generated token encryption key, and
// adds a generated demo API key holding every scope. It prints the Swagger URL and the key. Nothing here is a real credential.
func startDemo(ctx context.Context, cfg *config.Config, logger *slog.Logger, stdout io.Writer) (stop func(), err error) {
	ident, pass, upKey, callerKey := "demo-"+randomHex(4)+"@example.invalid", randomHex(16), "demo_upstream_"+randomHex(12), "demo_"+randomHex(16)

	s, err := sim.New(sim.Options{
		Identifier: ident, Password: pass, APIKey: upKey,
		Logger: logger.With("component", "inboxhub-sim"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("demo simulator stopped", "error", err)
		}
	}()

	cfg.Upstream.BaseURL = "http://" + ln.Addr().String()
	cfg.Upstream.Identifier = config.NewSecret(ident)
	cfg.Upstream.Password = config.NewSecret(pass)
	cfg.Upstream.APIKey = config.NewSecret(upKey)
	cfg.RedisURL = config.Secret{}
	demoKey := make([]byte, 32)
	_, _ = rand.Read(demoKey)
	cfg.TokenEncryption = config.TokenEncryption{CurrentID: "demo", Keys: map[string][]byte{"demo": demoKey}}
	cfg.APIKeys = append(cfg.APIKeys, config.APIKey{
		Name: "demo", SHA256: sha256.Sum256([]byte(callerKey)), Scopes: config.Scopes, Plain: true,
	})

	base := "http://" + displayAddr(cfg.Addr)
	fmt.Fprintf(stdout, `
  Inbox Hub gateway: demo mode (embedded store, built-in Inbox Hub simulator)
    Swagger UI:    %s/swagger/index.html
    Demo API key:  %s   (all scopes; send it as X-API-Key)
    Try:           curl -H 'X-API-Key: %s' %s/v1/admin/status
    Console:       %s/console
    Simulator:     %s (fake Inbox Hub with generated credentials)
%s
`, base, callerKey, callerKey, base, base, cfg.Upstream.BaseURL, adminLine(cfg.AdminAddr))

	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		s.Close()
	}, nil
}

// adminLine names the admin listener's metrics in the demo banner, when there is one.
func adminLine(addr string) string {
	if addr == "" {
		return ""
	}
	return "    Metrics:       http://" + displayAddr(addr) + "/metrics (admin listener, GATEWAY_ADMIN_ADDR)\n"
}

func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
