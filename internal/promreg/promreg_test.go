package promreg_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxhub-gateway/gateway/internal/promreg"
)

func counter(help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promreg_test_total", Help: help}, []string{"kind"})
}

// TestRegisterReusesTheRegisteredCollector: a second registration of the same description gets
// the first collector, so both instances count into one series.
func TestRegisterReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := promreg.Register(reg, counter("test counter"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := promreg.Register(reg, counter("test counter"))
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	if second != first {
		t.Fatal("the second registration got a collector of its own, not the registered one")
	}
	second.WithLabelValues("a").Inc()
	first.WithLabelValues("a").Inc()
	var m dto.Metric
	if err := first.WithLabelValues("a").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Errorf("counter = %v, want 2", got)
	}
}

// TestRegisterRefusesAConflict: the same name with another help text is an error, not a reuse.
func TestRegisterRefusesAConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := promreg.Register(reg, counter("one help")); err != nil {
		t.Fatal(err)
	}
	if _, err := promreg.Register(reg, counter("another help")); err == nil {
		t.Fatal("a conflicting registration was accepted")
	}
}

// TestRegisterRefusesAnotherType: a collector of another Go type registered under the same
// description is not handed out in place of the one asked for.
func TestRegisterRefusesAnotherType(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := promreg.Register(reg, counter("same")); err != nil {
		t.Fatal(err)
	}
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promreg_test_total", Help: "same"}, []string{"kind"})
	if got, err := promreg.Register(reg, gauge); err == nil || got != gauge {
		t.Fatalf("Register = %v, %v; want the gauge back with an error", got, err)
	}
}

// TestRegisterOrLogKeepsTheCollector: a conflict is logged and the caller gets its own collector
// back, usable but not exported.
func TestRegisterOrLogKeepsTheCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := promreg.Register(reg, counter("one help")); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	own := counter("another help")
	if got := promreg.RegisterOrLog(reg, own, log, "test metrics not registered"); got != own {
		t.Fatal("RegisterOrLog did not return the caller's collector after a conflict")
	}
	own.WithLabelValues("a").Inc() // must not panic
	if !strings.Contains(logged.String(), "test metrics not registered") {
		t.Errorf("the conflict was not logged: %q", logged.String())
	}
}

// TestChildrenResolvesOnceWithinTheBound: each key is resolved once while fewer than Max are
// kept; past Max, a new key is resolved on every Get, and the kept ones still are not.
func TestChildrenResolvesOnceWithinTheBound(t *testing.T) {
	var c promreg.Children[string, int]
	c.Max = 2
	resolved := map[string]int{}
	resolve := func(k string) int { resolved[k]++; return len(k) }
	for range 3 {
		for _, k := range []string{"a", "bb", "ccc"} {
			if got := c.Get(k, resolve); got != len(k) {
				t.Fatalf("Get(%q) = %d", k, got)
			}
		}
	}
	if resolved["a"] != 1 || resolved["bb"] != 1 || resolved["ccc"] != 3 {
		t.Errorf("resolutions = %v; want a and bb once (kept), ccc on each Get (past the bound)", resolved)
	}
}
