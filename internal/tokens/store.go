package tokens

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/broadcast"
	"github.com/inboxhub-gateway/gateway/internal/lease"
)

// Redis layout. Everything about the token lives in one hash, <prefix>, so that one HGETALL reads
// the whole state and every script touches a single key (Redis Cluster safe):
//
//	gen        generation of the stored token; +1 on every new token, never reset
//	kid        id of the encryption key of data; empty = data is plain JSON
//	data       the token record (payload), AES-GCM sealed with AAD = the hash's key name
//	exp        expiry of the access token, Unix ms (not secret; lets scripts judge validity)
//	fp         fingerprint of the access token (not secret; lets a rejection name its token exactly)
//	revoked    present while the token of generation gen was rejected by the upstream
//	norefresh  present while the refresh token in data was rejected by the upstream
//	fail_n, fail_until, fail_at   credential backoff: consecutive rejected logins, no login
//	                              before fail_until (Unix ms), time of the last rejection
//	retry_n, retry_at             transient-failure backoff of login/refresh (Unix ms)
//	err, err_at                   last login/refresh error (no secrets) and its time
//
// <prefix>:lock is the renewal lease (internal/lease: SET NX PX, value = a random holder token) and <prefix>:updated
// the channel on which every change is announced, after the write, through internal/broadcast
// (sharded pub/sub on a Redis Cluster). The names are those of earlier releases: a rolling deploy
// keeps the fleet's token.
const (
	fieldGen       = "gen"
	fieldKeyID     = "kid"
	fieldData      = "data"
	fieldExp       = "exp"
	fieldFP        = "fp"
	fieldRevoked   = "revoked"
	fieldNoRefresh = "norefresh"
	fieldFailN     = "fail_n"
	fieldFailUntil = "fail_until"
	fieldFailAt    = "fail_at"
	fieldRetryN    = "retry_n"
	fieldRetryAt   = "retry_at"
	fieldErr       = "err"
	fieldErrAt     = "err_at"
)

// saveLua writes a new token (the caller announces it). The generation becomes
// max(stored, ARGV[1]) + 1, so it only grows. With mode "ifinvalid" it writes only when the stored token is missing, expired or revoked (used
// to put a token kept in memory back after Redis lost it). A forced write is a successful login or
// refresh and clears every failure mark.
const saveLua = `
local h = KEYS[1]
local gen = tonumber(redis.call('HGET', h, 'gen') or '0')
if ARGV[6] == 'ifinvalid' then
  local exp = tonumber(redis.call('HGET', h, 'exp') or '0')
  if redis.call('HEXISTS', h, 'data') == 1 and redis.call('HEXISTS', h, 'revoked') == 0 and exp > tonumber(ARGV[5]) then
    return {0, gen}
  end
end
local g = math.max(gen, tonumber(ARGV[1])) + 1
redis.call('HSET', h, 'gen', g, 'kid', ARGV[2], 'data', ARGV[3], 'exp', ARGV[4], 'fp', ARGV[7])
redis.call('HDEL', h, 'revoked', 'norefresh')
if ARGV[6] == 'force' then
  redis.call('HDEL', h, 'fail_n', 'fail_until', 'fail_at', 'retry_n', 'retry_at', 'err', 'err_at')
end
return {1, g}
`

// rejectLua marks the stored token revoked if it is still of generation ARGV[1] and fingerprint
// ARGV[2]: a 401 on an older token must not throw away a newer one (the caller announces it).
const rejectLua = `
local g = redis.call('HGET', KEYS[1], 'gen')
local fp = redis.call('HGET', KEYS[1], 'fp')
if g and tonumber(g) == tonumber(ARGV[1]) and (not fp or fp == ARGV[2])
   and redis.call('HEXISTS', KEYS[1], 'data') == 1 and redis.call('HEXISTS', KEYS[1], 'revoked') == 0 then
  redis.call('HSET', KEYS[1], 'revoked', g)
  return 1
end
return 0
`

// Modes of saveLua.
const (
	saveForce     = "force"
	saveIfInvalid = "ifinvalid"
)

type scripts struct {
	save, reject *redis.Script
}

func newScripts() scripts {
	return scripts{
		save:   redis.NewScript(saveLua),
		reject: redis.NewScript(rejectLua),
	}
}

// payload is what data holds once opened.
type payload struct {
	Access   string `json:"a"`
	Refresh  string `json:"r,omitempty"`
	Obtained int64  `json:"o"` // Unix ms
	Expires  int64  `json:"e"` // Unix ms
}

// record is the stored state as read by one HGETALL.
type record struct {
	gen       int64
	tok       *token // nil when there is no token or it cannot be read
	revoked   bool
	failN     int
	failUntil time.Time
	failAt    time.Time
	retryN    int
	retryAt   time.Time
	errMsg    string
	errAt     time.Time
}

// load reads the stored state. Its error is a Redis error only: a record that cannot be decrypted
// or parsed is logged and read as "no token", so that a new one is obtained and overwrites it.
func (s *Source) load(ctx context.Context) (*record, error) {
	h, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		return nil, err
	}
	s.storeUp()
	rec := &record{
		gen:       atoi(h[fieldGen]),
		failN:     int(atoi(h[fieldFailN])),
		failUntil: msTime(h[fieldFailUntil]),
		failAt:    msTime(h[fieldFailAt]),
		retryN:    int(atoi(h[fieldRetryN])),
		retryAt:   msTime(h[fieldRetryAt]),
		errMsg:    h[fieldErr],
		errAt:     msTime(h[fieldErrAt]),
	}
	_, rec.revoked = h[fieldRevoked]
	if data, ok := h[fieldData]; ok {
		t, err := s.decodeToken(h[fieldKeyID], []byte(data), rec.gen)
		if err != nil {
			s.log.Warn("stored token unreadable; a new one will be obtained", "kid", h[fieldKeyID], "err", err)
		} else {
			_, t.noRefresh = h[fieldNoRefresh]
			rec.tok = t
		}
	}
	return rec, nil
}

func (s *Source) decodeToken(kid string, data []byte, gen int64) (*token, error) {
	plain, err := s.seal.open(kid, data, []byte(s.key))
	if err != nil {
		return nil, err
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("stored token record is not valid JSON: %w", err)
	}
	if p.Access == "" || p.Expires == 0 {
		return nil, fmt.Errorf("stored token record lacks the token or its expiry")
	}
	return s.newToken(p.Access, p.Refresh, time.UnixMilli(p.Obtained), time.UnixMilli(p.Expires), gen), nil
}

// save writes t and returns the generation it got, or with onlyIfInvalid reports written=false and
// the stored generation when Redis already holds a valid token.
func (s *Source) save(ctx context.Context, t *token, floor int64, mode string) (gen int64, written bool, err error) {
	plain, err := json.Marshal(payload{
		Access:   t.tok.Value,
		Refresh:  t.refresh,
		Obtained: t.obtainedAt.UnixMilli(),
		Expires:  t.expiresAt.UnixMilli(),
	})
	if err != nil {
		return 0, false, err
	}
	kid, data := s.seal.seal(plain, []byte(s.key))
	res, err := s.scripts.save.Run(ctx, s.rdb, []string{s.key},
		floor, kid, data, t.expiresAt.UnixMilli(), s.now().UnixMilli(), mode, t.fp).Int64Slice()
	if err != nil {
		return 0, false, err
	}
	if len(res) != 2 {
		return 0, false, fmt.Errorf("tokens: save script answered %v", res)
	}
	if res[0] == 1 {
		s.announce(ctx, "token:"+strconv.FormatInt(res[1], 10))
	}
	return res[1], res[0] == 1, nil
}

// storeFailure records a failed login or refresh for the whole fleet and wakes the waiters, so
// that they fail fast instead of waiting for a token that will not come.
func (s *Source) storeFailure(ctx context.Context, fields []any) error {
	if err := s.rdb.HSet(ctx, s.key, fields...).Err(); err != nil {
		return err
	}
	s.announce(ctx, "failed")
	return nil
}

// announce tells the fleet that the stored state changed. A lost notice only delays the other
// replicas until their next poll, so its error is logged, not returned.
func (s *Source) announce(ctx context.Context, msg string) {
	if err := broadcast.Publish(ctx, s.rdb, s.channel, msg); err != nil {
		s.log.Debug("could not announce a token change; the other replicas see it at their next poll", "err", err)
	}
}

// tryLock takes the renewal lease if it is free; the lease proves it is ours.
func (s *Source) tryLock(ctx context.Context) (*lease.Lease, bool, error) {
	l := lease.New(s.rdb, s.lockKey, s.cfg.lockTTL)
	ok, err := l.Acquire(ctx)
	return l, ok, err
}

// holdLease renews the lease every TTL/3 until stop is called, which also releases it, and keeps
// renewing through Redis errors. lost reports whether the lease went to someone else meanwhile (it
// expired while Redis was unreachable).
func (s *Source) holdLease(l *lease.Lease) (lost func() bool, stop func()) {
	k := l.Start(context.Background(), lease.KeepOptions{
		Patient: true,
		OnError: func(err error) { s.log.Warn("could not extend the token renewal lock", "err", err) },
		OnLost:  func(error) { s.log.Warn("token renewal lock lost to another holder") },
	})
	return k.Lost, func() {
		if err := k.Release(context.Background(), s.cfg.lockTTL); err != nil {
			s.log.Warn("could not release the token renewal lock; it expires by itself", "err", err)
		}
	}
}

func atoi(v string) int64 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func msTime(v string) time.Time {
	n := atoi(v)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func ms(t time.Time) int64 { return t.UnixMilli() }
