// Package cache opens the gateway's Redis connection and keeps the gateway's cached state in it.
//
// With REDIS_URL set it connects to real Redis, Sentinel or Cluster through go-redis' universal
// client; without it, it starts an embedded in-process Redis-compatible server (miniredis) and
// connects to that over loopback. Either way the rest of the program holds one
// redis.UniversalClient and only ever speaks Redis, so there is a single code path to test.
package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Store is the gateway's Redis connection.
type Store struct {
	// Client is the one Redis client of the process.
	Client redis.UniversalClient
	// Embedded is true when Client talks to the in-process server (single replica only).
	Embedded bool

	embedded *miniredis.Miniredis
}

// Open connects to the Redis named by redisURL, or starts the embedded server when it is empty,
// and checks the connection with a PING. It logs a warning when the store is embedded.
func Open(ctx context.Context, redisURL string, logger *slog.Logger) (*Store, error) {
	if redisURL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start embedded store: %w", err)
		}
		logger.Warn("REDIS_URL is not set: using the embedded in-process store; run a single replica only, state is lost on restart",
			"addr", mr.Addr())
		s := &Store{
			Client:   redis.NewUniversalClient(withTimeouts(&redis.UniversalOptions{Addrs: []string{mr.Addr()}})),
			Embedded: true,
			embedded: mr,
		}
		if err := s.Ping(ctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	opts, err := ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	s := &Store{Client: redis.NewUniversalClient(withTimeouts(opts))}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// withTimeouts bounds every Redis call, so that an unreachable Redis costs a request at most a
// few hundred milliseconds (the token source then serves its in-memory token) instead of
// go-redis' default waits.
func withTimeouts(o *redis.UniversalOptions) *redis.UniversalOptions {
	o.DialTimeout = time.Second
	o.ReadTimeout = 2 * time.Second
	o.WriteTimeout = 2 * time.Second
	o.ContextTimeoutEnabled = true
	o.MaxRetries = 1
	return o
}

// Ping checks that Redis answers, within a short deadline.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close closes the client and stops the embedded server, if any.
func (s *Store) Close() {
	_ = s.Client.Close()
	if s.embedded != nil {
		s.embedded.Close()
	}
}

// ParseURL turns REDIS_URL into universal client options. Accepted forms:
//
//	redis://[:password@]host:port[/db]            one server (rediss:// for TLS)
//	redis-sentinel://[:password@]h1:port,h2:port[/db]?master=name
//	redis-cluster://[:password@]h1:port,h2:port   Redis Cluster (rediss-cluster:// for TLS)
//
// Errors never repeat the password.
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("REDIS_URL is not a URL")
	}
	switch u.Scheme {
	case "redis", "rediss":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %s", scrub(err, u))
		}
		return &redis.UniversalOptions{
			Addrs: []string{o.Addr}, DB: o.DB,
			Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		}, nil
	case "redis-sentinel", "redis-cluster", "rediss-cluster":
	default:
		return nil, fmt.Errorf("REDIS_URL: scheme %q is not redis, rediss, redis-sentinel or redis-cluster", u.Scheme)
	}
	addrs := strings.Split(u.Host, ",")
	for _, a := range addrs {
		if a == "" || !strings.Contains(a, ":") {
			return nil, fmt.Errorf("REDIS_URL: %q is not host:port", a)
		}
	}
	o := &redis.UniversalOptions{Addrs: addrs}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if u.Scheme == "rediss-cluster" {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if u.Scheme == "redis-sentinel" {
		o.MasterName = u.Query().Get("master")
		if o.MasterName == "" {
			return nil, errors.New("REDIS_URL: a redis-sentinel URL needs ?master=<name>")
		}
		o.SentinelPassword = u.Query().Get("sentinel_password")
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("REDIS_URL: database %q is not a number", db)
			}
			o.DB = n
		}
	} else {
		o.IsClusterMode = true
	}
	return o, nil
}

// scrub removes the URL's password from a parser error, should the parser have quoted it.
func scrub(err error, u *url.URL) string {
	msg := err.Error()
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "***")
		}
	}
	return msg
}
