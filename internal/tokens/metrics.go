package tokens

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a login or refresh, the values of the result label.
const (
	resultOK       = "ok"
	resultRejected = "rejected"
	resultError    = "error"
)

// metrics are the Source's Prometheus collectors. They exist even when nothing registers them,
// so the code that counts never checks.
type metrics struct {
	logins          *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	lockWaits       prometheus.Counter
	lockWaitSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Source) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "token_logins_total",
			Help: "Upstream logins by result: ok, rejected (credentials refused), error (transient).",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "token_refreshes_total",
			Help: "Upstream token refreshes by result: ok, rejected (refresh token refused), error (transient).",
		}, []string{"result"}),
		lockWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "token_lock_waits_total",
			Help: "Times this process waited for another holder of the fleet-wide renewal lock.",
		}),
		lockWaitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "token_lock_wait_seconds",
			Help:    "How long this process waited for another holder of the renewal lock.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, r := range []string{resultOK, resultRejected, resultError} {
		m.logins.WithLabelValues(r)
		m.refreshes.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	secondsLeft := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "token_remaining_seconds",
		Help: "Seconds until the upstream token held in memory expires; 0 when there is none.",
	}, func() float64 { return s.Status().TimeLeft.Seconds() })
	authFailed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "token_auth_failed",
		Help: "1 while logins are held back because the upstream rejected the gateway credentials.",
	}, func() float64 {
		if s.Status().NextLoginAllowedAt.IsZero() {
			return 0
		}
		return 1
	})
	for _, c := range []prometheus.Collector{m.logins, m.refreshes, m.lockWaits, m.lockWaitSeconds, secondsLeft, authFailed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tokens: registering metrics: %w", err)
		}
	}
	return m, nil
}
