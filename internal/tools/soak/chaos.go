package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Window kinds: the time around a replica kill, and around a Redis failover.
const (
	windowKill     = "kill"
	windowFailover = "failover"
)

// windowTail is how long after the killed replica is ready again, or after the new Redis master is
// named, requests still count as "around" the event: a send's repeat waits up to 20 s for a use
// cut by the kill, and the fleet's clients find the new master within seconds.
const windowTail = 20 * time.Second

// window is the time around one chaos event.
type window struct {
	kind    string
	replica int // the killed replica (kind kill)
	start   time.Time
	end     time.Time
	detail  string
}

// chaos kills replicas and Redis masters on a schedule.
type chaos struct {
	f    *fleet
	logf func(string, ...any)
	mu   sync.Mutex
	ws   []window
}

// action is one scheduled chaos event.
type action struct {
	at       time.Duration // since the start
	failover bool
}

// schedule lists the chaos events of a run of length d: a replica kill every killEvery, a
// failover every failoverEvery from failoverFirst, none in the last 15 s (their effects must fall
// within the run).
func schedule(d, killEvery, failoverFirst, failoverEvery time.Duration) []action {
	var out []action
	last := d - 15*time.Second
	if killEvery > 0 {
		for t := killEvery; t <= last; t += killEvery {
			out = append(out, action{at: t})
		}
	}
	if failoverEvery > 0 {
		for t := failoverFirst; t <= last; t += failoverEvery {
			out = append(out, action{at: t, failover: true})
		}
	}
	slices.SortStableFunc(out, func(a, b action) int { return int(a.at - b.at) })
	return out
}

// run carries out the schedule from start until ctx ends; the channel closes when it is done.
func (c *chaos) run(ctx context.Context, o options, start time.Time) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		victim := 0
		for _, a := range schedule(o.duration, o.killEvery, o.failoverFirst, o.failoverEvery) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(a.at))):
			}
			if a.failover {
				c.failover(ctx)
			} else {
				c.kill(ctx, victim%len(c.f.replicas))
				victim++
			}
		}
	}()
	return done
}

// kill SIGKILLs one replica, starts it again and records the window.
func (c *chaos) kill(ctx context.Context, i int) {
	r := c.f.replicas[i]
	w := window{kind: windowKill, replica: i, start: time.Now()}
	r.kill()
	c.logf("replica %d killed (SIGKILL)", i)
	if err := r.start(context.WithoutCancel(ctx)); err != nil {
		c.logf("replica %d did not come back: %v", i, err)
		w.detail = "did not come back: " + err.Error()
	}
	w.end = time.Now().Add(windowTail)
	c.logf("replica %d back after %s", i, time.Since(w.start).Round(100*time.Millisecond))
	c.add(w)
}

// failover kills the Redis master and records the window until the new master plus windowTail.
func (c *chaos) failover(ctx context.Context) {
	w := window{kind: windowFailover, replica: -1, start: time.Now()}
	old, nu, promoted, err := c.f.redis.failover(ctx)
	if err != nil {
		c.logf("failover: %v", err)
		w.detail = err.Error()
		promoted = time.Now()
	} else {
		c.logf("redis master %s killed (SIGKILL); %s promoted after %s", old, nu, promoted.Sub(w.start).Round(100*time.Millisecond))
	}
	w.end = promoted.Add(windowTail)
	c.add(w)
}

func (c *chaos) add(w window) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws = append(c.ws, w)
}

func (c *chaos) windows() []window {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ws)
}
