package webhooks

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/redis/go-redis/v9"
)

// DefaultKeyPrefix is the prefix of every Redis key of the package. Its hash tag keeps them in one
// Redis Cluster slot, so that the scripts below may touch several of them at once.
const DefaultKeyPrefix = "{inboxhub-gateway:webhooks}:"

// keys names the Redis keys (see the package documentation for the layout).
type keys struct{ prefix string }

func (k keys) dedupe(eventID string) string { return k.prefix + "seen:" + eventID }
func (k keys) status() string               { return k.prefix + "status" }
func (k keys) outbox(sessionID string) string {
	return k.prefix + "outbox:" + sessionID
}
func (k keys) outboxLock(sessionID string) string { return k.prefix + "outbox:" + sessionID + ":lock" }
func (k keys) pending() string                    { return k.prefix + "outbox-pending" }
func (k keys) dead() string                       { return k.prefix + "dead" }
func (k keys) deadIndex() string                  { return k.prefix + "dead-index" }
func (k keys) leader() string                     { return k.prefix + "poller-leader" }
func (k keys) hints() string                      { return k.prefix + "hints" }

// Answers of ingestScript.
const (
	ingestAccepted  = 1
	ingestDuplicate = 0
	ingestStale     = -1
)

// ingestScript accepts an event once: it claims the event's dedupe key, records a session's new
// status, and appends the event to its session's outbox, all or nothing. Appending here, in the
// request that received the webhook, is what fixes the order in which the CRM gets a session's
// events: the order of arrival.
// KEYS: dedupe, status hash, outbox, pending set. ARGV: dedupe TTL ms, session id, new status (""
// = not a session event), expected previous status ("*" = any; the poller passes what it read, so
// a webhook that reported the change meanwhile wins), event JSON ("" = not forwarded).
var ingestScript = redis.NewScript(`
if ARGV[3] ~= '' and ARGV[4] ~= '*' then
  local cur = redis.call('HGET', KEYS[2], ARGV[2]) or ''
  if cur ~= ARGV[4] then return -1 end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('SADD', KEYS[4], ARGV[2])
end
return 1
`)

// popScript removes the head of an outbox after it was delivered, or moves it to the dead letters,
// if the caller still holds the outbox's lock and the head is still the event it handled.
// KEYS: outbox, lock, dead hash, dead index. ARGV: lock token, head, dead letter id ("" = delivered),
// dead letter record, failed-at ms, dead letters kept.
// Answers 1 when done, 0 when the head changed, -1 when the lock is lost.
var popScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[1])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[4], tonumber(ARGV[5]), ARGV[3])
  local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[6])
  if excess > 0 then
    local old = redis.call('ZRANGE', KEYS[4], 0, excess - 1)
    for _, id in ipairs(old) do redis.call('HDEL', KEYS[3], id) end
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, excess - 1)
  end
end
return 1
`)

// releaseIfEmptyScript frees an outbox's lock only when the outbox is empty (and then drops the
// session from the pending set). Being atomic with ingestScript's append, it leaves no event
// behind: either the append came first and the drainer goes on, or the release did and the next
// drainer takes the lock.
// KEYS: lock, outbox, pending set. ARGV: token, session id.
// Answers 1 when released, 0 when events are waiting, -1 when the lock is not held.
var releaseIfEmptyScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
`)

// replayScript moves a dead letter back to the tail of its session's outbox.
// KEYS: dead hash, dead index, outbox, pending set. ARGV: id, session id, event JSON.
// Answers 1 when moved, 0 when there is no such dead letter.
var replayScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[2])
return 1
`)

// newToken is a random lease token.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
