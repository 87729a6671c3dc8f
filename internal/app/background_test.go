package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestCloseStopsTheBackgroundBeforeTheClosers runs components as New does and closes the App: every
// component has stopped (and given back what it held) before the first closer (the read cache,
// then the store) runs; the closers run newest first; a component that fails is logged by name and
// ends the others; a second Close does nothing.
func TestCloseStopsTheBackgroundBeforeTheClosers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	var logs bytes.Buffer
	a := &App{logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	a.closers = append(a.closers, func() { note("store closed") }, func() { note("read cache closed") })
	started := make(chan struct{}, 2)
	for _, name := range []string{"workers", "refresher"} {
		a.runInBackground(name, runFunc(func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			note(name + " stopped")
			return nil
		}))
	}
	a.runInBackground("sync", startStop{
		start: func() error { return nil },
		stop:  func() { note("sync stopped") },
	})
	a.running = runGroup(context.Background(), a.background)
	<-started
	<-started

	a.Close()
	a.Close()
	if len(order) != 5 {
		t.Fatalf("order %v, want 3 components stopped then 2 closers, once", order)
	}
	if got := order[3:]; !slices.Equal(got, []string{"read cache closed", "store closed"}) {
		t.Errorf("closers ran as %v, want newest first after the components", got)
	}
	if !slices.Contains(order[:3], "workers stopped") || !slices.Contains(order[:3], "refresher stopped") || !slices.Contains(order[:3], "sync stopped") {
		t.Errorf("components stopped as %v", order[:3])
	}
	if logs.Len() != 0 {
		t.Errorf("a normal stop logged: %s", logs.String())
	}
}

func TestFailingComponentEndsTheOthersAndIsLogged(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	a := &App{logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	stopped := make(chan struct{})
	a.runInBackground("prober", runFunc(func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}))
	a.runInBackground("webhook workers", startStop{
		start: func() error { return errors.New("already started") },
		stop:  func() {},
	})
	a.running = runGroup(context.Background(), a.background)
	<-stopped // ended by the other's failure, before Close
	a.Close()
	if !strings.Contains(logs.String(), `"component":"webhook workers"`) || !strings.Contains(logs.String(), "already started") {
		t.Errorf("the failure is not logged with its component: %s", logs.String())
	}
}
