package syncjob

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/promreg"
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
	const failed = "sync metrics not registered"
	m.jobs = promreg.RegisterOrLog(reg, m.jobs, log, failed)
	m.items = promreg.RegisterOrLog(reg, m.items, log, failed)
	m.pages = promreg.RegisterOrLog(reg, m.pages, log, failed)
	m.duration = promreg.RegisterOrLog(reg, m.duration, log, failed)
	return m
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
