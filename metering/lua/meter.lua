-- One metered call, atomically: config freshness, sliding-window rate limit, monthly
-- hard cap and counting. Every key shares the {customer} hash tag (Redis Cluster safe).
-- KEYS: 1 window zset, 2 month counter, 3 pending usage hash, 4 config version
-- ARGV: 1 config version, 2 limit/min, 3 window ms, 4 included calls, 5 hard cap (1/0),
--       6 usage field, 7 last-used field, 8 month ttl s, 9 pending ttl s,
--       10 month seed (-1 = unknown), 11 unique member
-- Returns {status, limit, remaining, reset_ms, month_calls}; status 0 ok, 1 rate limited,
-- 2 quota exhausted, -1 config stale (+ newest version), -2 month counter needs a seed.
local ver = redis.call('GET', KEYS[4])
if ver and tonumber(ver) > tonumber(ARGV[1]) then
  return {-1, ver}
end
local month = redis.call('GET', KEYS[2])
if not month then
  if tonumber(ARGV[10]) < 0 then
    return {-2}
  end
  month = ARGV[10]
  redis.call('SET', KEYS[2], month, 'EX', ARGV[8])
end
month = tonumber(month)

-- Redis's clock, not the workers': one clock for every host makes the window exact.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local reset = 0
if used > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  reset = tonumber(oldest[2]) + window - now
end
if ARGV[5] == '1' and month >= tonumber(ARGV[4]) then
  return {2, limit, math.max(limit - used, 0), reset, month}
end
if used >= limit then
  return {1, limit, 0, reset, month}
end

redis.call('ZADD', KEYS[1], now, ARGV[11])
redis.call('PEXPIRE', KEYS[1], window)
month = redis.call('INCR', KEYS[2])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
redis.call('HSET', KEYS[3], ARGV[7], t[1])
redis.call('EXPIRE', KEYS[3], ARGV[9])
if used == 0 then
  reset = window
end
return {0, limit, limit - used - 1, reset, month}
