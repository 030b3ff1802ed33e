-- Release a call answered with anything but 2xx: it is not billed and gives its place in the
-- month back, but keeps its place in the per-minute window (README "The metered API"), so bad input cannot
-- be used to flood.
-- KEYS: 1 open calls zset, 2 month counter.  ARGV: 1 the call's open member
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 1
