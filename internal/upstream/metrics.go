package upstream

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/inboxhub-gateway/gateway/internal/promreg"
)

// metrics are the client's Prometheus metrics; a nil *metrics records nothing. Labels carry the
// route pattern (bounded, no session ids or phone numbers), never the real path.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	breaker  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	var m metrics
	var err error
	if m.requests, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "upstream_requests_total",
		Help: "Attempts sent to the Inbox Hub API, by route pattern, method and status (or error, timeout, canceled, too_large, breaker_open).",
	}, []string{"route", "method", "status"})); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upstream_request_duration_seconds",
		Help:    "Duration of attempts sent to the Inbox Hub API, by route pattern.",
		Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})); err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "upstream_retries_total",
		Help: "Attempts to the Inbox Hub API repeated after a retryable failure, by route pattern.",
	}, []string{"route"})); err != nil {
		return nil, err
	}
	if m.breaker, err = promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "upstream_breaker_state",
		Help: "State of the upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *metrics) attempt(route, method, status string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, method, status).Inc()
	if d > 0 {
		m.duration.WithLabelValues(route).Observe(d.Seconds())
	}
}

func (m *metrics) retry(route string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(route).Inc()
}

func (m *metrics) breakerState(s gobreaker.State) {
	if m == nil {
		return
	}
	switch s {
	case gobreaker.StateClosed:
		m.breaker.Set(0)
	case gobreaker.StateHalfOpen:
		m.breaker.Set(1)
	case gobreaker.StateOpen:
		m.breaker.Set(2)
	}
}

// statusLabel is the status label of an attempt's outcome.
func statusLabel(ans *answer, err error) string {
	if ans != nil {
		return strconv.Itoa(ans.status)
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.kind {
		case kindTimeout:
			return "timeout"
		case kindCanceled:
			return "canceled"
		case kindBadResponse:
			return "too_large"
		case kindBreakerOpen:
			return "breaker_open"
		}
	}
	return "error"
}
