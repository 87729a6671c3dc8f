package tokens

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// hotSource returns a Source holding a valid token in memory, on a Redis client that cannot reach
// any server: a Redis call on the hot path would fail the benchmark.
func hotSource(b *testing.B) *Source {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	b.Cleanup(func() { _ = rdb.Close() })
	s, err := New(rdb, newFakeAuth(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	s.cur.Store(s.newToken("header.payload.signature", "refresh", now, now.Add(time.Hour), 1))
	return s
}

func BenchmarkTokenHot(b *testing.B) {
	s := hotSource(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenHotParallel(b *testing.B) {
	s := hotSource(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// rwToken is the usual alternative: the token behind a sync.RWMutex.
type rwToken struct {
	mu  sync.RWMutex
	tok upstream.AccessToken
	exp time.Time
}

func (r *rwToken) get() (upstream.AccessToken, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tok, time.Now().Before(r.exp)
}

func BenchmarkRWMutexBaseline(b *testing.B) {
	r := &rwToken{tok: upstream.AccessToken{Value: "header.payload.signature", Generation: 1}, exp: time.Now().Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.get(); !ok {
			b.Fatal("expired")
		}
	}
}

func BenchmarkRWMutexBaselineParallel(b *testing.B) {
	r := &rwToken{tok: upstream.AccessToken{Value: "header.payload.signature", Generation: 1}, exp: time.Now().Add(time.Hour)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := r.get(); !ok {
				b.Error("expired")
				return
			}
		}
	})
}

// fixedClock reads no clock at all, so the benchmarks below measure the synchronisation alone (on
// some virtual machines time.Now costs ~100 ns and hides it).
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func BenchmarkTokenHotFixedClock(b *testing.B) {
	s := hotSource(b)
	s.cfg.clock = fixedClock{time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRWMutexBaselineFixedClock(b *testing.B) {
	now := time.Now()
	r := &rwToken{tok: upstream.AccessToken{Value: "header.payload.signature", Generation: 1}, exp: now.Add(time.Hour)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.mu.RLock()
			tok, ok := r.tok, now.Before(r.exp)
			r.mu.RUnlock()
			if !ok || tok.Value == "" {
				b.Error("expired")
				return
			}
		}
	})
}
