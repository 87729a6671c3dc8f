package quota

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultLocalKeys is how many keys a LocalKeyed remembers unless told otherwise.
const DefaultLocalKeys = 10_000

// LocalKeyed is Keyed decided in this process alone, for when Redis does not answer: the same
// GCRA with the same parameters, over TATs kept in memory. Its decisions are this replica's only
// (each replica admits a key's whole rate: a fleet of R replicas admits up to R times the rate
// while Redis is down).
//
// It remembers at most maxKeys keys, the least recently used being forgotten first, so that a
// stream of new keys (callers, client addresses) cannot grow it without bound. A forgotten key
// starts again with a full burst; a key whose TAT has passed is a full bucket anyway, so only
// keys still inside their window lose anything.
type LocalKeyed struct {
	rate Rate
	keyedParams
	mu   sync.Mutex
	tats *simplelru.LRU[string, int64] // µs since the Unix epoch
}

// NewLocalKeyed returns an in-process per-key limiter of rate r remembering at most maxKeys keys
// (maxKeys <= 0 means DefaultLocalKeys). An invalid rate is an error; an unlimited one admits all.
func NewLocalKeyed(r Rate, maxKeys int) (*LocalKeyed, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if maxKeys <= 0 {
		maxKeys = DefaultLocalKeys
	}
	tats, err := simplelru.NewLRU[string, int64](maxKeys, nil)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	l := &LocalKeyed{rate: r, tats: tats}
	if !r.Unlimited() {
		l.keyedParams = keyedParamsOf(r)
	}
	return l, nil
}

// AllowN takes n places of key at now, or none, as Keyed.AllowN does.
func (l *LocalKeyed) AllowN(key string, n int, now time.Time) KeyedDecision {
	if l.rate.Unlimited() {
		return KeyedDecision{Allowed: true}
	}
	n = max(n, 1)
	if n > l.burst {
		return KeyedDecision{Limit: l.burst, RetryAfter: time.Duration(l.T) * time.Microsecond}
	}
	t := now.UnixMicro()
	T, tau := int64(n)*l.T, l.tau-int64(n-1)*l.T
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, _ := l.tats.Get(key)
	tat = max(tat, t)
	if wait := tat - tau - t; wait > 0 {
		return KeyedDecision{Limit: l.burst, RetryAfter: time.Duration(wait) * time.Microsecond,
			Reset: time.Duration(tat-t) * time.Microsecond}
	}
	tat += T
	l.tats.Add(key, tat)
	d := KeyedDecision{Allowed: true, Limit: l.burst, Reset: time.Duration(tat-t) * time.Microsecond}
	if slack := t + l.tau - tat; slack >= 0 {
		d.Remaining = min(int(slack/l.T)+1, l.burst)
	}
	return d
}

// Wait says how long until key would be admitted one request at now, without counting one.
func (l *LocalKeyed) Wait(key string, now time.Time) time.Duration {
	if l.rate.Unlimited() {
		return 0
	}
	l.mu.Lock()
	tat, ok := l.tats.Peek(key)
	l.mu.Unlock()
	if !ok {
		return 0
	}
	return time.Duration(max(tat-l.tau-now.UnixMicro(), 0)) * time.Microsecond
}

// Len is how many keys the limiter remembers now.
func (l *LocalKeyed) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tats.Len()
}
