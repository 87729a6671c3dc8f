package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store is the gateway's Redis connection.
type Store struct {
	// Client is the one Redis client of the process.
	Client redis.UniversalClient
	// Embedded is true when Client talks to the in-process server (single replica only).
	Embedded bool

	embedded *embeddedStore
}

// Open connects to the Redis named by redisURL, or starts the embedded server when it is empty
// (in-process, with no listener: only this process can reach it), and checks the connection with a PING. It logs a warning when the store is embedded.
func Open(ctx context.Context, redisURL string, logger *slog.Logger) (*Store, error) {
	if redisURL == "" {
		e, err := startEmbedded()
		if err != nil {
			return nil, err
		}
		logger.Warn("REDIS_URL is not set: using the embedded in-process store (no listener, reachable only by this process); run a single replica only, state is lost on restart")
		s := &Store{
			Client:   redis.NewUniversalClient(withTimeouts(&redis.UniversalOptions{Dialer: e.dial})),
			Embedded: true,
			embedded: e,
		}
		if err := s.Ping(ctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	target, err := Parse(redisURL)
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
	Limits{Dial: &o.DialTimeout, Read: &o.ReadTimeout, Write: &o.WriteTimeout, Retries: &o.MaxRetries, ContextTimeout: &o.ContextTimeoutEnabled}.Fill()
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
		s.embedded.close()
	}
}
