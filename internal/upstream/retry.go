package upstream

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
)

// retryPolicy decides which failed attempts are tried again and how long to wait first.
//
// Retried: idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) after 429, 502, 503, 504, a
// connection failure or an attempt timeout; any request, POST included, after a dial failure, which
// proves that the request never reached the upstream. A POST (send, connect, login) that may have
// reached the upstream is never repeated: a second send would deliver a WhatsApp message twice.
// A 401 is not a retry: it is handled once, with a fresh token, outside this policy.
type retryPolicy struct {
	maxAttempts int
	base        time.Duration
	cap         time.Duration
}

// backoff is the wait before attempt n+1 after attempt n failed: full jitter, a random duration in
// [0, min(cap, base*2^(n-1))], so that replicas retrying together spread out.
func (p retryPolicy) backoff(n int) time.Duration {
	return retrydelay.FullJitter(retrydelay.Exponential(p.base, p.cap, n))
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout:
		return true
	}
	return false
}

// serverWait is how long the upstream asked us to wait, from Retry-After (seconds or an HTTP date),
// then RateLimit-Reset (seconds from now), then X-RateLimit-Reset (epoch seconds; small values are
// taken as seconds from now). Zero when none is present or readable.
func serverWait(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return seconds(n)
		}
		if t, err := http.ParseTime(v); err == nil {
			return positive(t.Sub(now))
		}
	}
	if v := strings.TrimSpace(h.Get("RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return seconds(n)
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n > 1_000_000_000 { // an epoch time, as documented
				return positive(time.Unix(n, 0).Sub(now))
			}
			return seconds(n)
		}
	}
	return 0
}

// maxServerWait bounds what a header can ask for, so that arithmetic on it cannot overflow.
const maxServerWait = 24 * time.Hour

func seconds(n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	if n > int64(maxServerWait/time.Second) {
		return maxServerWait
	}
	return time.Duration(n) * time.Second
}

func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return min(d, maxServerWait)
}

// sleep waits d or until ctx is done, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
