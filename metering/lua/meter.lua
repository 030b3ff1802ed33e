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
-- include meter_checks.lua

reset = window_take(KEYS[1], window, now, ARGV[8], used, reset)
month = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], now, ARGV[9])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {0, limit, limit - used - 1, reset, month}
