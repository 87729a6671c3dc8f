package auth

import (
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// fallback reports a Redis-backed limit's switches to its local stand-in and back: the first Redis
// failure after a success is logged at warning level and the first success after failures at info
// level (an outage does not flood the log), and every failure is counted.
type fallback struct {
	what     string // names the limit in log lines
	log      *slog.Logger
	errors   prometheus.Counter // nil: not counted
	degraded atomic.Bool
}

// failed records a Redis failure; the decision is then taken on this replica alone.
func (f *fallback) failed(requestID string, err error) {
	if f.errors != nil {
		f.errors.Inc()
	}
	if f.degraded.CompareAndSwap(false, true) {
		f.log.Warn(f.what+": Redis failed; deciding on this replica alone until it is back",
			"requestId", requestID, "error", err)
	}
}

// ok records a decision Redis took.
func (f *fallback) ok() {
	if f.degraded.CompareAndSwap(true, false) {
		f.log.Info(f.what + ": Redis is back; deciding fleet-wide again")
	}
}
