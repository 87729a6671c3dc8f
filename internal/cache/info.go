package cache

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Status says where a read's value came from.
type Status string

// The statuses a cached read reports to the API's callers (meta.cache.status).
const (
	// StatusHit is a fresh value from the cache, without an upstream call.
	StatusHit Status = "hit"
	// StatusMiss is a value the upstream was asked for (by this request, or by another one that
	// this request waited for).
	StatusMiss Status = "miss"
	// StatusStale is a value past its freshness, served because the upstream is failing or while
	// one background refresh runs.
	StatusStale Status = "stale"
)

// rank orders statuses so that a request made of several reads reports its worst one.
func (s Status) rank() int {
	switch s {
	case StatusHit:
		return 1
	case StatusMiss:
		return 2
	case StatusStale:
		return 3
	}
	return 0
}

// Info is what a cached read tells the handler: where the value came from and how old it is.
type Info struct {
	Status Status
	// Age is the time since the value was read from the upstream (0 for a miss).
	Age time.Duration
	// Stored is when the value answered was read from the upstream, for a value that came from
	// the cache: with the read's key it names that version of the value, so a handler may reuse
	// what it rendered from it. Zero for a miss, and when a request made several reads.
	Stored time.Time
	// Version names the value answered (a hash of its encoded bytes, computed once when it was
	// stored), for a value the cache keeps: what a handler derives an ETag from. Empty when the
	// value was not kept (not cacheable, too large, Redis failing) and when a request made
	// several reads.
	Version string
	// FreshUntil is when the value answered stops being fresh (in the past for a stale one);
	// zero when Version is empty.
	FreshUntil time.Time
}

// MarshalJSON writes Info as meta.cache: {"status": "hit", "ageSeconds": 3}.
func (i Info) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Status     Status `json:"status"`
		AgeSeconds int64  `json:"ageSeconds"`
	}{i.Status, int64(i.Age / time.Second)})
}

// Recorder collects the cache facts of one request. The cached reads write into the recorder
// that Track put in their context, so that cache facts reach the handler without changing any
// method's signature. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	info Info
	set  bool
}

type recorderKey struct{}

// Track returns a context that records the cache facts of the reads made with it, and the
// recorder to read them from once the reads are done:
//
//	ctx, rec := cache.Track(middleware.Context(c))
//	st, err := src.SessionStatus(ctx, id)
//	info, ok := rec.Info() // ok is false when no cached read ran (an uncached source)
func Track(ctx context.Context) (context.Context, *Recorder) {
	t := &trackedContext{Context: ctx}
	return t, &t.rec
}

// trackedContext is a context carrying a Recorder, both in one allocation (context.WithValue and
// a separate Recorder would take two); everything else comes from its parent.
type trackedContext struct {
	context.Context
	rec Recorder
}

// Value answers recorderKey with the recorder, anything else from the parent.
func (t *trackedContext) Value(key any) any {
	if _, ok := key.(recorderKey); ok {
		return &t.rec
	}
	return t.Context.Value(key)
}

// Info returns the facts recorded so far; ok is false when no cached read recorded any. A
// request made of several reads reports the worst status (stale over miss over hit) and the
// oldest age.
func (r *Recorder) Info() (info Info, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info, r.set
}

func (r *Recorder) record(i Info) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set || i.Status.rank() > r.info.Status.rank() {
		r.info.Status = i.Status
	}
	r.info.Age = max(r.info.Age, i.Age)
	if r.set { // several reads: no single version
		r.info.Stored, r.info.Version, r.info.FreshUntil = time.Time{}, "", time.Time{}
	} else {
		r.info.Stored, r.info.Version, r.info.FreshUntil = i.Stored, i.Version, i.FreshUntil
	}
	r.set = true
}

// InfoFrom returns the facts recorded in the recorder that Track put in ctx; ok is false when
// ctx carries none or no cached read ran.
func InfoFrom(ctx context.Context) (Info, bool) {
	r, _ := ctx.Value(recorderKey{}).(*Recorder)
	if r == nil {
		return Info{}, false
	}
	return r.Info()
}

// record writes i into ctx's recorder, if any.
func record(ctx context.Context, i Info) {
	if r, _ := ctx.Value(recorderKey{}).(*Recorder); r != nil {
		r.record(i)
	}
}
