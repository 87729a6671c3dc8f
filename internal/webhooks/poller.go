package webhooks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/jid"
	"github.com/inboxhub-gateway/gateway/internal/lease"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// poller is the status poller of one replica: it bids for the leadership (a lease in Redis) every
// LeaderLease/3 and, while it holds it, lists the sessions every PollInterval.
type poller struct {
	s      *Service
	lease  *lease.Lease
	leader atomic.Bool
	// renewedAt is when the lease was last taken or renewed (only the run goroutine touches it).
	renewedAt time.Time
}

func newPoller(s *Service) *poller {
	return &poller{s: s, lease: lease.New(s.cfg.Redis, s.k.leader(), s.cfg.LeaderLease)}
}

func (p *poller) isLeader() bool { return p.leader.Load() }

// run holds or seeks the leadership until ctx ends, then gives it up.
func (p *poller) run(ctx context.Context) {
	s := p.s
	var polls sync.WaitGroup
	var stopPolling context.CancelFunc
	step := func(lead bool) {
		switch {
		case lead && stopPolling == nil:
			var leadCtx context.Context
			leadCtx, stopPolling = context.WithCancel(ctx)
			p.leader.Store(true)
			s.m.leader.Set(1)
			s.log.Info("status poller: this replica is the leader", "interval", s.cfg.PollInterval.String())
			polls.Go(func() { p.pollEvery(leadCtx) })
		case !lead && stopPolling != nil:
			stopPolling()
			polls.Wait()
			stopPolling = nil
			p.leader.Store(false)
			s.m.leader.Set(0)
			s.log.Warn("status poller: leadership lost")
		}
	}
	t := time.NewTicker(s.cfg.LeaderLease / 3)
	defer t.Stop()
	for {
		step(p.holdLease(ctx))
		select {
		case <-ctx.Done():
			if stopPolling != nil {
				stopPolling()
				polls.Wait()
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = p.lease.Release(rctx)
				cancel()
				p.leader.Store(false)
				s.m.leader.Set(0)
				s.log.Info("status poller: leadership released")
			}
			return
		case <-t.C:
		}
	}
}

// holdLease takes the lease when free, or renews it when held; it reports whether this replica
// leads now. After a Redis failure a leader keeps leading only while its lease cannot have
// expired.
func (p *poller) holdLease(ctx context.Context) bool {
	if p.leader.Load() {
		ok, err := p.lease.Renew(ctx)
		switch {
		case err == nil && ok:
			p.renewedAt = time.Now()
			return true
		case err == nil:
			return false
		default:
			return time.Since(p.renewedAt) < p.lease.TTL()/2
		}
	}
	ok, err := p.lease.Acquire(ctx)
	if err != nil || !ok {
		return false
	}
	p.renewedAt = time.Now()
	return true
}

// pollEvery polls at once, then every PollInterval, until ctx ends.
func (p *poller) pollEvery(ctx context.Context) {
	t := time.NewTicker(p.s.cfg.PollInterval)
	defer t.Stop()
	for {
		p.pollOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollOnce lists every session and emits an event for each status that differs from the last one
// known. A session seen for the first time is only recorded.
func (p *poller) pollOnce(ctx context.Context) {
	s := p.s
	for sess, err := range s.cfg.Sessions.AllSessions(quota.WithBackground(ctx), upstream.MaxLimit) {
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("status poller: could not list the sessions", "error", err.Error())
			}
			return
		}
		sid := sess.SessionID
		if !ValidSessionID(sid) {
			continue
		}
		status := statusOf(sess.Status, sess.IsConnected)
		prev, err := s.cfg.Redis.Get(ctx, s.k.status(sid)).Result()
		if errors.Is(err, redis.Nil) {
			if err := s.cfg.Redis.SetNX(ctx, s.k.status(sid), status, 0).Err(); err != nil && ctx.Err() == nil {
				s.log.Warn("status poller: could not record a status", "sessionId", sid, "error", err.Error())
			}
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("status poller: could not read the known status", "sessionId", sid, "error", err.Error())
			}
			return
		}
		if prev == status {
			continue
		}
		change := &SessionChange{Status: status, PhoneNumber: phoneOf(sess)}
		if status == StatusQRPending {
			change.QR = &EventQR{Available: sess.HasQR || sess.QRCode != ""}
			if !sess.QRCodeExpiresAt.IsZero() {
				at := sess.QRCodeExpiresAt.UTC()
				change.QR.ExpiresAt = &at
			}
		}
		ev, accepted, err := s.emitChange(ctx, sid, prev, change, SourcePoller, s.cfg.Clock())
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("status poller: could not emit an event", "sessionId", sid, "error", err.Error())
			}
		case accepted:
			s.log.Info("status poller: a status change no webhook reported", "sessionId", sid, "from", prev,
				"to", status, "eventId", ev.ID)
		}
	}
}

// phoneOf is a session's phone number: the field, else the number of its JID.
func phoneOf(sess upstream.Session) string {
	if sess.PhoneNumber != "" {
		return sess.PhoneNumber
	}
	return jid.Phone(sess.PhoneNumberID)
}
