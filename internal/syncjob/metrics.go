package syncjob

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics, recorded when a job ends (its progress then holds
// the counts of every replica that ran a part of it).
type metrics struct {
	jobs     *prometheus.CounterVec
	items    *prometheus.CounterVec
	pages    *prometheus.CounterVec
	duration prometheus.Histogram
}

// newMetrics registers the metrics on reg; nil reg means no metrics. A collector already
// registered (two engines on one registry) is reused.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_jobs_total", Help: "Sync jobs ended, by final state and trigger.",
		}, []string{"state", "trigger"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_items_total", Help: "Items of ended sync jobs, by resource and result (new, changed, unchanged, delivered, failed).",
		}, []string{"resource", "result"}),
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_pages_total", Help: "Upstream pages read by ended sync jobs, by resource.",
		}, []string{"resource"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sync_job_duration_seconds", Help: "Time from a sync job's creation to its end.",
			Buckets: prometheus.ExponentialBuckets(1, 3, 10),
		}),
	}
	m.jobs = register(reg, m.jobs, log)
	m.items = register(reg, m.items, log)
	m.pages = register(reg, m.pages, log)
	m.duration = register(reg, m.duration, log)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		log.Error("sync metrics not registered", "error", err)
	}
	return c
}

// jobEnded records an ended job.
func (m *metrics) jobEnded(state, trigger string, prog map[string]*Progress, took time.Duration) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(state, trigger).Inc()
	m.duration.Observe(took.Seconds())
	for res, p := range prog {
		if p == nil {
			continue
		}
		m.pages.WithLabelValues(res).Add(float64(p.Pages))
		for result, n := range map[string]int{"new": p.New, "changed": p.Changed, "unchanged": p.Unchanged,
			"delivered": p.Delivered, "failed": p.Failed} {
			m.items.WithLabelValues(res, result).Add(float64(n))
		}
	}
}
