package cache

import (
	"container/list"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// local is the in-process layer in front of Redis: a small LRU of the hottest fresh values, each
// kept for at most maxAge (and never past its freshness), so that a cached read does not always pay
// a Redis round trip. Other replicas' writes and invalidations reach it through Redis pub/sub
// (ReadThrough.listen); while that subscription is down the layer is not used at all, since it
// could miss an invalidation.
//
// Generations count the changes that may make a value read from Redis outdated: a value read from
// Redis is put here only if its generation did not move while it was being read, so that an
// invalidation that overtakes a read cannot be undone by it. A lost subscription moves gen, for
// every key; another replica's write moves the stripe of its key, and an invalidation the stripe of
// its scope. A key's generation is the sum of the three counters that concern it. Were there only
// one counter, every write anywhere in the fleet would turn away the puts of unrelated reads under
// way on this replica; with stripes, only one in genStripes does.
type local struct {
	max    int
	maxAge time.Duration
	budget int // bytes of values kept at most

	bytes int

	mu      sync.Mutex
	ll      *list.List // front: most recently used
	items   map[string]*list.Element
	gen     uint64
	stripes [genStripes]uint64
	seed    maphash.Seed
}

// genStripes is the number of generation counters shared by keys and scopes.
const genStripes = 256

// localEntry is one value of the in-process layer.
type localEntry struct {
	key     string // the Redis key
	scope   string
	value   []byte
	stored  time.Time // when the upstream answered
	fresh   time.Time // until when it is fresh
	version string    // the entry's version (entry.Version)
	expires time.Time // min(put + maxAge, fresh until)
	// decoded memoises the value decoded by Read (always of the one type that key's kind reads
	// into), so that a hit of this layer costs no JSON decoding; readers share it and must not
	// modify it.
	decoded atomic.Value
}

// Bounds of the layer's memory: a value larger than maxLocalValue is left to Redis, and the
// values kept never add up to more than localBudget bytes.
const (
	maxLocalValue = 256 << 10
	localBudget   = 32 << 20
)

func newLocal(size int, maxAge time.Duration) *local {
	return &local{max: size, maxAge: maxAge, budget: localBudget, ll: list.New(), items: map[string]*list.Element{},
		seed: maphash.MakeSeed()}
}

func (l *local) enabled() bool { return l.max > 0 && l.maxAge > 0 }

// get returns the entry for key when it has not expired at now. The key is bytes so that a
// lookup allocates no string.
func (l *local) get(key []byte, now time.Time) (*localEntry, bool) {
	if !l.enabled() {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[string(key)]
	if !ok {
		return nil, false
	}
	e := el.Value.(*localEntry)
	if !now.Before(e.expires) {
		l.remove(el)
		return nil, false
	}
	l.ll.MoveToFront(el)
	return e, true
}

// generation is the generation of key (of scope) to pass to put.
func (l *local) generation(key, scope string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.generationLocked(key, scope)
}

// generationLocked is generation, with l.mu held. The counters only grow, so the sum moves
// whenever one of them does.
func (l *local) generationLocked(key, scope string) uint64 {
	return l.gen + *l.stripe(key) + *l.stripe(scope)
}

// stripe is the counter that s (a key or a scope) shares with about 1/genStripes of the others.
func (l *local) stripe(s string) *uint64 {
	return &l.stripes[maphash.String(l.seed, s)%genStripes]
}

// put keeps a value fresh until freshUntil, unless key or its scope was invalidated since gen was
// read.
func (l *local) put(gen uint64, key, scope string, value []byte, stored, freshUntil, now time.Time, version string) {
	if !l.enabled() || len(value) > maxLocalValue {
		return
	}
	expires := now.Add(l.maxAge)
	if freshUntil.Before(expires) {
		expires = freshUntil
	}
	if !now.Before(expires) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.generationLocked(key, scope) {
		return
	}
	e := &localEntry{key: key, scope: scope, value: value, stored: stored, fresh: freshUntil, version: version, expires: expires}
	if el, ok := l.items[key]; ok {
		l.remove(el)
	}
	l.items[key] = l.ll.PushFront(e)
	l.bytes += len(value)
	for l.ll.Len() > l.max || l.bytes > l.budget {
		l.remove(l.ll.Back())
	}
}

// drop forgets one key.
func (l *local) drop(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.stripe(key)++
	if el, ok := l.items[key]; ok {
		l.remove(el)
	}
}

// dropScope forgets every key of a scope (a few hundred entries at most: a scan is fine).
func (l *local) dropScope(scope string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.stripe(scope)++
	for el := l.ll.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*localEntry).scope == scope {
			l.remove(el)
		}
		el = next
	}
}

// reset forgets everything.
func (l *local) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.ll.Init()
	clear(l.items)
	l.bytes = 0
}

func (l *local) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}

func (l *local) remove(el *list.Element) {
	e := el.Value.(*localEntry)
	delete(l.items, e.key)
	l.bytes -= len(e.value)
	l.ll.Remove(el)
}
