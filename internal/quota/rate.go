package quota

import (
	"fmt"
	"math"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/config"
)

// Rate is a quota of N calls per Per, as the upstream states its limits ("30 per minute").
// N == 0 means unlimited. Burst, when positive, is how many calls may go out at once (at most N);
// zero means the Limiter's default (see WithBurst and the package documentation for why a burst
// costs sustained throughput).
type Rate struct {
	N     int
	Per   time.Duration
	Burst int
}

// Unlimited reports whether the rate sets no limit.
func (r Rate) Unlimited() bool { return r.N == 0 }

// Validate reports a rate that cannot be enforced.
func (r Rate) Validate() error {
	switch {
	case r.N < 0:
		return fmt.Errorf("quota: rate %d/%s: the count must not be negative", r.N, r.Per)
	case r.N == 0:
		return nil
	case r.Per <= 0:
		return fmt.Errorf("quota: rate %d/%s: the period must be positive", r.N, r.Per)
	case r.Burst < 0 || r.Burst > r.N:
		return fmt.Errorf("quota: rate %d/%s: the burst %d must be between 0 and %d", r.N, r.Per, r.Burst, r.N)
	}
	return nil
}

// String prints the rate in the syntax of its setting ("30/1m", "5/15m", "0"; config.ParseRate).
func (r Rate) String() string { return config.Rate{N: r.N, Per: r.Per}.String() }

// params are a rate's GCRA parameters in microseconds (the unit of the Redis clock).
//
// GCRA keeps one theoretical arrival time (TAT) per bucket. A call at time t is admitted when
// t >= TAT - tau, and then TAT = max(TAT, t) + T. With tau = (b-1)*T it admits b calls at once and
// then one every T.
//
// The upstream counts calls per window (express-rate-limit: N per fixed window of Per; a sliding
// window is stricter), and GCRA with T = Per/N and a burst would break it: b calls at once and N
// more over the next Per make b+N-1 in one window. So the parameters are chosen to keep every
// window of length Per within N: for calls t_1 < ... < t_k admitted inside one window, each
// admission moves TAT on by T, so t_k >= t_1 + (k-b)*T; with T = Per/m, k calls fit in a window of
// length Per only if k-b < m, i.e. k <= b+m-1. Choosing m = N-b+1 makes that N. Any window, fixed
// or sliding, thus sees at most N calls, whatever the concurrency and however many replicas share
// the key. The price of a burst of b is a sustained rate of (N-b+1)/Per instead of N/Per: the
// default burst of half of N keeps both instant clicks and more than half of the sustained rate.
// A safety margin is added to Per (calls admitted Per apart may arrive closer together after
// network jitter), and T is rounded up.
//
// Background calls use a smaller tolerance, tauBg = tau - R*T with R = the reserved share of b
// (at least one call when a reserve is set and b > 1): they are refused while fewer than R+1 of the
// b burst places are free, so R places are always left for interactive calls, and when both wait,
// the interactive one is admitted R*T earlier.
type params struct {
	T     int64 // emission interval, µs
	tau   int64 // tolerance of interactive calls, µs
	tauBg int64 // tolerance of background calls, µs
	burst int
	spare int // burst places reserved for interactive calls
}

func (r Rate) params(burstFraction, reserve float64, margin time.Duration) params {
	b := r.Burst
	if b == 0 {
		b = int(math.Ceil(float64(r.N) * burstFraction))
	}
	b = min(max(b, 1), r.N)
	m := int64(r.N - b + 1)
	window := (r.Per + margin).Microseconds()
	T := (window + m - 1) / m
	if T < 1 {
		T = 1
	}
	spare := 0
	if b > 1 && reserve > 0 {
		spare = min(max(int(math.Round(float64(b)*reserve)), 1), b-1)
	}
	return params{T: T, tau: int64(b-1) * T, tauBg: int64(b-1-spare) * T, burst: b, spare: spare}
}
