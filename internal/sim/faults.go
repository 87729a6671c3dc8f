package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"
)

// Faults are failures injected into /api answers. SetFaults replaces them all at once; the
// zero Faults injects nothing. In JSON, Latency is a duration string such as "200ms".
type Faults struct {
	// Latency is added to every /api request.
	Latency time.Duration
	// RouteStatus forces a status on one route, keyed like Counters.Requests
	// ("GET /api/messages/{sessionId}/chats": 500). It wins over AllStatus.
	RouteStatus map[string]int
	// AllStatus, if non-zero, is answered by every /api route.
	AllStatus int
	// Force429 makes the next N /api requests answer 429 with rate limit headers.
	Force429 int
	// DropConnections makes the next N /api requests close the connection without an answer.
	DropConnections int
	// UseMessageField puts error texts in "message" instead of "error".
	UseMessageField bool
}

// faultsJSON is the wire form of Faults.
type faultsJSON struct {
	Latency         string         `json:"latency,omitempty"`
	RouteStatus     map[string]int `json:"routeStatus,omitempty"`
	AllStatus       int            `json:"allStatus,omitempty"`
	Force429        int            `json:"force429,omitempty"`
	DropConnections int            `json:"dropConnections,omitempty"`
	UseMessageField bool           `json:"useMessageField,omitempty"`
}

// MarshalJSON writes Faults with Latency as a duration string.
func (f Faults) MarshalJSON() ([]byte, error) {
	w := faultsJSON{RouteStatus: f.RouteStatus, AllStatus: f.AllStatus, Force429: f.Force429,
		DropConnections: f.DropConnections, UseMessageField: f.UseMessageField}
	if f.Latency != 0 {
		w.Latency = f.Latency.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Faults with Latency as a duration string and checks every value.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w faultsJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	out := Faults{RouteStatus: w.RouteStatus, AllStatus: w.AllStatus, Force429: w.Force429,
		DropConnections: w.DropConnections, UseMessageField: w.UseMessageField}
	if w.Latency != "" {
		d, err := time.ParseDuration(w.Latency)
		if err != nil || d < 0 {
			return fmt.Errorf("latency %q: want a duration such as 200ms", w.Latency)
		}
		out.Latency = d
	}
	if err := out.validate(); err != nil {
		return err
	}
	*f = out
	return nil
}

// validate rejects statuses that are not errors and negative counts.
func (f Faults) validate() error {
	bad := func(code int) bool { return code != 0 && (code < 400 || code > 599) }
	if bad(f.AllStatus) {
		return fmt.Errorf("allStatus %d: want 400..599", f.AllStatus)
	}
	for k, code := range f.RouteStatus {
		if bad(code) || code == 0 {
			return fmt.Errorf("routeStatus[%q] = %d: want 400..599", k, code)
		}
	}
	if f.Force429 < 0 || f.DropConnections < 0 {
		return fmt.Errorf("force429 and dropConnections must not be negative")
	}
	return nil
}

// faultState holds the current faults; the one-shot counts are consumed by requests.
type faultState struct {
	mu sync.Mutex
	f  Faults
}

func (fs *faultState) set(f Faults) {
	f.RouteStatus = maps.Clone(f.RouteStatus)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.f = f
}

func (fs *faultState) get() Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.f
	f.RouteStatus = maps.Clone(fs.f.RouteStatus)
	return f
}

// take consumes one unit of the count that pick selects, reporting whether there was one.
func (fs *faultState) take(pick func(f *Faults) *int) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := pick(&fs.f)
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

func (fs *faultState) takeDrop() bool {
	return fs.take(func(f *Faults) *int { return &f.DropConnections })
}

func (fs *faultState) take429() bool {
	return fs.take(func(f *Faults) *int { return &f.Force429 })
}

// forcedStatus is the status forced on the route key, or 0.
func (fs *faultState) forcedStatus(key string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	errorStatus := func(code int) bool { return code >= 400 && code <= 599 }
	if code := fs.f.RouteStatus[key]; errorStatus(code) {
		return code
	}
	if errorStatus(fs.f.AllStatus) {
		return fs.f.AllStatus
	}
	return 0
}

// outageStatus is AllStatus when it says the whole upstream is down (502, 503, 504), else 0.
func (fs *faultState) outageStatus() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	switch fs.f.AllStatus {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fs.f.AllStatus
	}
	return 0
}

func (fs *faultState) latency() time.Duration {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.f.Latency
}

func (fs *faultState) useMessageField() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.f.UseMessageField
}
