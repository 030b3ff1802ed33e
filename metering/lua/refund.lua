-- Undo the count of a call answered with 5xx: it is not billed (DESIGN §4).
-- KEYS: 1 window zset, 2 month counter, 3 pending usage hash
-- ARGV: 1 the call's member in the window, 2 usage field
redis.call('ZREM', KEYS[1], ARGV[1])
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
if month > 0 then
  redis.call('DECR', KEYS[2])
end
-- If a flush took the +1 already, this -1 is flushed next time: the sum stays right.
redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
return 1
