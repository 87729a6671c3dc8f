package quota

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/promreg"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// metrics are the limiter's Prometheus metrics; a nil *metrics records nothing.
type metrics struct {
	waits       *prometheus.CounterVec
	waitSeconds *prometheus.HistogramVec
	rejections  *prometheus.CounterVec
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	var m metrics
	var err error
	if m.waits, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quota_waits_total",
		Help: "Calls that had to wait for upstream quota, by category and priority.",
	}, []string{"category", "priority"})); err != nil {
		return nil, err
	}
	if m.waitSeconds, err = promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "quota_wait_seconds",
		Help:    "Time calls spent waiting for upstream quota (0 when admitted at once), by category and priority.",
		Buckets: []float64{0, .01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60},
	}, []string{"category", "priority"})); err != nil {
		return nil, err
	}
	if m.rejections, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quota_rejections_total",
		Help: "Calls refused by the upstream quota (no quota within the maximum wait), by category and priority.",
	}, []string{"category", "priority"})); err != nil {
		return nil, err
	}
	if m.errors, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quota_redis_errors_total",
		Help: "Quota decisions that failed because Redis did not answer, by category.",
	}, []string{"category"})); err != nil {
		return nil, err
	}
	// Every category and priority is exported from the start, at 0, so that the rates of waits
	// and refusals an alert or a dashboard watches exist before the first one.
	for _, c := range []upstream.Category{upstream.CategoryAuth, upstream.CategoryRead, upstream.CategorySend} {
		for _, p := range []string{priorityInteractive, priorityBackground} {
			m.rejections.WithLabelValues(string(c), p)
			m.waits.WithLabelValues(string(c), p)
		}
	}
	return &m, nil
}

func (m *metrics) waiting(c upstream.Category, prio string) {
	if m != nil {
		m.waits.WithLabelValues(string(c), prio).Inc()
	}
}

func (m *metrics) waited(c upstream.Category, prio string, d time.Duration) {
	if m != nil {
		m.waitSeconds.WithLabelValues(string(c), prio).Observe(d.Seconds())
	}
}

func (m *metrics) rejected(c upstream.Category, prio string, d time.Duration) {
	if m != nil {
		m.rejections.WithLabelValues(string(c), prio).Inc()
		m.waitSeconds.WithLabelValues(string(c), prio).Observe(d.Seconds())
	}
}

func (m *metrics) redisError(c upstream.Category) {
	if m != nil {
		m.errors.WithLabelValues(string(c)).Inc()
	}
}
