package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// DefaultKeyPrefix is the prefix of every Redis key of the package. A prefix holds no braces: the
// keys carry their own hash tags (see keys).
const DefaultKeyPrefix = "inboxhub-gateway:webhooks:"

// keys names the Redis keys (see the package documentation for the layout). A session's keys
// (dedupe, last status, hint, outbox and its lock, confirm rate) carry its hash tag {s:<session>},
// so that each script touches one slot and sessions spread over a Redis Cluster. The fleet-wide
// keys are few and small: the indexes of sessions with work waiting, the dead letters (their own
// tag, one slot) and the poller's lease.
type keys struct{ prefix string }

func (k keys) session(sid string) string         { return k.prefix + "{s:" + sid + "}:" }
func (k keys) dedupe(sid, eventID string) string { return k.session(sid) + "seen:" + eventID }
func (k keys) status(sid string) string          { return k.session(sid) + "status" }
func (k keys) hint(sid string) string            { return k.session(sid) + "hint" }
func (k keys) outbox(sid string) string          { return k.session(sid) + "outbox" }
func (k keys) outboxLock(sid string) string      { return k.session(sid) + "outbox:lock" }
func (k keys) outboxTaken(sid string) string     { return k.session(sid) + "outbox:taken" }
func (k keys) confirmPrefix() string             { return k.prefix + "confirm:" }
func (k keys) pending() string                   { return k.prefix + "outbox-pending" }
func (k keys) hinted() string                    { return k.prefix + "hinted" }
func (k keys) dead() string                      { return k.prefix + "{dead}:records" }
func (k keys) deadIndex() string                 { return k.prefix + "{dead}:index" }
func (k keys) replaying(id string) string        { return k.prefix + "{dead}:replaying:" + id }
func (k keys) leader() string                    { return k.prefix + "poller-leader" }
func confirmKey(sid string) string               { return "{s:" + sid + "}" }

// An outbox entry is the event's JSON as forwarded, preceded by what the forwarder needs about
// its receipt: "@" + {"r": received at (Unix ms), "t": the receipt's trace carrier} + "\n" + the
// event. An entry that begins with "{" is an event alone (written before the envelope existed,
// or a replayed dead letter), forwarded the same way.
type entryMeta struct {
	ReceivedMs int64 `json:"r"`
	// SentMs is when the upstream sent the event (its signed X-Webhook-Timestamp; the poll's time
	// for a poller event): the order of a session's outbox. It comes before the trace, where
	// ingestScript looks for it.
	SentMs int64             `json:"s,omitempty"`
	Trace  telemetry.Carrier `json:"t,omitempty"`
}

// newEntry is the outbox entry of an event sent at sent and received at received, in ctx's trace.
func newEntry(ctx context.Context, event []byte, sent, received time.Time) string {
	meta, _ := json.Marshal(entryMeta{ReceivedMs: received.UnixMilli(), SentMs: sent.UnixMilli(), Trace: telemetry.Inject(ctx)})
	return "@" + string(meta) + "\n" + string(event)
}

// splitEntry returns an outbox entry's event and what is known of its receipt (zero when the
// entry is an event alone, or its envelope unreadable).
func splitEntry(entry string) (event string, meta entryMeta) {
	head, event, ok := strings.Cut(entry, "\n")
	if !ok || !strings.HasPrefix(head, "@") {
		return entry, entryMeta{}
	}
	if json.Unmarshal([]byte(head[1:]), &meta) != nil {
		return event, entryMeta{}
	}
	return event, meta
}

// Answers of ingestScript.
const (
	ingestAccepted  = 1
	ingestDuplicate = 0
	ingestStale     = -1
)

// ingestScript accepts an event once: it claims the event's dedupe key, records a session's new
// status, and puts the event in its session's outbox, all or nothing. Putting it there, in the
// request that received the webhook, is what fixes the order in which the CRM gets a session's
// events: the order in which the upstream sent them (the signed timestamp, "s" in the entry). An
// event almost always is the newest and goes to the tail at the cost of one LINDEX; one that
// arrives late (handed over from a replica's spool after a Redis outage) goes before the newer
// ones still waiting, looking back at most ingestLookBack entries, and never before a head that a
// drainer took for delivery (takeHeadScript's mark), since that one may have reached the CRM
// already. The mark, not the outbox's lock, decides: a lock can outlive its drainer (a Redis
// failover keeps it on the promoted replica) or be held between two heads (the drainers hold
// while spooled events take their places), and neither means the head is on its way. Entries
// without "s" (dead letters replayed, entries of older versions) count as newest. (The caller
// adds the session to the pending index around it.)
// KEYS: dedupe, status, outbox, outbox's taken mark. ARGV: dedupe TTL ms, new status ("" = not a session
// event), expected previous status ("*" = any; the poller passes what it read, so a webhook that
// reported the change meanwhile wins), outbox entry ("" = not forwarded), its sent time (Unix ms),
// look-back bound.
var ingestScript = redis.NewScript(`
if ARGV[2] ~= '' and ARGV[3] ~= '*' then
  local cur = redis.call('GET', KEYS[2]) or ''
  if cur ~= ARGV[3] then return -1 end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[4] == '' then return 1 end
local sent = tonumber(ARGV[5]) or 0
local first = 0
if redis.call('EXISTS', KEYS[4]) == 1 then first = 1 end
local i = redis.call('LLEN', KEYS[3]) - 1
local stop = math.max(first, i - tonumber(ARGV[6]) + 1)
local pivot = nil
while sent > 0 and i >= stop do
  local e = redis.call('LINDEX', KEYS[3], i)
  local s = tonumber(string.match(e, '^@{[^\n]-"s":(%d+)'))
  if not s or s <= sent then break end
  pivot = e
  i = i - 1
end
if pivot then
  redis.call('LINSERT', KEYS[3], 'BEFORE', pivot, ARGV[4])
else
  redis.call('RPUSH', KEYS[3], ARGV[4])
end
return 1
`)

// ingestLookBack bounds how far back ingestScript looks for a late event's place.
const ingestLookBack = 256

// deadScript records a dead letter, keeping the newest ARGV[4].
// KEYS: dead hash, dead index. ARGV: id, record, failed-at ms, dead letters kept.
var deadScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  for _, id in ipairs(old) do redis.call('HDEL', KEYS[1], id) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end
return 1
`)

// takeHeadScript reads an outbox's head for delivery and marks it taken, so that no late event is
// put before it (see ingestScript); popScript clears the mark with the head. A drain that stops
// midway leaves the mark: the head may have reached the CRM. The mark expires after ARGV[1] ms
// at the latest, so that an outbox nobody drains any more does not keep it.
// KEYS: outbox, taken mark. ARGV: mark TTL ms.
// Answers the head, or false when the outbox is empty.
var takeHeadScript = redis.NewScript(`
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[1]))
return head
`)

// popScript removes the head of an outbox after it was delivered (or recorded as a dead letter),
// and its taken mark, if the caller still holds the outbox's lock and the head is still the event
// it handled.
// KEYS: outbox, lock, taken mark. ARGV: lock token, head.
// Answers 1 when done, 0 when the head changed, -1 when the lock is lost.
var popScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('DEL', KEYS[3])
return 1
`)

// releaseIfEmptyScript frees an outbox's lock only when the outbox is empty. Being atomic with
// ingestScript's append, it leaves no event behind: either the append came first and the drainer
// goes on, or the release did and the next drainer takes the lock. (The caller takes the session
// out of the pending index before, and puts it back unless released.)
// KEYS: lock, outbox. ARGV: token.
// Answers 1 when released, 0 when events are waiting, -1 when the lock is not held.
var releaseIfEmptyScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// claimDeadScript takes a dead letter for a replay, unless another replay holds it: the letter
// stays until the event is back in its outbox (then dropDeadScript removes it), so that a replay
// that dies midway loses nothing (the claim expires).
// KEYS: dead hash, replay claim. ARGV: id, claim TTL ms.
// Answers the record, or false when there is no such dead letter or it is being replayed.
var claimDeadScript = redis.NewScript(`
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return false end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[2])) then return false end
return rec
`)

// dropDeadScript removes a replayed dead letter and its claim.
// KEYS: dead hash, dead index, replay claim. ARGV: id.
var dropDeadScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
`)

// newToken is a random lease token.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
