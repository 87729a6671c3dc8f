package cache

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/redisurl"
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
	target, err := redisurl.Parse(redisURL)
	if err != nil {
		return nil, err
	}
	s := &Store{Client: target.NewClient()}
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
	redisurl.Limits{Dial: &o.DialTimeout, Read: &o.ReadTimeout, Write: &o.WriteTimeout, Retries: &o.MaxRetries, ContextTimeout: &o.ContextTimeoutEnabled}.Fill()
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
