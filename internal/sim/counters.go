package sim

import (
	"maps"
	"sync"
)

// Counters is a snapshot of what the simulator has seen since start or the last reset.
// Requests is keyed by route pattern, "METHOD /api/path/{param}" exactly as registered
// (for example "GET /api/contacts/{sessionId}"); requests to no known route count under "/api/".
type Counters struct {
	// Logins and LoginFailures count answers of POST /api/auth/login that reached the handler.
	Logins        int64 `json:"logins"`
	LoginFailures int64 `json:"loginFailures"`
	// Refreshes and RefreshFailures count answers of POST /api/auth/refresh-token.
	Refreshes       int64 `json:"refreshes"`
	RefreshFailures int64 `json:"refreshFailures"`
	// Requests counts every /api request by route pattern, including faulted and limited ones.
	Requests map[string]int64 `json:"requests"`
	// RateLimited counts 429 answers, from the limiters and from Faults.Force429.
	RateLimited int64 `json:"rateLimited"`
	// Status counts /api answers by HTTP status (dropped connections have none).
	Status map[int]int64 `json:"status"`
	// WebhooksSent, WebhookFailures and WebhooksDropped count webhook deliveries that got a 2xx,
	// that failed, and that were dropped because the queue was full or the server closed.
	WebhooksSent    int64 `json:"webhooksSent"`
	WebhookFailures int64 `json:"webhookFailures"`
	WebhooksDropped int64 `json:"webhooksDropped"`
	// HealthChecks counts GET /health requests (they are not in Requests).
	HealthChecks int64 `json:"healthChecks"`
}

// counterSet is the live, lock-protected form of Counters.
type counterSet struct {
	mu sync.Mutex
	c  Counters
}

func newCounterSet() *counterSet {
	cs := &counterSet{}
	cs.reset()
	return cs
}

func (cs *counterSet) reset() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.c = Counters{Requests: map[string]int64{}, Status: map[int]int64{}}
}

func (cs *counterSet) snapshot() Counters {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.c
	c.Requests = maps.Clone(cs.c.Requests)
	c.Status = maps.Clone(cs.c.Status)
	return c
}

// add applies f to the counters under the lock.
func (cs *counterSet) add(f func(c *Counters)) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	f(&cs.c)
}

func (cs *counterSet) request(key string) { cs.add(func(c *Counters) { c.Requests[key]++ }) }
func (cs *counterSet) status(code int)    { cs.add(func(c *Counters) { c.Status[code]++ }) }
