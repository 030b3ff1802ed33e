-- One metered call, atomically: config freshness, sliding-window rate limit, monthly
-- hard cap, the customer's spend cap, and the call's reservation. Every key shares the
-- {customer} hash tag (Redis Cluster safe).
-- An accepted call takes its place in the window and in the month counter at once, so limits
-- are exact under concurrency, but it is only "open": commit.lua bills it once it is answered
-- 2xx, refund.lua releases it otherwise, and the flush releases it if no answer ever came
-- (the worker was killed).
-- KEYS: 1 window zset, 2 month counter, 3 open calls zset, 4 config version
-- ARGV: 1 config version, 2 limit/min, 3 window ms, 4 included calls, 5 hard cap (1/0),
--       6 call ceiling (-1 = none), 7 open ttl s, 8 unique member,
--       9 open member (the usage field and the member), 10 the config allows the product (1/0)
-- Returns {status, limit, remaining, reset_ms, month_calls}; status 0 ok, 1 rate limited,
-- 2 quota exhausted, 3 spend cap reached, 4 not entitled, -1 config stale (+ newest version),
-- -2 month counter needs a seed (month_seed.lua).
-- include window.lua
local ver = redis.call('GET', KEYS[4])
if ver and tonumber(ver) > tonumber(ARGV[1]) then
  return {-1, ver}
end
local current = ver and tonumber(ver) == tonumber(ARGV[1])
-- The entitlement is judged after the version check, so a product just granted is callable on
-- the next call. A refusal takes no place in the window or the month.
-- With no version in Redis yet the config is the newest known (a grant raises the version), so
-- a refusal needs no reload or seed either.
if ARGV[10] == '0' and (current or not ver) then
  return {4}
end
local month = redis.call('GET', KEYS[2])
-- A config newer than Redis's version: Redis missed a change or an outage (calls counted in
-- Postgres meanwhile raised the version), so its month counter is not to be trusted.
if not current then
  month = false
end
if not month then
  return {-2}
end
month = tonumber(month)

local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[2])
local now, used, reset = window_read(KEYS[1], window)
if ARGV[5] == '1' and month >= tonumber(ARGV[4]) then
  return {2, limit, math.max(limit - used, 0), reset, month}
end
local ceiling = tonumber(ARGV[6])
if ceiling >= 0 and month >= ceiling then
  return {3, limit, math.max(limit - used, 0), reset, month}
end
if used >= limit then
  return {1, limit, 0, reset, month}
end

reset = window_take(KEYS[1], window, now, ARGV[8], used, reset)
month = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], now, ARGV[9])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {0, limit, limit - used - 1, reset, month}
