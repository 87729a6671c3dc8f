// Package promreg owns the registration of a Prometheus collector that two instances of one
// component may both register (two clients, limiters or engines on one registry, in a test fleet
// or a router rebuilt): the second gets the collector of the first, so that both count into one
// metric instead of failing; and the label children that a hot path keeps resolved (Children).
package promreg

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it, or, when a collector of the same type is already
// registered under the same description, returns that one. Any other failure (a name registered
// with other labels or help, or as another type) returns c and the error.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

// RegisterOrLog is Register for the metrics of a component that must run without them: a failure
// is logged as msg, with the error, and c is returned unregistered, so that recording into it
// stays safe and is simply not exported.
func RegisterOrLog[T prometheus.Collector](reg prometheus.Registerer, c T, log *slog.Logger, msg string) T {
	c, err := Register(reg, c)
	if err != nil {
		log.Error(msg, "error", err)
	}
	return c
}
