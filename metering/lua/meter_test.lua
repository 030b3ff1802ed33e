-- One call of a test-mode key, atomically (README "The metered API", test mode): config
-- freshness, the entitlement, then the test limits shared by all of the customer's test keys
-- (a sliding minute window and a day counter). An accepted call is counted at once, whatever its
-- answer, and never billed: nothing here is read by the flush, the quota, the spend cap or invoices.
-- KEYS: 1 test window zset, 2 test day counter, 3 test usage hash of the month, 4 config version
-- ARGV: 1 config version, 2 limit/min, 3 window ms, 4 limit/day, 5 the config allows the product
--       (1/0), 6 usage field (day and product), 7 day counter ttl s, 8 usage ttl s, 9 unique member
-- Returns {status, limit, remaining, reset_ms, day_calls}; status 0 ok, 1 rate limited, 4 not
-- entitled, 5 day limit reached, -1 config stale (+ newest version).
-- include window.lua
local ver = redis.call('GET', KEYS[4])
if ver and tonumber(ver) > tonumber(ARGV[1]) then
  return {-1, ver}
end
if ARGV[5] == '0' then
  return {4}
end
local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[2])
local now, used, reset = window_read(KEYS[1], window)
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if day >= tonumber(ARGV[4]) then
  return {5, limit, math.max(limit - used, 0), reset, day}
end
if used >= limit then
  return {1, limit, 0, reset, day}
end
reset = window_take(KEYS[1], window, now, ARGV[9], used, reset)
day = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
redis.call('EXPIRE', KEYS[3], ARGV[8])
return {0, limit, limit - used - 1, reset, day}
