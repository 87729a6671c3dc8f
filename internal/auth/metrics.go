package auth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers c, or returns the collector already registered under the same description,
// so that two instances (tests, or a router rebuilt) share one metric.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
