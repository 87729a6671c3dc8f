package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/clip"
)

// DeadLetter is an event the CRM did not accept after every attempt.
type DeadLetter struct {
	// ID is the event's id.
	ID        string `json:"id" example:"evt_3f0c2b7e8a11d5a3f2b1c431d5a3f2b1"`
	SessionID string `json:"sessionId" example:"demo_session"`
	Type      string `json:"type" example:"message.received"`
	// Attempts is how many times it was tried; LastError what the last attempt met.
	Attempts  int       `json:"attempts" example:"8"`
	LastError string    `json:"lastError" example:"the events URL answered 503"`
	FailedAt  time.Time `json:"failedAt" example:"2025-11-07T12:03:00Z"`
	// Event is the event as it was (and will be) sent.
	Event Event `json:"event"`
}

// deadRecord is a dead letter as stored: the event's exact bytes, sent again on replay.
type deadRecord struct {
	ID        string          `json:"id"`
	SessionID string          `json:"sessionId"`
	Type      string          `json:"type"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"lastError"`
	FailedAt  time.Time       `json:"failedAt"`
	Event     json.RawMessage `json:"event"`
}

func (r deadRecord) letter() DeadLetter {
	d := DeadLetter{ID: r.ID, SessionID: r.SessionID, Type: r.Type, Attempts: r.Attempts, LastError: r.LastError,
		FailedAt: r.FailedAt}
	_ = json.Unmarshal(r.Event, &d.Event)
	return d
}

// deadLetterOf builds the dead letter record of an outbox entry.
func deadLetterOf(raw, sid string, attempts int, lastErr error, now time.Time) (id, record string) {
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(raw), &head)
	if head.ID == "" {
		head.ID = eventID("unreadable|" + raw)
	}
	b, _ := json.Marshal(deadRecord{ID: head.ID, SessionID: sid, Type: head.Type, Attempts: attempts,
		LastError: clip.Bytes(lastErr.Error(), 300, ""), FailedAt: now.UTC(), Event: json.RawMessage(raw)})
	return head.ID, string(b)
}

// errUnreadable: a stored dead letter cannot be decoded.
var errUnreadable = errors.New("webhooks: unreadable dead letter")

// DeadLetterPage is a page of dead letters, newest first.
type DeadLetterPage struct {
	Items []DeadLetter
	Total int
}

// MaxDeadLetterLimit is the largest page of dead letters.
const MaxDeadLetterLimit = 100

// eventIDPattern is the shape of an event id.
var eventIDPattern = regexp.MustCompile(`^evt_[0-9a-f]{32}$`)

// ValidEventID reports whether id has the shape of an event id.
func ValidEventID(id string) bool { return eventIDPattern.MatchString(id) }

// DeadLetters returns a page (from 1) of dead letters, newest first, at most limit (1..100).
func (s *Service) DeadLetters(ctx context.Context, page, limit int) (DeadLetterPage, error) {
	page = max(page, 1)
	limit = min(max(limit, 1), MaxDeadLetterLimit)
	start := int64((page - 1) * limit)
	pipe := s.cfg.Redis.Pipeline()
	ids := pipe.ZRevRange(ctx, s.k.deadIndex(), start, start+int64(limit)-1)
	total := pipe.ZCard(ctx, s.k.deadIndex())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return DeadLetterPage{}, fmt.Errorf("webhooks: list dead letters: %w", err)
	}
	out := DeadLetterPage{Items: []DeadLetter{}, Total: int(total.Val())}
	if len(ids.Val()) == 0 {
		return out, nil
	}
	vals, err := s.cfg.Redis.HMGet(ctx, s.k.dead(), ids.Val()...).Result()
	if err != nil {
		return DeadLetterPage{}, fmt.Errorf("webhooks: read dead letters: %w", err)
	}
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // trimmed meanwhile
		}
		var r deadRecord
		if json.Unmarshal([]byte(str), &r) != nil {
			continue
		}
		out.Items = append(out.Items, r.letter())
	}
	return out, nil
}

// replayClaim bounds how long a replay holds a dead letter.
const replayClaim = time.Minute

// Replay sends a dead letter again: it goes to the tail of its session's outbox (after the events
// waiting there) and leaves the dead letters. ErrDeadLetterNotFound when there is none with that
// id; ErrForwardingDisabled when events are not forwarded.
func (s *Service) Replay(ctx context.Context, id string) (DeadLetter, error) {
	if !s.Forwarding() {
		return DeadLetter{}, ErrForwardingDisabled
	}
	str, err := s.cfg.Redis.HGet(ctx, s.k.dead(), id).Result()
	if errors.Is(err, redis.Nil) {
		return DeadLetter{}, ErrDeadLetterNotFound
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("webhooks: read dead letter: %w", err)
	}
	var r deadRecord
	if err := json.Unmarshal([]byte(str), &r); err != nil || !ValidSessionID(r.SessionID) {
		return DeadLetter{}, fmt.Errorf("%w: %s", errUnreadable, id)
	}
	// Claimed (so that a concurrent replay does not send it twice), put back at the tail of its
	// outbox, then dropped: a replay that dies midway leaves the dead letter, not a lost event.
	claim := s.k.replaying(id)
	if err := claimDeadScript.Run(ctx, s.cfg.Redis, []string{s.k.dead(), claim}, id, replayClaim.Milliseconds()).Err(); err != nil {
		if errors.Is(err, redis.Nil) {
			return DeadLetter{}, ErrDeadLetterNotFound // replayed by someone else meanwhile
		}
		return DeadLetter{}, fmt.Errorf("webhooks: replay dead letter: %w", err)
	}
	if err := s.cfg.Redis.SAdd(ctx, s.k.pending(), r.SessionID).Err(); err != nil {
		s.cfg.Redis.Del(context.WithoutCancel(ctx), claim)
		return DeadLetter{}, fmt.Errorf("webhooks: replay dead letter: %w", err)
	}
	if err := s.cfg.Redis.RPush(ctx, s.k.outbox(r.SessionID), string(r.Event)).Err(); err != nil {
		s.cfg.Redis.Del(context.WithoutCancel(ctx), claim)
		return DeadLetter{}, fmt.Errorf("webhooks: replay dead letter: %w", err)
	}
	if err := dropDeadScript.Run(ctx, s.cfg.Redis, []string{s.k.dead(), s.k.deadIndex(), claim}, id).Err(); err != nil {
		s.log.Warn("a replayed dead letter is still listed; it goes away when the list is trimmed", "eventId", id, "error", err.Error())
	}
	s.log.Info("dead letter replayed", "eventId", id, "sessionId", r.SessionID, "type", r.Type)
	if f := s.fwd.Load(); f != nil {
		f.nudge(r.SessionID)
	}
	return r.letter(), nil
}

// ReplayAll replays every dead letter there is when it starts, oldest first (so that a session's
// events keep their order among themselves), and returns how many it replayed. Events that fail
// again meanwhile stay dead letters until the next replay.
func (s *Service) ReplayAll(ctx context.Context) (int, error) {
	if !s.Forwarding() {
		return 0, ErrForwardingDisabled
	}
	ids, err := s.cfg.Redis.ZRange(ctx, s.k.deadIndex(), 0, -1).Result() // at most MaxDeadLetters
	if err != nil {
		return 0, fmt.Errorf("webhooks: list dead letters: %w", err)
	}
	n := 0
	for _, id := range ids {
		_, err := s.Replay(ctx, id)
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrDeadLetterNotFound):
			// Replayed by someone else meanwhile, or an index entry without a record.
			if err := s.cfg.Redis.ZRem(ctx, s.k.deadIndex(), id).Err(); err != nil {
				return n, fmt.Errorf("webhooks: list dead letters: %w", err)
			}
		case errors.Is(err, errUnreadable):
			s.log.Warn("dead letter dropped: unreadable", "eventId", id)
			if _, err := s.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.ZRem(ctx, s.k.deadIndex(), id)
				p.HDel(ctx, s.k.dead(), id)
				return nil
			}); err != nil {
				return n, fmt.Errorf("webhooks: drop dead letter: %w", err)
			}
		default:
			return n, err
		}
	}
	return n, nil
}
