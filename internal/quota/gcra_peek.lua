-- How long until the GCRA bucket KEYS[1] (see gcra.lua) admits one call of tolerance ARGV[1]
-- (microseconds), without counting one: 0 when it would be admitted now. Read-only.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then
  return 0
end
local wait = tat - tonumber(ARGV[1]) - now
if wait < 0 then
  return 0
end
return wait
