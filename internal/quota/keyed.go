package quota

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultKeyedPrefix is the prefix of Keyed's Redis keys unless NewKeyed is given another.
const DefaultKeyedPrefix = "inboxhub-gateway:keyed:"

// Keyed is one Rate applied separately to every key a caller names (for example each client of
// the gateway), fleet-wide: it runs the same GCRA script as Limiter, so every replica over the same
// Redis shares each key's budget, on the Redis clock.
//
// Unlike Limiter, which must keep every window of the upstream's length within N, Keyed uses the
// classic GCRA parameters of a rate "N/Per (burst up to b)": T = Per/N and tau = (b-1)*T, with b
// the Rate's Burst or, when that is zero, N. A fresh key thus admits b requests at once and then N
// per Per sustained; a window of length Per holds at most N+b-1. That is what a limit on clients
// wants (no client gets more than its sustained rate over time, and a page load's burst passes),
// whereas the upstream's window-safe parameters would cut a full burst's sustained rate to 1/Per.
type Keyed struct {
	rdb    redis.UniversalClient
	script *redis.Script
	peek   *redis.Script
	prefix string
	rate   Rate
	keyedParams
}

// keyedParams are a per-key rate's GCRA parameters, shared by Keyed and LocalKeyed.
type keyedParams struct {
	burst  int
	T, tau int64 // µs
}

// keyedParamsOf computes the parameters of a valid, limited rate: T = Per/N, tau = (b-1)*T.
func keyedParamsOf(r Rate) keyedParams {
	p := keyedParams{burst: r.Burst}
	if p.burst == 0 {
		p.burst = r.N
	}
	per := r.Per.Microseconds()
	p.T = max((per+int64(r.N)-1)/int64(r.N), 1)
	p.tau = int64(p.burst-1) * p.T
	return p
}

// KeyedDecision is the answer to one request of a key, with what rate-limit headers report.
type KeyedDecision struct {
	// Allowed says the request may proceed; it has then been counted.
	Allowed bool
	// RetryAfter is how long until a refused request would be admitted.
	RetryAfter time.Duration
	// Limit is the burst, the most requests a key may make at once.
	Limit int
	// Remaining is how many more requests the key may make right now.
	Remaining int
	// Reset is how long until the key's full burst is available again.
	Reset time.Duration
}

// NewKeyed returns a per-key limiter of rate r over rdb, its keys being prefix+key (prefix ""
// means DefaultKeyedPrefix). An unlimited rate (N == 0) admits everything without asking Redis;
// an invalid one is an error.
func NewKeyed(rdb redis.UniversalClient, r Rate, prefix string) (*Keyed, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = DefaultKeyedPrefix
	}
	k := &Keyed{rdb: rdb, script: redis.NewScript(gcraSource), peek: redis.NewScript(gcraPeekSource), prefix: prefix, rate: r}
	if r.Unlimited() {
		return k, nil
	}
	k.keyedParams = keyedParamsOf(r)
	return k, nil
}

// Rate returns the limiter's rate.
func (k *Keyed) Rate() Rate { return k.rate }

// Allow asks once whether key may make a request now, and if so counts it. A Redis failure is an
// error wrapping the Redis error ("quota: redis: ..."); whether to fail open is the caller's choice.
func (k *Keyed) Allow(ctx context.Context, key string) (KeyedDecision, error) {
	return k.AllowN(ctx, key, 1)
}

// AllowN takes n requests' places of key at once, or none: a replica that leases n places spends
// them locally and asks Redis again only when they are used up, so the fleet-wide limit costs one
// round trip per n requests. n larger than the burst is never admitted.
func (k *Keyed) AllowN(ctx context.Context, key string, n int) (KeyedDecision, error) {
	if k.rate.Unlimited() {
		return KeyedDecision{Allowed: true}, nil
	}
	n = max(n, 1)
	if n > k.burst {
		return KeyedDecision{Limit: k.burst, RetryAfter: time.Duration(k.T) * time.Microsecond}, nil
	}
	// n places at once: the TAT moves on by n*T, and the call is admitted when the last of the n
	// would be, that is with a tolerance of tau-(n-1)*T.
	T, tau := int64(n)*k.T, k.tau-int64(n-1)*k.T
	res, err := k.script.Run(ctx, k.rdb, []string{k.prefix + key}, T, tau).Int64Slice()
	if err == nil && len(res) != 4 {
		err = errors.New("unexpected script answer")
	}
	if err != nil {
		if ctx.Err() != nil {
			return KeyedDecision{}, fmt.Errorf("quota: %w", ctx.Err())
		}
		return KeyedDecision{}, fmt.Errorf("quota: redis: %w", err)
	}
	now, tat := res[2], res[3]
	d := KeyedDecision{Allowed: res[0] == 1, Limit: k.burst, Reset: time.Duration(max(tat-now, 0)) * time.Microsecond}
	if !d.Allowed {
		d.RetryAfter = time.Duration(res[1]) * time.Microsecond
		return d, nil
	}
	// The next request is admitted at tat-tau, each later one T after it.
	if slack := now + k.tau - tat; slack >= 0 {
		d.Remaining = min(int(slack/k.T)+1, k.burst)
	}
	return d, nil
}

//go:embed gcra_peek.lua
var gcraPeekSource string

// Wait says how long until key would be admitted one request, without counting one: zero when it
// would be admitted now. A Redis failure is an error, as for AllowN.
func (k *Keyed) Wait(ctx context.Context, key string) (time.Duration, error) {
	if k.rate.Unlimited() {
		return 0, nil
	}
	wait, err := k.peek.Run(ctx, k.rdb, []string{k.prefix + key}, k.tau).Int64()
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("quota: %w", ctx.Err())
		}
		return 0, fmt.Errorf("quota: redis: %w", err)
	}
	return time.Duration(max(wait, 0)) * time.Microsecond, nil
}
