package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// The floor of the latency measurement: the least that any process between a client and the
// upstream adds on this machine. A floor proxy is this program started again as a process of its
// own (floorCommand), forwarding every request to the simulator with net/http/httputil's
// ReverseProxy; with Redis it also asks Redis once before forwarding and writes once after the
// answer, as a cache shared by a fleet must on a miss at the least (the gateway's miss path does
// the same: one script before the upstream call, one after the answer).
const (
	floorCommand   = "floor-proxy"
	envFloorListen = "FLOOR_LISTEN"
	envFloorTarget = "FLOOR_TARGET"
	envFloorRedis  = "FLOOR_REDIS"
)

// startFloor starts a floor proxy in front of simURL, with Redis when redisURL is not empty, and
// waits until it answers.
func (h *harness) startFloor(ctx context.Context, name, simURL, redisURL string) (*childproc.Process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := childproc.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), envFloorListen + "=" + addr, envFloorTarget + "=" + simURL,
		envFloorRedis + "=" + redisURL}
	return h.startReady(ctx, "floor proxy", self, []string{floorCommand}, env, name+"-floor.log", addr, "/health", time.Minute)
}

// serveFloor is the floor proxy's process: it serves until SIGTERM.
func serveFloor() error {
	target, err := url.Parse(os.Getenv(envFloorTarget))
	if err != nil || target.Host == "" {
		return fmt.Errorf("%s is not a URL", envFloorTarget)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	var handler http.Handler = proxy
	if s := os.Getenv(envFloorRedis); s != "" {
		opt, err := redis.ParseURL(s)
		if err != nil {
			return fmt.Errorf("%s: %w", envFloorRedis, err)
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		handler = withRedis(rdb, proxy)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: os.Getenv(envFloorListen), Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// withRedis reads a key of the request's URL from Redis before next answers and writes it after,
// in the background, as a shared cache's miss does.
func withRedis(rdb *redis.Client, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := "flatcost:floor:" + r.URL.RequestURI()
		if err := rdb.Get(r.Context(), key).Err(); err != nil && !errors.Is(err, redis.Nil) {
			http.Error(w, "redis", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
		go rdb.Set(context.Background(), key, "1", time.Minute)
	})
}
