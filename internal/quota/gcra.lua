-- GCRA over one or more buckets, decided atomically in one round trip (see params in rate.go).
--
-- KEYS[i]     the bucket's theoretical arrival time (TAT), in microseconds of the Redis clock
-- ARGV[2i-1]  its emission interval T, microseconds
-- ARGV[2i]    its tolerance tau for this call's priority, microseconds
--
-- The time is the Redis server's (TIME), so that the replicas' clocks do not matter. A call is
-- admitted only when every bucket admits it; then each TAT moves on by its T and the key expires
-- when the TAT is past (an absent key is a full bucket).
-- Returns {1, 0, now, tat} when admitted, {0, wait, now, tat} when refused, wait being the
-- microseconds until every bucket would admit the call and tat the first bucket's TAT after the
-- call (unchanged when refused), from which Keyed derives how many calls remain.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local tats = {}
local first = now
for i, key in ipairs(KEYS) do
  local T = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then
    tat = now
  end
  if i == 1 then
    first = tat
  end
  local w = tat - tau - now
  if w > wait then
    wait = w
  end
  tats[i] = tat + T
end
if wait > 0 then
  return {0, wait, now, first}
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000)
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl)
end
return {1, 0, now, tats[1]}
