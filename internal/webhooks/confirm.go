package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/jid"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// DefaultConfirmRate bounds the confirming reads of one session: 3 at once (a QR shown, scanned,
// and the session connected within seconds), then one every 10 seconds.
var DefaultConfirmRate = quota.Rate{N: 6, Per: time.Minute, Burst: 3}

// Results of a confirming read (the result label of webhook_session_checks_total).
const (
	checkChanged   = "changed"
	checkUnchanged = "unchanged"
	checkNotFound  = "not_found"
	checkError     = "error"
)

// hint is a session event as received, kept until the upstream confirms or denies it. Nonce tells
// two identical deliveries apart, so that clearing a hint never clears a later one.
type hint struct {
	Nonce  string         `json:"nonce"`
	Type   string         `json:"type"`
	SentAt time.Time      `json:"sentAt"`
	Change *SessionChange `json:"change"`
}

// hintScript keeps a session's latest hint. A session that only the unsigned header names must be
// one the gateway knows (one with a last known status), so that a header cannot make the gateway
// read arbitrary session ids. KEYS: hint, status. ARGV: hint JSON, "1" when the session must be
// known. Answers 1 when kept, 0 when the session is unknown. (The caller indexes the session.)
var hintScript = redis.NewScript(`
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// clearHintScript drops a session's hint if it is still the one that was confirmed.
// KEYS: hint. ARGV: hint JSON. Answers 1 when dropped, 0 when a newer one came.
var clearHintScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
`)

// receiveHint keeps a session event for the confirmer and answers at once; nothing else happens
// until the upstream confirms a change. It returns the result for webhooks_received_total.
func (s *Service) receiveHint(ctx context.Context, p Parsed) (Receipt, string, error) {
	ev := p.Event
	if s.cfg.Statuses == nil {
		return Receipt{Type: ev.Type, SessionID: ev.SessionID, Ignored: true}, "ignored", nil
	}
	raw, err := json.Marshal(hint{Nonce: newToken(), Type: ev.Type, SentAt: ev.OccurredAt, Change: ev.Data.Session})
	if err != nil {
		return Receipt{}, "error", fmt.Errorf("webhooks: encode a session event: %w", err)
	}
	mustBeKnown := "0"
	if p.SessionFromHeader {
		mustBeKnown = "1"
	}
	n, err := hintScript.Run(ctx, s.cfg.Redis, []string{s.k.hint(ev.SessionID), s.k.status(ev.SessionID)}, raw, mustBeKnown).Int()
	if err != nil {
		return Receipt{}, "error", fmt.Errorf("webhooks: keep a session event: %w", err)
	}
	if n == 0 {
		return Receipt{}, "invalid", invalid("X-Webhook-Session", "names a session the gateway does not know, and the signed body names none")
	}
	if err := s.cfg.Redis.SAdd(ctx, s.k.hinted(), ev.SessionID).Err(); err != nil {
		return Receipt{}, "error", fmt.Errorf("webhooks: keep a session event: %w", err)
	}
	if c := s.conf.Load(); c != nil {
		c.nudge(ev.SessionID)
	}
	return Receipt{Type: ev.Type, SessionID: ev.SessionID, Hint: true}, "hint", nil
}

// confirm reads the session's status from the upstream and, when it differs from the last one
// known, emits the change (with the hint's details when the hint said the same). It returns the
// check's result; an error leaves the hint for a later try.
func (s *Service) confirm(ctx context.Context, sid string, h hint) (string, error) {
	st, err := s.cfg.Statuses.SessionStatus(quota.WithBackground(ctx), sid)
	switch {
	case errors.Is(err, upstream.ErrSessionNotFound), errors.Is(err, upstream.ErrNotFound):
		return checkNotFound, nil
	case err != nil:
		return checkError, fmt.Errorf("read the session's status: %w", err)
	}
	status := statusOf(st.Status, st.IsConnected)
	prev, err := s.cfg.Redis.Get(ctx, s.k.status(sid)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return checkError, fmt.Errorf("read the last known status: %w", err)
	}
	if prev == status {
		return checkUnchanged, nil
	}
	change := &SessionChange{Status: status, PhoneNumber: normalizePhone(st.PhoneNumber)}
	at := s.cfg.Clock()
	if h.Change != nil && h.Change.Status == status {
		// The hint said so: its signed details (reason, QR expiry) describe this change.
		change.Reason, change.QR, at = h.Change.Reason, h.Change.QR, h.SentAt
		if change.PhoneNumber == "" {
			change.PhoneNumber = h.Change.PhoneNumber
		}
	}
	if status == StatusQRPending && change.QR == nil {
		change.QR = &EventQR{Available: st.HasQR}
	}
	_, accepted, err := s.emitChange(ctx, sid, prev, change, SourceWebhook, at)
	switch {
	case err != nil:
		return checkError, err
	case !accepted: // another replica or the poller recorded a change meanwhile
		return checkUnchanged, nil
	}
	return checkChanged, nil
}

// emitChange emits a session's status change from prev (the last status known, "" for none)
// through the pipeline. It is dropped (false) when the last known status is no longer prev: a
// confirmation or a poll recorded a change meanwhile, and reported it.
func (s *Service) emitChange(ctx context.Context, sid, prev string, change *SessionChange, source string,
	at time.Time) (Event, bool, error) {
	change.PreviousStatus = prev
	now := s.cfg.Clock()
	ev := Event{Type: sessionEventType(change.Status), SessionID: sid, OccurredAt: at.UTC(), Source: source,
		Data: EventData{Session: change}}
	ev.ID = eventID(source + "|" + sid + "|" + prev + ">" + change.Status + "|" + strconv.FormatInt(now.UnixNano(), 10))
	accepted, err := s.accept(ctx, ev, prev)
	return ev, accepted, err
}

// statusOf is the gateway's status word of an upstream status (connected when the word is missing
// and the session says it is connected).
func statusOf(upstreamStatus string, isConnected bool) string {
	if strings.TrimSpace(upstreamStatus) == "" && isConnected {
		return StatusConnected
	}
	return SessionStatus(upstreamStatus)
}

// normalizePhone is the number of a phone JID, or s as given (at most 64 bytes).
func normalizePhone(s string) string {
	if p := jid.Phone(s); p != "" {
		return p
	}
	return clip.Bytes(s, 64, "")
}

// confirmer confirms the hints of this replica at once and sweeps for the others: one read at a
// time per session here, at most MaxConfirmers at once, each session's reads bounded fleet-wide by
// ConfirmRate.
type confirmer struct {
	s       *Service
	nudges  chan string
	slots   chan struct{}
	mu      sync.Mutex
	running map[string]bool
	timers  map[string]*time.Timer // a later try, when the rate refused one
	stopped bool
	wg      sync.WaitGroup
}

func newConfirmer(s *Service) *confirmer {
	return &confirmer{s: s, nudges: make(chan string, 1024), slots: make(chan struct{}, s.cfg.MaxConfirmers),
		running: map[string]bool{}, timers: map[string]*time.Timer{}}
}

// nudge asks for the session's hint to be confirmed soon; it never blocks (the sweep catches what a
// full channel drops).
func (c *confirmer) nudge(sessionID string) {
	select {
	case c.nudges <- sessionID:
	default:
	}
}

// run starts confirmations on nudges and, every SweepInterval, for every session with a hint,
// until ctx ends.
func (c *confirmer) run(ctx context.Context) {
	s := c.s
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sid := <-c.nudges:
			c.start(ctx, sid)
		case <-t.C:
			sids, err := s.cfg.Redis.SMembers(ctx, s.k.hinted()).Result()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("session confirmer: could not list the session events to confirm", "error", err.Error())
				}
				continue
			}
			for _, sid := range sids {
				c.start(ctx, sid)
			}
		}
	}
}

// wait stops the pending later tries and returns once every confirmation has ended.
func (c *confirmer) wait() {
	c.mu.Lock()
	c.stopped = true
	for sid, t := range c.timers {
		t.Stop()
		delete(c.timers, sid)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// start confirms the session's hint unless that runs here already or no slot is free.
func (c *confirmer) start(ctx context.Context, sid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[sid] || c.stopped {
		return
	}
	select {
	case c.slots <- struct{}{}:
	default:
		return // busy: the next sweep tries again
	}
	c.running[sid] = true
	c.wg.Go(func() {
		defer func() {
			c.mu.Lock()
			delete(c.running, sid)
			c.mu.Unlock()
			<-c.slots
		}()
		c.confirmSession(ctx, sid)
	})
}

// later tries the session again after d (once, however many times it is asked).
func (c *confirmer) later(sid string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.timers[sid] != nil {
		return
	}
	c.timers[sid] = time.AfterFunc(d, func() {
		c.mu.Lock()
		delete(c.timers, sid)
		c.mu.Unlock()
		c.nudge(sid)
	})
}

// confirmSession confirms the session's hint, again while newer hints arrive during the reads,
// within the session's rate; a refused or failed try is left for later.
func (c *confirmer) confirmSession(ctx context.Context, sid string) {
	s := c.s
	for ctx.Err() == nil {
		raw, err := s.cfg.Redis.Get(ctx, s.k.hint(sid)).Result()
		if errors.Is(err, redis.Nil) {
			s.unindexHint(ctx, sid)
			return
		}
		if err != nil {
			return // Redis failed: the sweep tries again
		}
		d, err := s.limit.Allow(ctx, confirmKey(sid))
		if err != nil {
			return
		}
		if !d.Allowed {
			c.later(sid, d.RetryAfter)
			return
		}
		var h hint
		result := checkUnchanged
		if json.Unmarshal([]byte(raw), &h) == nil {
			if result, err = s.confirm(ctx, sid, h); err != nil {
				s.m.checks.WithLabelValues(result).Inc()
				if ctx.Err() == nil {
					s.log.Warn("session confirmer: could not confirm a session event", "sessionId", sid, "error", err.Error())
				}
				c.later(sid, s.cfg.SweepInterval)
				return
			}
		}
		s.m.checks.WithLabelValues(result).Inc()
		if result == checkChanged {
			s.log.Info("session status changed, confirmed with Inbox Hub", "sessionId", sid, "type", h.Type)
		}
		n, err := clearHintScript.Run(ctx, s.cfg.Redis, []string{s.k.hint(sid)}, raw).Int()
		if err != nil {
			return
		}
		if n == 1 {
			s.unindexHint(ctx, sid)
			return
		}
		// A newer hint came during the read: confirm again, after it.
	}
}

// unindexHint takes a session without a hint out of the sweep's index. It is put back when a hint
// arrived meanwhile (hintScript comes before the index), so that no hint is left unswept.
func (s *Service) unindexHint(ctx context.Context, sid string) {
	if err := s.cfg.Redis.SRem(ctx, s.k.hinted(), sid).Err(); err != nil {
		return
	}
	if n, err := s.cfg.Redis.Exists(ctx, s.k.hint(sid)).Result(); err != nil || n == 1 {
		s.cfg.Redis.SAdd(ctx, s.k.hinted(), sid)
	}
}

// KnownStatus is the session's last known status ("" when the gateway has seen none).
func (s *Service) KnownStatus(ctx context.Context, sid string) (string, error) {
	st, err := s.cfg.Redis.Get(ctx, s.k.status(sid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return st, err
}

// HintsWaiting is how many sessions may hold a session event not confirmed yet.
func (s *Service) HintsWaiting(ctx context.Context) (int64, error) {
	return s.cfg.Redis.SCard(ctx, s.k.hinted()).Result()
}
