package app

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"
)

// component is a part of a replica that works in the background until its context ends: Run
// returns once the part has stopped and given back what it held (jobs, tasks, leases), with nil
// after a normal stop.
type component interface {
	Run(ctx context.Context) error
}

type namedComponent struct {
	name string
	component
}

// runInBackground adds c to the components New runs once every part is built.
func (a *App) runInBackground(name string, c component) {
	a.background = append(a.background, namedComponent{name, c})
}

// runFunc is a component written as a function.
type runFunc func(ctx context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }

// startStop runs a part that has Start and Shutdown methods as a component: Start as the
// component starts, Shutdown (which returns once the part has stopped) when its context ends, or
// at once when Start fails.
type startStop struct {
	start func() error
	stop  func()
}

func (s startStop) Run(ctx context.Context) error {
	err := s.start()
	if err == nil {
		<-ctx.Done()
	}
	s.stop()
	return err
}

// group runs a replica's background components under one errgroup.
type group struct {
	cancel context.CancelFunc
	g      *errgroup.Group
	errs   chan componentError
}

type componentError struct {
	name string
	err  error
}

// runGroup runs every component until ctx ends or stop is called. A component that fails ends
// the others' context too (errgroup), so that the replica does not run half of its background work.
func runGroup(ctx context.Context, cs []namedComponent) *group {
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	r := &group{cancel: cancel, g: g, errs: make(chan componentError, len(cs))}
	for _, c := range cs {
		g.Go(func() error {
			err := c.Run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				r.errs <- componentError{c.name, err}
			}
			return err
		})
	}
	return r
}

// stop ends the components' context, waits for every one of them, and returns their failures.
func (r *group) stop() []componentError {
	r.cancel()
	_ = r.g.Wait()
	close(r.errs)
	var out []componentError
	for e := range r.errs {
		out = append(out, e)
	}
	return out
}
