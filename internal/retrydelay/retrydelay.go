// Package retrydelay owns the waits between the tries of something that failed, when they are
// counted by attempt: exponential growth from a first wait up to a cap, and the jitter that spreads
// replicas retrying together. The attempt count may come from anywhere (a loop, a task record, a
// counter kept in Redis), which is why these are functions of it rather than a stateful
// iterator; a plain retry loop uses github.com/cenkalti/backoff/v5.
package retrydelay

import (
	"math/rand/v2"
	"time"
)

// Exponential is the wait after failed attempt n (1 for the first failure): first, doubled for
// each attempt after the first, at most limit. An n below 1 counts as 1; it never overflows.
func Exponential(first, limit time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d > 0 && d < limit; i++ {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// FullJitter is a random duration in [0, d] ("full jitter"): replicas that failed together retry
// spread over the whole wait.
func FullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// EqualJitter is a random duration in [d/2, d] ("equal jitter"): spread like FullJitter, but
// never shorter than half the wait.
func EqualJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
